"""Shared by the Dify client scenarios (``run_*.py``), which run inside a client's own venv: the report of named
checks, polling, and the test files (.txt .md .html .docx .pdf), all built with the standard library only.

A scenario prints ONE JSON line on stdout, last:
``{"client": ..., "client_version": ..., "python": ..., "checks": [{"name", "ok", "reason"?, "context"?}]}``
and exits 0 even when checks fail; anything else it (or the client) prints goes to stderr.
"""

from __future__ import annotations

import io
import json
import logging
import os
import platform
import sys
import time
import traceback
import uuid
import zipfile
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

BATCH_PATTERN = r"^\d{20}$"  # time.strftime("%Y%m%d%H%M%S") + 6 random digits


class Failure(Exception):
    """A check cannot go on (an expectation it depends on failed)."""


class Check:
    """One named check: collects the expectations that failed and some context for the report."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.problems: list[str] = []
        self.context: dict[str, Any] = {}

    def expect(self, condition: object, message: str) -> bool:
        if not condition:
            self.problems.append(message)
        return bool(condition)

    def equal(self, actual: object, expected: object, what: str) -> bool:
        return self.expect(actual == expected, f"{what}: expected {expected!r}, got {actual!r}")

    def require(self, condition: object, message: str) -> None:
        """Like :meth:`expect`, but stops the check when it does not hold."""
        if not condition:
            raise Failure(message)

    def need(self, value: T | None, message: str) -> T:
        """The value, which must be set (not None); stops the check otherwise."""
        if value is None:
            raise Failure(message)
        return value

    def present(self, obj: object, fields: str, what: str) -> None:
        """Each space-separated field of the parsed model ``obj`` is set (the client's models make every field
        optional, so a missing key parses as None)."""
        missing = [f for f in fields.split() if getattr(obj, f, None) is None]
        self.expect(not missing, f"{what}: missing or null {missing}")

    def saw(self, resp: Any, label: str = "") -> None:
        """Keep the HTTP status and a body excerpt of a client response (its ``raw``) for the report."""
        raw = getattr(resp, "raw", None)
        if raw is None:
            return
        body = (raw.content or b"")[:1200].decode("utf-8", "replace")
        key = f"{label}:" if label else ""
        self.context[f"{key}status"] = raw.status_code
        self.context[f"{key}body"] = body

    def status(self, resp: Any, expected: int, what: str = "HTTP status") -> bool:
        raw = getattr(resp, "raw", None)
        actual = None if raw is None else raw.status_code
        return self.equal(actual, expected, what)


class LogCapture(logging.Handler):
    """Keeps what the client logs (e.g. "Failed to unmarshal to ... from <body>") to attach to failed checks; the
    clients log to stdout by default, which would spoil the report line."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record.getMessage()[:1500])


def reroute_client_logger(name: str) -> LogCapture:
    logger = logging.getLogger(name)
    for handler in list(logger.handlers):
        logger.removeHandler(handler)
    capture = LogCapture()
    logger.addHandler(capture)
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(logging.Formatter(f"[{name}] %(levelname)s %(message)s"))
    logger.addHandler(stderr)
    logger.propagate = False
    return capture


class Report:
    def __init__(self, client: str, client_version: str, capture: LogCapture | None = None) -> None:
        self.client = client
        self.client_version = client_version
        self.capture = capture
        self.checks: list[dict[str, Any]] = []

    def run(self, name: str, fn: Callable[[Check], T], needs: Mapping[str, object] | None = None) -> T | None:
        """Run one check; returns what ``fn`` returns, or None when it failed. ``needs``: values from earlier checks
        this one depends on; when one is None the check is reported failed without running."""
        missing = [k for k, v in (needs or {}).items() if v is None]
        if missing:
            self._add(name, False, f"not run: needs {', '.join(missing)} from an earlier check that failed", {})
            return None
        check = Check(name)
        logged = len(self.capture.records) if self.capture else 0
        started = time.monotonic()
        try:
            value = fn(check)
        except Failure as e:
            check.problems.append(str(e))
            value = None
        except Exception as e:  # the client raised: transport error, or its models rejected the response
            first = str(e).strip().splitlines()
            check.problems.append(f"client raised {type(e).__name__}: {' | '.join(first[:6])[:1500]}")
            check.context["traceback"] = traceback.format_exc()[-2500:]
            value = None
        check.context["seconds"] = round(time.monotonic() - started, 2)
        if self.capture and len(self.capture.records) > logged:
            check.context["client_log"] = self.capture.records[logged:][-3:]
        ok = not check.problems
        self._add(name, ok, "; ".join(check.problems)[:4000] if not ok else None, check.context)
        return value if ok else None

    def _add(self, name: str, ok: bool, reason: str | None, context: dict[str, Any]) -> None:
        entry: dict[str, Any] = {"name": name, "ok": ok}
        if reason is not None:
            entry["reason"] = reason
        if context:
            entry["context"] = context
        self.checks.append(entry)
        mark = "ok  " if ok else "FAIL"
        print(f"{mark} {name}" + (f": {reason}" if reason else ""), file=sys.stderr, flush=True)

    def emit(self) -> None:
        report = {
            "client": self.client,
            "client_version": self.client_version,
            "python": platform.python_version(),
            "checks": self.checks,
        }
        sys.stdout.write(json.dumps(report) + "\n")
        sys.stdout.flush()


def env(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise SystemExit(f"environment variable {name} is required")
    return value


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def poll(fn: Callable[[], tuple[bool, T]], timeout: float, interval: float = 0.5) -> tuple[bool, T]:
    """Call ``fn`` until it says done or ``timeout`` seconds pass; returns its last answer."""
    deadline = time.monotonic() + timeout
    while True:
        done, value = fn()
        if done or time.monotonic() >= deadline:
            return done, value
        time.sleep(interval)


# ---------------------------------------------------------------------------------------------------------------
# Test corpus: one topic per document, with marker words found in no other document.

TEXT_DOC = (
    "Photosynthesis is the process by which green plants turn sunlight into chemical energy. "
    "Chlorophyll molecules inside the chloroplasts absorb red and blue light.\n\n"
    "The light reactions split water and release oxygen, and the Calvin cycle then fixes carbon dioxide "
    "into glucose that the plant stores as starch."
)
TXT_DOC = (
    "Volcanoes form where molten rock called magma rises through the crust. When magma reaches the surface "
    "it is called lava. Stratovolcanoes such as Mount Fuji erupt explosively, while shield volcanoes like "
    "Mauna Loa pour out gentle basalt flows."
)
MD_DOC = (
    "# Sourdough baking\n\n"
    "A sourdough starter is a culture of wild yeast and lactobacilli kept alive with flour and water.\n\n"
    "## Feeding the starter\n\n"
    "Feed the starter every day and bake when it doubles; the long fermentation gives the bread its sour taste.\n"
)
HTML_DOC = (
    "<!DOCTYPE html><html><head><title>Moons of Jupiter</title></head><body>"
    "<h1>Moons of Jupiter</h1>"
    "<p>Ganymede is the largest moon in the Solar System and has its own magnetic field.</p>"
    "<p>Europa hides a salty ocean under its ice shell, and Callisto is covered in ancient craters.</p>"
    "</body></html>"
)
DOCX_PARAGRAPHS = (
    "Chess openings",
    "The Sicilian Defence is the most popular answer to the king's pawn opening.",
    "The Ruy Lopez develops the bishop early and puts pressure on the knight that defends the centre.",
)
PDF_LINES = (
    "Honeybee colonies",
    "A honeybee colony has one queen, thousands of worker bees and a few hundred drones.",
    "Workers forage for nectar and pollen and share the way to flowers with the waggle dance.",
)
HIERARCHICAL_DOC = (
    "Glaciers are rivers of ice that flow slowly downhill under their own weight.\n"
    "They carve U-shaped valleys and leave moraines of rock debris behind.\n"
    "The largest ice sheets cover Antarctica and Greenland.\n\n"
    "When glaciers melt they raise the sea level.\n"
    "Meltwater lakes can burst through ice dams in sudden floods called jokulhlaups.\n"
    "Scientists track glacier retreat with satellite altimetry."
)
UPDATE_DOC_V1 = "Tidal pools host anemones, hermit crabs and sea stars between the high and the low tide marks."
UPDATE_DOC_V2 = "Lighthouses focus the beam of a single lamp through a Fresnel lens made of concentric glass prisms."
UPDATE_DOC_V3 = "Before radio, ships and shore stations signalled each other with semaphore flags held at set angles."


def markdown_bytes() -> bytes:
    return MD_DOC.encode()


def html_bytes() -> bytes:
    return HTML_DOC.encode()


def docx_bytes(paragraphs: tuple[str, ...] = DOCX_PARAGRAPHS) -> bytes:
    """A minimal valid WordprocessingML package (content types, package relationship, main document part)."""

    def esc(text: str) -> str:
        return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

    body = "".join(f'<w:p><w:r><w:t xml:space="preserve">{esc(p)}</w:t></w:r></w:p>' for p in paragraphs)
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/word/document.xml" ContentType="application/'
            'vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/>'
            "</Types>"
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'officeDocument" Target="word/document.xml"/>'
            "</Relationships>"
        ),
        "word/document.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            f"<w:body>{body}</w:body></w:document>"
        ),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in parts.items():
            z.writestr(name, text)
    return out.getvalue()


def pdf_bytes(lines: tuple[str, ...] = PDF_LINES) -> bytes:
    """A one-page PDF 1.4 with the lines in Helvetica (a standard font, nothing embedded) and a correct xref."""

    def esc(text: str) -> str:
        return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    shown = " T* ".join(f"({esc(line)}) Tj" for line in lines)
    stream = f"BT /F1 11 Tf 14 TL 72 720 Td {shown} ET".encode("latin-1")
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R "
        b"/Resources << /Font << /F1 5 0 R >> >> >>",
        b"<< /Length " + str(len(stream)).encode() + b" >>\nstream\n" + stream + b"\nendstream",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
    ]
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, obj in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + obj + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n".encode() + b"0000000000 65535 f \n"
    out += b"".join(f"{offset:010d} 00000 n \n".encode() for offset in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)
