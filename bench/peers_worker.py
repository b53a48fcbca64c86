"""One indexing run of ``bench/peers.py``: ``python bench/peers_worker.py SYSTEM WORKDIR OUTDIR`` indexes the
documents of ``WORKDIR`` (``docs.jsonl``: id, title, text; ``vectors.npy``: their given vectors, float32, unit rows)
into a fresh store under ``OUTDIR`` and prints one JSON line: ``{"system", "docs", "seconds", "note"}``.

It runs in the interpreter that has the system: Alexandria's own venv for ``alexandria`` and ``alexandria-cli``,
the peers' venv (``bench/peers.py`` makes it) for ``chroma``, ``txtai`` and ``lancedb``. What is timed is the
indexing a user would run with vectors given, until the store is persisted, not the client's start-up:

* ``alexandria``: ``alexandria import`` of an export file holding the documents with their vectors, in process
  (the store opened first, untimed): rows, BM25 index, HNSW index built and saved;
* ``alexandria-cli``: the same file through the ``alexandria import`` command, process start-up included;
* ``chroma``: ``PersistentClient`` collection (cosine HNSW), ``add`` in batches with ids, vectors, texts, titles;
* ``txtai``: ``Embeddings`` with the ``external`` vector method (its transform looks the given vectors up), content
  stored, ``index`` then ``save``;
* ``lancedb``: ``create_table`` of ids, texts, titles and vectors (LanceDB builds no ANN index unless asked: a
  search is a flat scan; ``note`` says so).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def load(workdir: Path) -> tuple[list[dict[str, str]], Any]:
    docs = [json.loads(line) for line in (workdir / "docs.jsonl").open(encoding="utf-8")]
    return docs, np.load(workdir / "vectors.npy")


def alexandria(workdir: Path, out: Path, cli: bool) -> tuple[float, str]:
    export = workdir / "alexandria.jsonl"
    if cli:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "alexandria.cli", "import", "--data-dir", str(out), str(export)],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
        return time.perf_counter() - t0, "alexandria import command, process start-up included"
    from alexandria import transfer
    from alexandria.config import Settings
    from alexandria.storage.registry import open_store

    store = open_store(Settings(data_dir=out))
    t0 = time.perf_counter()
    with export.open(encoding="utf-8") as f:
        transfer.import_workspace(store, f)
    store.close()
    return time.perf_counter() - t0, "import in process: rows, FTS5, HNSW built and saved"


def chroma(docs: list[dict[str, str]], vectors: Any, out: Path) -> tuple[float, str]:
    import chromadb

    client = chromadb.PersistentClient(path=str(out))
    batch = min(5000, int(client.get_max_batch_size()))
    t0 = time.perf_counter()
    col = client.create_collection("bench", metadata={"hnsw:space": "cosine"}, embedding_function=None)
    for start in range(0, len(docs), batch):
        part = docs[start : start + batch]
        col.add(ids=[d["id"] for d in part], embeddings=vectors[start : start + batch],
                documents=[d["text"] for d in part], metadatas=[{"title": d["title"]} for d in part])  # fmt: skip
    seconds = time.perf_counter() - t0
    return seconds, f"chromadb {chromadb.__version__}, persistent, HNSW (cosine)"


def txtai(docs: list[dict[str, str]], vectors: Any, out: Path) -> tuple[float, str]:
    from importlib.metadata import version

    from txtai import Embeddings

    by_text = {d["text"]: vectors[i] for i, d in enumerate(docs)}

    def transform(texts: list[str]) -> Any:
        return np.stack([by_text[t] for t in texts])

    embeddings = Embeddings(method="external", transform=transform, content=True)
    t0 = time.perf_counter()
    embeddings.index([(d["id"], {"text": d["text"], "title": d["title"]}, None) for d in docs])
    embeddings.save(str(out / "index"))
    seconds = time.perf_counter() - t0
    config = embeddings.config
    ann = f"{config.get('backend', 'faiss')} {config.get('build', {}).get('settings', {}).get('components', '')}"
    return seconds, f"txtai {version('txtai')}, content stored, ANN {ann.strip()}"


def lancedb(docs: list[dict[str, str]], vectors: Any, out: Path) -> tuple[float, str]:
    import lancedb as lancedb_package
    import pyarrow as pa

    db = lancedb_package.connect(str(out))
    t0 = time.perf_counter()
    flat = pa.array(vectors.reshape(-1), type=pa.float32())
    table = pa.table({"id": [d["id"] for d in docs], "title": [d["title"] for d in docs],
                      "text": [d["text"] for d in docs],
                      "vector": pa.FixedSizeListArray.from_arrays(flat, vectors.shape[1])})  # fmt: skip
    db.create_table("bench", data=table)
    seconds = time.perf_counter() - t0
    return seconds, f"lancedb {lancedb_package.__version__}, table written, no ANN index (flat search)"


def main() -> None:
    system, workdir, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    docs, vectors = load(workdir)
    if system in ("alexandria", "alexandria-cli"):
        seconds, note = alexandria(workdir, out, cli=system == "alexandria-cli")
    else:
        seconds, note = {"chroma": chroma, "txtai": txtai, "lancedb": lancedb}[system](docs, vectors, out)
    print(json.dumps({"system": system, "docs": len(docs), "seconds": round(seconds, 3), "note": note}), flush=True)


if __name__ == "__main__":
    main()
