"""Time from ``files.create`` to ``completed`` through the OpenAI door, with the real ``openai`` SDK against a live
``alexandria serve`` (real MiniLM, embedded SQLite), for a ~1 MB text file and a ~1 MB PDF.

    PYTHONPATH=src:. .venv/bin/python bench/openai_ingest.py [--size-mb 1] [--runs 1] [--threads N] [--only text|pdf]

For each file: ``files.create`` (upload), then ``vector_stores.files.create_and_poll`` (attach; the durable queue's
worker parses, splits with the ``auto`` strategy, 800/400 tokens, embeds and indexes), polled every 100 ms. Reports
the upload, the indexing and the total time, the server's CPU seconds over that time (the wall time of an idle
machine with one embedder thread, roughly), the parsed text size, and the load average before
and after (the machine is shared). Writes ``bench/results/openai_ingest.json``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

from openai import OpenAI

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench.parsers import pdf_bytes
from tests.live import live_server, run_cli

RESULTS = Path(__file__).resolve().parent / "results" / "openai_ingest.json"
WORDS = (
    "the of and to in is was for on that with as by at from this knowledge base search vector index document chunk "
    "embedding server query result score library scroll papyrus harbour lighthouse scholar catalogue translation"
).split()


def sentence(rng: random.Random) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(rng.randint(8, 20)))
    return text[0].upper() + text[1:] + "."


def text_file(size: int, rng: random.Random) -> bytes:
    parts: list[str] = []
    total = 0
    while total < size:
        paragraph = " ".join(sentence(rng) for _ in range(rng.randint(3, 8)))
        parts.append(paragraph)
        total += len(paragraph) + 2
    return "\n\n".join(parts).encode()[:size]


def pdf_file(size: int, rng: random.Random) -> bytes:
    """A text PDF (Flate-compressed pages of 60 lines) of about ``size`` bytes."""
    pages: list[list[str]] = []
    while True:
        pages.append([sentence(rng)[:110] for _ in range(60)])
        if len(pages) % 20 == 0 and len(pdf_bytes(pages)) >= size:
            return pdf_bytes(pages)


def cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` and its threads (``/proc/PID/stat``)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def ingest(client: OpenAI, store: str, name: str, data: bytes, server_pid: int) -> dict[str, Any]:
    cpu_before = cpu_s(server_pid)
    started = time.perf_counter()
    uploaded = client.files.create(file=(name, io.BytesIO(data)), purpose="assistants")
    uploaded_at = time.perf_counter()
    done = client.vector_stores.files.create_and_poll(uploaded.id, vector_store_id=store, poll_interval_ms=100)
    finished = time.perf_counter()
    assert done.status == "completed", done
    content = client.vector_stores.files.content(uploaded.id, vector_store_id=store)
    text = "".join(part.text or "" for part in content)
    return {
        "file": name,
        "bytes": len(data),
        "parsed_text_chars": len(text),
        "upload_s": round(uploaded_at - started, 3),
        "index_s": round(finished - uploaded_at, 3),
        "total_s": round(finished - started, 3),
        "server_cpu_s": round(cpu_s(server_pid) - cpu_before, 2),  # what the wall time is under no contention
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1.0)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1, help="ALEXANDRIA_EMBEDDER_THREADS of the server")
    parser.add_argument("--only", choices=["text", "pdf"], help="ingest only this kind of file")
    args = parser.parse_args()
    rng = random.Random(7)
    size = int(args.size_mb * 1_000_000)
    files = {"text.txt": text_file(size, rng), "report.pdf": pdf_file(size, rng)}
    if args.only:
        files = {k: v for k, v in files.items() if k.startswith("text" if args.only == "text" else "report")}
    env = {**os.environ, "ALEXANDRIA_EMBEDDER_THREADS": str(args.threads)}
    results: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        key = run_cli("keys", "create", "--data-dir", str(data), "--workspace", "bench", env=env)
        with live_server(data, env) as live:
            client = OpenAI(base_url=f"{live.base}/v1", api_key=key, timeout=600, max_retries=0)
            store = client.vector_stores.create(name="bench").id
            for run in range(args.runs):
                for name, body in files.items():
                    load_before = os.getloadavg()
                    try:
                        row = ingest(client, store, f"{run}-{name}", body, live.proc.pid)
                    except Exception:  # shown before the server stops (its stop may fail and hide this one)
                        traceback.print_exc()
                        raise
                    row["load_avg_before"] = [round(x, 2) for x in load_before]
                    row["load_avg_after"] = [round(x, 2) for x in os.getloadavg()]
                    results.append(row)
                    print(json.dumps(row), flush=True)
            client.close()
    out = RESULTS.with_name(f"openai_ingest-{args.only}.json") if args.only else RESULTS
    RESULTS.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"threads": args.threads, "results": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
