"""Indexing throughput next to the embedded peers, vectors given: Alexandria's ``alexandria import`` against Chroma,
txtai and LanceDB, on the same documents with the same precomputed vectors, side by side in one run.

    .venv/bin/python bench/peers.py [--docs 5183] [--repeat 3] [--cache ~/.cache/alexandria-bench]

1. The peers live in a venv of their own, made on the first run under ``--cache`` (``peers-venv``): chromadb,
   lancedb and pyarrow with their dependencies; txtai without its declared dependencies (``--no-deps``) plus faiss-cpu,
   PyYAML and regex, because its torch/transformers dependency is only for embedding models (PyPI's torch for Linux
   pulls the CUDA libraries, gigabytes): with vectors given, txtai's ``external`` vector method never loads torch.
2. The documents are SciFact's abstracts (``../shared/data/scifact``), each one document and one chunk with its
   all-MiniLM-L6-v2 vector (Alexandria's own model; embedded once and cached under ``--cache``). Every system gets
   the same ids, titles, texts and vectors (``docs.jsonl``, ``vectors.npy``); Alexandria gets them as an
   ``alexandria import`` file, which is its ingestion path with vectors given.
3. Each system indexes them into a fresh store in a process of its own (``bench/peers_worker.py`` says what is timed
   for each), in turn, ``--repeat`` rounds (so load spikes on a shared machine hit every system alike); the best
   round of each counts. Prints documents/s per system and Alexandria's ratio to each peer, and writes
   ``bench/results/peers.json`` with every round and the 1-minute load average.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PEERS = ("chroma", "txtai", "lancedb")
SYSTEMS = ("alexandria", "alexandria-cli", *PEERS)
PEER_PACKAGES = ["chromadb", "lancedb", "pyarrow", "faiss-cpu", "pyyaml", "regex"]
NO_DEPS_PACKAGES = ["txtai"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def peers_python(cache: Path) -> Path:
    """The peers' venv interpreter, the venv made (and the peers installed) if missing."""
    venv = cache / "peers-venv"
    python = venv / "bin" / "python"
    ready = venv / ".installed"
    if not ready.exists():
        log(f"== making the peers' venv in {venv} (once)")
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *PEER_PACKAGES], check=True)
        subprocess.run([*pip, "--no-deps", *NO_DEPS_PACKAGES], check=True)
        ready.write_text("\n".join(PEER_PACKAGES + NO_DEPS_PACKAGES) + "\n")
    return python


def scifact(data: Path, limit: int) -> list[dict[str, str]]:
    docs = []
    with (data / "scifact" / "corpus.jsonl").open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            text = (row.get("text") or "").strip()
            if text:
                docs.append({"id": f"sf-{row['_id']}", "title": (row.get("title") or "").strip(), "text": text})
            if len(docs) >= limit:
                break
    return docs


def from_export(path: Path, limit: int) -> tuple[list[dict[str, str]], np.ndarray[Any, Any]]:
    """Chunks of an ``alexandria export`` file (e.g. ``bench/scale_workspace.py``'s) as documents with their vectors."""
    docs, vectors = [], []
    with path.open(encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            if row.get("t") == "chunks":
                r = row["r"]
                docs.append({"id": f"c-{len(docs)}", "title": "", "text": r["text"]})
                vectors.append(np.frombuffer(base64.b64decode(r["vector"]), dtype="<f4"))
                if len(docs) >= limit:
                    break
    return docs, np.stack(vectors).astype(np.float32)


def vectors_for(docs: list[dict[str, str]], cache: Path) -> np.ndarray[Any, Any]:
    """The documents' MiniLM vectors (title and text, as Alexandria embeds a titled document), cached by content."""
    texts = [f"{d['title']}\n{d['text']}" for d in docs]
    key = hashlib.sha256("\x00".join(texts).encode()).hexdigest()[:16]
    path = cache / f"scifact-minilm-{key}.npy"
    if path.exists():
        return np.load(path)
    from alexandria.ingest.embedders import load_default_embedder

    embedder = load_default_embedder()
    parts = []
    t0 = time.perf_counter()
    for start in range(0, len(texts), 64):
        parts.append(np.asarray(embedder.embed(texts[start : start + 64]), dtype=np.float32))
        log(f"  embedding: {min(start + 64, len(texts))}/{len(texts)} ({time.perf_counter() - t0:.0f} s, once)")
    vectors = np.concatenate(parts)
    np.save(path, vectors)
    return vectors


def write_export(path: Path, docs: list[dict[str, str]], vectors: np.ndarray[Any, Any]) -> None:
    """An ``alexandria import`` file: one workspace, one data source, each document one chunk with its vector."""
    from alexandria.transfer import FORMAT, VERSION

    at = 1_760_000_000_000
    ws, space, group, ds = "wpeers", "vlt_peers", "grp_peers", "dts_peers"
    counts = {"workspace": 1, "spaces": 1, "groups": 1, "space_groups": 1, "data_sources": 1, "data_source_views": 1,
              "documents": len(docs), "chunks": len(docs)}  # fmt: skip

    def line(table: str, row: dict[str, Any]) -> str:
        return json.dumps({"t": table, "r": row}, ensure_ascii=False, separators=(",", ":")) + "\n"

    with path.open("w", encoding="utf-8") as out:
        out.write(json.dumps({"format": FORMAT, "version": VERSION, "workspace": ws, "source": "peers-bench",
                              "exported_at": at, "counts": counts}) + "\n")  # fmt: skip
        out.write(line("workspace", {"sid": ws, "name": ws, "created_at": at}))
        out.write(line("spaces", {"sid": space, "kind": "global", "name": "Company Data", "created_at": at,
                                  "updated_at": at}))  # fmt: skip
        out.write(line("groups", {"sid": group, "name": "Workspace", "kind": "global", "created_at": at}))
        out.write(line("space_groups", {"space": space, "group": group}))
        out.write(line("data_sources", {"sid": ds, "core_id": hashlib.sha256(ds.encode()).hexdigest(), "space": space,
                                        "name": "scifact", "description": None, "connector_provider": None,
                                        "embedder": "minilm", "dim": int(vectors.shape[1]), "chunk_size": 254,
                                        "created_at": at, "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, ds)),
                                        "dify": {}, "updated_at": at}))  # fmt: skip
        out.write(line("data_source_views", {"sid": "dsv_peers", "space": space, "data_source": ds, "kind": "default",
                                             "parents_in": None, "created_at": at, "updated_at": at}))  # fmt: skip
        for i, (d, vec) in enumerate(zip(docs, vectors, strict=True)):
            doc_uuid = str(uuid.uuid5(uuid.NAMESPACE_URL, d["id"]))
            text = f"{d['title']}\n{d['text']}"
            digest = hashlib.sha256(text.encode()).hexdigest()
            out.write(line("documents", {
                "data_source": ds, "document_id": d["id"], "title": d["title"], "mime_type": "text/plain",
                "source_url": None, "timestamp": at + i, "tags": [], "parents": [d["id"]], "parent_id": None,
                "section": json.dumps({"prefix": None, "content": text, "sections": []}), "text": text,
                "hash": digest, "text_size": len(text.encode()), "chunk_count": 1,
                "token_count": len(text.split()), "created": at, "updated": at, "index_state": "indexed",
                "index_error": None, "uuid": doc_uuid, "position": i + 1, "enabled": True, "archived": False,
                "disabled_at": None, "doc_metadata": {}, "batch": None, "dify": None,
            }))  # fmt: skip
            out.write(line("chunks", {
                "document": doc_uuid, "offset": 0, "text": text, "hash": digest, "token_count": len(text.split()),
                "vector": base64.b64encode(np.asarray(vec, "<f4").tobytes()).decode("ascii"), "segment": None,
                "child": None,
            }))  # fmt: skip
        out.write(json.dumps({"end": {"counts": counts}}) + "\n")


def run_one(system: str, python: Path, workdir: Path) -> dict[str, Any]:
    out = workdir / f"store-{system}"
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "PYTHONPATH": f"{ROOT / 'src'}{os.pathsep}{ROOT}"}
    load = os.getloadavg()[0]
    done = subprocess.run([str(python), str(ROOT / "bench" / "peers_worker.py"), system, str(workdir), str(out)],
                          check=True, capture_output=True, text=True, env=env)  # fmt: skip
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    result["load_avg"] = round((load + os.getloadavg()[0]) / 2, 2)
    shutil.rmtree(out, ignore_errors=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=5183, help="SciFact documents to index (default: all).")
    parser.add_argument("--repeat", type=int, default=3, help="Rounds; the best of each system counts.")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="Comma-separated, of: " + ", ".join(SYSTEMS))
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "alexandria-bench")
    parser.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    parser.add_argument("--export", type=Path, default=None, help="Take the documents and vectors from the chunks of "
                        "this export file (e.g. bench/scale.py's generated workspace) instead of SciFact and MiniLM "
                        "(which embeds the 5,183 abstracts once: minutes on a busy machine).")  # fmt: skip
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "results")
    args = parser.parse_args()
    systems = [s.strip() for s in args.systems.split(",") if s.strip()]
    if not set(systems) <= set(SYSTEMS):
        parser.error(f"--systems takes {', '.join(SYSTEMS)}")
    if not (args.data / "scifact").is_dir():
        args.data = next((p / "shared" / "data" for p in ROOT.parents if (p / "shared" / "data" / "scifact").is_dir()),
                         args.data)  # fmt: skip
    args.cache.mkdir(parents=True, exist_ok=True)
    peers = peers_python(args.cache) if set(systems) & set(PEERS) else None
    if args.export is not None:
        docs, vectors = from_export(args.export, args.docs)
    else:
        docs = scifact(args.data, args.docs)
        vectors = vectors_for(docs, args.cache)
    workdir = Path(tempfile.mkdtemp(prefix="alexandria-peers-"))
    try:
        with (workdir / "docs.jsonl").open("w", encoding="utf-8") as f:
            f.writelines(json.dumps(d, ensure_ascii=False) + "\n" for d in docs)
        np.save(workdir / "vectors.npy", vectors)
        write_export(workdir / "alexandria.jsonl", docs, vectors)
        rounds: list[dict[str, Any]] = []
        for r in range(args.repeat):
            for system in systems:
                python = peers if system in PEERS and peers is not None else Path(sys.executable)
                result = run_one(system, python, workdir) | {"round": r + 1}
                log(f"  round {r + 1}: {system}: {result['docs'] / result['seconds']:,.0f} docs/s "
                    f"({result['seconds']} s, load {result['load_avg']})")  # fmt: skip
                rounds.append(result)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    best = {s: min((r for r in rounds if r["system"] == s), key=lambda r: r["seconds"]) for s in systems}
    rate = {s: best[s]["docs"] / best[s]["seconds"] for s in systems}
    what = f"chunks of {args.export.name}" if args.export else "SciFact documents, MiniLM vectors"
    print(f"| system ({len(docs):,} {what}, given) | docs/s (best of {args.repeat}) | seconds | "
          "Alexandria import ÷ this | load avg | what |")  # fmt: skip
    print("|---|---|---|---|---|---|")
    for s in systems:
        ratio = f"{rate['alexandria'] / rate[s]:.2f}×" if "alexandria" in rate else "-"
        print(f"| {s} | {rate[s]:,.0f} | {best[s]['seconds']} | {ratio} | {best[s]['load_avg']} | {best[s]['note']} |")
    args.results.mkdir(parents=True, exist_ok=True)
    summary = {"docs": len(docs), "source": str(args.export or "scifact"),
               "repeat": args.repeat, "cpus": os.cpu_count(), "rounds": rounds,
               "best_docs_per_s": {s: round(v, 1) for s, v in rate.items()}}  # fmt: skip
    (args.results / "peers.json").write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
