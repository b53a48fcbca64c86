"""File parser benchmark: parsing throughput per format, and peak memory parsing a large PDF.

    .venv/bin/python bench/parsers.py [--size-mb 1] [--pdf-mb 15] [--runs 3]

Generates files of about ``--size-mb`` of each supported kind (txt, md, html, csv, docx, xlsx, pdf) in a
temporary directory, parses each ``--runs`` times with :func:`alexandria.ingest.parsers.parse_file` and
reports the median throughput in MB/s of input file. Then two PDFs of about ``--pdf-mb`` are parsed in
fresh subprocesses, to measure memory: a text-heavy one (Flate-compressed content streams, thousands of
pages) and a scan-like one (one large image per page, little text). For each: how far the peak RSS rises
above the RSS just before the parse (the kernel's high-water mark, reset through ``/proc/self/clear_refs``;
elsewhere the ``ru_maxrss`` delta, a lower bound) and, with ``--tracemalloc``, tracemalloc's peak of Python
allocations during the parse, in another run. The input bytes, read before, are counted in neither.
Writes ``bench/results/parsers.json``.

Documents are generated with python-docx, openpyxl (write-only) and a small PDF writer of our own
(Helvetica, WinAnsi text, optional grey-scale image XObjects); fpdf2 is too slow for tens of MB.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from docx import Document
from openpyxl import Workbook
from pypdf import PdfReader

from alexandria.ingest.parsers import parse_file

MB = 1_000_000
WORDS = (
    "the of and to in is was for on that with as by at from this knowledge base search vector index "
    "document chunk embedding server query result score café naïve résumé façade déjà Zürich "
    "garçon über straße année señor"
).split()
RESULTS = Path(__file__).resolve().parent / "results" / "parsers.json"


def say(message: str) -> None:
    print(message, flush=True)


def sentence(rng: random.Random, words: int = 14) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def paragraph(rng: random.Random) -> str:
    return " ".join(sentence(rng, rng.randint(8, 20)) for _ in range(rng.randint(2, 6)))


# --- generators: each returns the file's bytes, about `size` bytes


def gen_txt(rng: random.Random, size: int) -> bytes:
    parts: list[str] = []
    total = 0
    while total < size:
        part = paragraph(rng) + "\n\n"
        parts.append(part)
        total += len(part.encode())
    return "".join(parts).encode()


def gen_md(rng: random.Random, size: int) -> bytes:
    parts: list[str] = []
    total = 0
    n = 0
    while total < size:
        n += 1
        block = f"## Section {n}: {sentence(rng, 4)}\n\n{paragraph(rng)}\n\n- {sentence(rng)}\n- {sentence(rng)}\n\n"
        if n % 5 == 0:
            block += "```python\ndef f(x):\n    return x * 2\n```\n\n"
        parts.append(block)
        total += len(block.encode())
    return "".join(parts).encode()


def gen_html(rng: random.Random, size: int) -> bytes:
    parts = ["<!DOCTYPE html><html><head><title>Bench</title><style>p{margin:0}</style></head><body>"]
    total = len(parts[0])
    n = 0
    while total < size:
        n += 1
        block = (
            f"<h2>Section {n}</h2><p>{paragraph(rng)}</p><div class='x'><b>{sentence(rng, 5)}</b> "
            f"<a href='/p/{n}'>{sentence(rng, 3)}</a></div><ul><li>{sentence(rng)}</li><li>{sentence(rng)}</li></ul>"
        )
        if n % 10 == 0:
            block += "<table>" + "".join(f"<tr><td>{n}</td><td>{sentence(rng, 4)}</td></tr>" for _ in range(5))
            block += "</table><script>window.x = 1;</script>"
        parts.append(block)
        total += len(block.encode())
    parts.append("</body></html>")
    return "".join(parts).encode()


def gen_csv(rng: random.Random, size: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["id", "title", "city", "amount", "notes"])
    n = 0
    while out.tell() < size:
        n += 1
        notes = sentence(rng) + ("\n" + sentence(rng, 5) if n % 7 == 0 else "")
        writer.writerow([n, sentence(rng, 4), rng.choice(["Paris", "Zürich", "東京", "Genève"]), n * 1.5, notes])
    return out.getvalue().encode()


def _scaled(build: Callable[[int], bytes], size: int, probe: int) -> bytes:
    """Build with ``probe`` units, then with as many units as should reach ``size`` bytes (two refinements)."""
    units = probe
    sample = build(units)
    for _ in range(2):
        units = max(1, round(units * size / len(sample)))
        sample = build(units)
    return sample


def gen_docx(rng: random.Random, size: int) -> bytes:
    def build(paragraphs: int) -> bytes:
        local = random.Random(rng.random())
        document = Document()
        for i in range(paragraphs):
            if i % 50 == 0:
                document.add_heading(sentence(local, 5), level=2)
            if i % 200 == 199:
                table = document.add_table(rows=4, cols=3)
                for row in table.rows:
                    for cell in row.cells:
                        cell.text = sentence(local, 3)
            document.add_paragraph(paragraph(local))
        out = io.BytesIO()
        document.save(out)
        return out.getvalue()

    return _scaled(build, size, 500)


def gen_xlsx(rng: random.Random, size: int) -> bytes:
    def build(rows: int) -> bytes:
        local = random.Random(rng.random())
        workbook = Workbook(write_only=True)
        sheet = workbook.create_sheet("Data")
        sheet.append(["id", "title", "city", "amount", "notes"])
        for n in range(rows):
            sheet.append([n, sentence(local, 4), local.choice(["Paris", "Zürich", "東京"]), n * 1.5, sentence(local)])
        out = io.BytesIO()
        workbook.save(out)
        return out.getvalue()

    return _scaled(build, size, 2000)


def pdf_bytes(pages: list[list[str]], *, image: tuple[int, int, bytes] | None = None) -> bytes:
    """A PDF with Helvetica text lines per page (Flate-compressed), and optionally the same image on each page.

    The image is stored once per page (``/DeviceGray`` 8 bit, uncompressed), as scanners do.
    """
    objects: list[bytes] = [b"", b""]  # 1: catalog, 2: page tree

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    def stream(data: bytes, extra: bytes = b"", compress: bool = True) -> bytes:
        if compress:
            data = zlib.compress(data, 6)
            extra += b" /Filter /FlateDecode"
        return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"

    font = add(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    kids: list[int] = []
    for lines in pages:
        ops = [b"BT /F1 9 Tf 11 TL 40 800 Td"]
        for line in lines:
            escaped = line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
            ops.append(b"(" + escaped.encode("cp1252", errors="replace") + b") Tj T*")
        ops.append(b"ET")
        resources = b"/Font << /F1 %d 0 R >>" % font
        if image is not None:
            width, height, pixels = image
            picture = add(
                stream(
                    pixels,
                    b" /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceGray"
                    b" /BitsPerComponent 8" % (width, height),
                    compress=False,
                )
            )
            resources += b" /XObject << /Im1 %d 0 R >>" % picture
            ops.insert(0, b"q 500 0 0 500 40 40 cm /Im1 Do Q")
        content = add(stream(b"\n".join(ops)))
        kids.append(
            add(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Resources << %s >> /Contents %d 0 R >>"
                % (resources, content))
        )  # fmt: skip
    objects[0] = b"<< /Type /Catalog /Pages 2 0 R >>"
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _text_pages(rng: random.Random, count: int) -> list[list[str]]:
    return [[sentence(rng, 12) for _ in range(60)] for _ in range(count)]


def gen_pdf(rng: random.Random, size: int) -> bytes:
    return _scaled(lambda pages: pdf_bytes(_text_pages(random.Random(7), pages)), size, 20)


def gen_scan_pdf(rng: random.Random, size: int) -> bytes:
    side = 400
    pixels = rng.randbytes(side * side)
    per_page = len(pdf_bytes(_text_pages(rng, 2), image=(side, side, pixels))) // 2
    pages = max(1, size // per_page)
    return pdf_bytes([[sentence(rng, 12) for _ in range(5)] for _ in range(pages)], image=(side, side, pixels))


GENERATORS: dict[str, Callable[[random.Random, int], bytes]] = {
    "txt": gen_txt,
    "md": gen_md,
    "html": gen_html,
    "csv": gen_csv,
    "docx": gen_docx,
    "xlsx": gen_xlsx,
    "pdf": gen_pdf,
}


def measure_throughput(path: Path, runs: int) -> dict[str, Any]:
    data = path.read_bytes()
    times = []
    chars = 0
    for _ in range(runs):
        start = time.perf_counter()
        chars = len(parse_file(path.name, data))
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    return {
        "file_mb": round(len(data) / MB, 3),
        "text_mb": round(chars / MB, 3),
        "median_s": round(median, 4),
        "mb_per_s": round(len(data) / MB / median, 2),
    }


def _status_mb(field: str) -> float | None:
    """A ``/proc/self/status`` figure (``VmRSS``, ``VmHWM``) in MB, None where there is no procfs."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) * 1024 / MB
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's high-water mark (``VmHWM``) to the current RSS (Linux >= 4.0)."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def child_memory(path: Path, mode: str) -> None:
    """Runs in a fresh interpreter: parse ``path`` once and print the memory figures as JSON."""
    data = path.read_bytes()
    parse_file("warmup.pdf", pdf_bytes([["warm up"]]))  # imports and first-call setup are not the parse
    result: dict[str, Any] = {}
    if mode == "tracemalloc":
        tracemalloc.start()
    rss_before = _status_mb("VmRSS")
    exact_peak = _reset_peak_rss() and rss_before is not None
    maxrss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
    start = time.perf_counter()
    text = parse_file(path.name, data)
    result["seconds"] = round(time.perf_counter() - start, 2)
    result["text_mb"] = round(len(text) / MB, 2)
    if mode == "tracemalloc":
        result["tracemalloc_peak_mb"] = round(tracemalloc.get_traced_memory()[1] / MB, 1)
        tracemalloc.stop()
        print(json.dumps(result))
        return
    peak = _status_mb("VmHWM")
    if exact_peak and peak is not None and rss_before is not None:
        result["rss_before_mb"] = round(rss_before, 1)
        result["peak_rss_growth_mb"] = round(peak - rss_before, 1)
        result["peak_source"] = "VmHWM reset through /proc/self/clear_refs"
    else:  # ru_maxrss cannot be reset: growth above the process's earlier peak only (a lower bound)
        maxrss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / MB
        result["rss_before_mb"] = round(maxrss_before, 1)
        result["peak_rss_growth_mb"] = round(maxrss_after - maxrss_before, 1)
        result["peak_source"] = "ru_maxrss delta (lower bound)"
    print(json.dumps(result))


def run_child(path: Path, mode: str) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child-memory", str(path), "--mode", mode]
    output = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    parsed: dict[str, Any] = json.loads(output.strip().splitlines()[-1])
    return parsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size-mb", type=float, default=1.0)
    parser.add_argument("--pdf-mb", type=float, default=15.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--tracemalloc",
        action="store_true",
        help="also measure tracemalloc's peak on the large PDFs (tracing makes pypdf about 8x slower)",
    )
    parser.add_argument("--child-memory", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--mode", choices=["rss", "tracemalloc"], default="rss", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child_memory is not None:
        child_memory(args.child_memory, args.mode)
        return

    rng = random.Random(42)
    size = int(args.size_mb * MB)
    report: dict[str, Any] = {"size_mb": args.size_mb, "runs": args.runs, "throughput": {}, "large_pdf": {}}
    with tempfile.TemporaryDirectory(prefix="bench-parsers-") as tmp:
        directory = Path(tmp)
        files: dict[str, Path] = {}
        for kind, generate in GENERATORS.items():
            say(f"generating {kind} (~{args.size_mb:g} MB)...")
            start = time.perf_counter()
            path = directory / f"bench.{kind}"
            path.write_bytes(generate(rng, size))
            files[kind] = path
            say(f"  {path.stat().st_size / MB:.2f} MB in {time.perf_counter() - start:.1f} s")
        large = {"text-heavy": gen_pdf, "scan-like": gen_scan_pdf}
        large_files: dict[str, Path] = {}
        for name, generate in large.items():
            say(f"generating {name} PDF (~{args.pdf_mb:g} MB)...")
            start = time.perf_counter()
            path = directory / f"large-{name}.pdf"
            path.write_bytes(generate(rng, int(args.pdf_mb * MB)))
            large_files[name] = path
            pages = page_count(path)
            say(f"  {path.stat().st_size / MB:.2f} MB, {pages} pages in {time.perf_counter() - start:.1f} s")

        for kind, path in files.items():
            say(f"parsing {kind} x{args.runs}...")
            report["throughput"][kind] = measure_throughput(path, args.runs)
        for name, path in large_files.items():
            say(f"parsing the {name} PDF in a subprocess{' (RSS, then tracemalloc)' if args.tracemalloc else ''}...")
            figures = {"file_mb": round(path.stat().st_size / MB, 2), "pages": page_count(path)}
            figures |= run_child(path, "rss")
            if args.tracemalloc:
                traced = run_child(path, "tracemalloc")
                figures["tracemalloc_peak_mb"] = traced["tracemalloc_peak_mb"]
                figures["seconds_under_tracemalloc"] = traced["seconds"]
            report["large_pdf"][name] = figures

    print()
    print(f"{'type':<6} {'file MB':>8} {'text MB':>8} {'median s':>9} {'MB/s':>8}")
    for kind, row in report["throughput"].items():
        print(
            f"{kind:<6} {row['file_mb']:>8.2f} {row['text_mb']:>8.2f} {row['median_s']:>9.3f} {row['mb_per_s']:>8.2f}"
        )
    print()
    print(
        f"{'large PDF':<11} {'file MB':>8} {'pages':>6} {'text MB':>8} {'parse s':>8} "
        f"{'peak RSS +MB':>13} {'tracemalloc MB':>15}"
    )
    for name, row in report["large_pdf"].items():
        peak = f"{row['tracemalloc_peak_mb']:.1f}" if "tracemalloc_peak_mb" in row else "-"
        print(
            f"{name:<11} {row['file_mb']:>8.2f} {row['pages']:>6} {row['text_mb']:>8.2f} {row['seconds']:>8.2f} "
            f"{row['peak_rss_growth_mb']:>13.1f} {peak:>15}"
        )
    sources = {row["peak_source"] for row in report["large_pdf"].values()}
    print(f"(peak RSS growth during the parse, above the RSS before it: {', '.join(sorted(sources))})")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"\nwrote {RESULTS}")


def page_count(path: Path) -> int:
    return len(PdfReader(path).pages)


if __name__ == "__main__":
    main()
