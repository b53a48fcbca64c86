"""File parsers (alexandria.ingest.parsers): every format is generated here, parsed back and checked."""

from __future__ import annotations

import datetime as dt
import io
import zipfile
import zlib

import pytest
from docx import Document
from docx.shared import Pt
from fpdf import FPDF
from openpyxl import Workbook
from pypdf import PdfReader, PdfWriter

from alexandria.ingest.parsers import (
    MIME_TYPES,
    SUPPORTED_EXTENSIONS,
    ParseFailed,
    UnsupportedFileType,
    extension_of,
    office,
    parse_file,
)
from alexandria.ingest.parsers.text import decode_text

SENTENCES = [
    "The first sentence is plain English.",
    "Le café était naïve, à côté de la fenêtre.",
    "日本語のテキストも読めます。",
    "Last line: Zürich, Ærø, Œuvre.",
]


def assert_in_order(text: str, parts: list[str]) -> None:
    position = 0
    for part in parts:
        found = text.find(part, position)
        assert found >= 0, f"{part!r} not found (in order) in {text!r}"
        position = found + len(part)


# --- a minimal PDF writer: Type0 font with Identity-H encoding and a ToUnicode CMap, so any BMP text
# round-trips through text extraction without a font file.


def make_pdf(pages: list[list[str]], *, compress: bool = False, broken: frozenset[int] = frozenset()) -> bytes:
    """A PDF whose pages show ``pages``' lines; the pages numbered in ``broken`` get an unknown stream filter."""
    chars = sorted({ord(c) for lines in pages for line in lines for c in line})
    assert all(c < 0x10000 for c in chars)
    objects: list[bytes] = []

    def add(body: bytes) -> int:
        objects.append(body)
        return len(objects)

    def stream(data: bytes, extra: bytes = b"") -> bytes:
        if compress:
            data = zlib.compress(data)
            extra += b" /Filter /FlateDecode"
        return b"<< /Length %d%s >>\nstream\n" % (len(data), extra) + data + b"\nendstream"

    catalog = add(b"")  # filled in below, once the page tree's number is known
    cmap_lines = [
        b"/CIDInit /ProcSet findresource begin 12 dict begin begincmap",
        b"/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        b"/CMapName /Adobe-Identity-UCS def /CMapType 2 def",
        b"1 begincodespacerange <0000> <FFFF> endcodespacerange",
    ]
    for start in range(0, len(chars), 100):
        block = chars[start : start + 100]
        cmap_lines.append(b"%d beginbfchar" % len(block))
        cmap_lines += [b"<%04X> <%04X>" % (c, c) for c in block]
        cmap_lines.append(b"endbfchar")
    cmap_lines.append(b"endcmap CMapName currentdict /CMap defineresource pop end end")
    to_unicode = add(stream(b"\n".join(cmap_lines)))
    descriptor = add(
        b"<< /Type /FontDescriptor /FontName /TestSans /Flags 32 /FontBBox [0 -200 1000 900] /ItalicAngle 0"
        b" /Ascent 900 /Descent -200 /CapHeight 700 /StemV 80 >>"
    )
    cid_font = add(
        b"<< /Type /Font /Subtype /CIDFontType2 /BaseFont /TestSans /CIDSystemInfo << /Registry (Adobe)"
        b" /Ordering (Identity) /Supplement 0 >> /FontDescriptor %d 0 R /DW 600 /CIDToGIDMap /Identity >>" % descriptor
    )
    font = add(
        b"<< /Type /Font /Subtype /Type0 /BaseFont /TestSans /Encoding /Identity-H /DescendantFonts [%d 0 R]"
        b" /ToUnicode %d 0 R >>" % (cid_font, to_unicode)
    )
    page_tree = len(objects) + 1 + 2 * len(pages)
    kids = []
    for number, lines in enumerate(pages):
        ops = [b"BT /F1 11 Tf 72 770 Td"]
        for i, line in enumerate(lines):
            if i:
                ops.append(b"0 -16 Td")
            ops.append(b"<" + line.encode("utf-16-be").hex().upper().encode() + b"> Tj")
        ops.append(b"ET")
        content = add(stream(b"\n".join(ops), b" /Filter /BogusDecode" if number in broken else b""))
        kids.append(
            add(
                b"<< /Type /Page /Parent %d 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 %d 0 R >> >>"
                b" /Contents %d 0 R >>" % (page_tree, font, content)
            )
        )
    assert add(b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))) == (
        page_tree
    )
    objects[catalog - 1] = b"<< /Type /Catalog /Pages %d 0 R >>" % page_tree
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    out += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    out += b"trailer\n<< /Size %d /Root %d 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, catalog, xref)
    return bytes(out)


# --- API surface


def test_supported_extensions_and_mime_types() -> None:
    required = {"txt", "md", "markdown", "mdx", "html", "htm", "pdf", "docx", "xlsx", "csv"}
    assert required <= SUPPORTED_EXTENSIONS
    assert set(MIME_TYPES) == set(SUPPORTED_EXTENSIONS)
    assert all(ext == ext.lower() and not ext.startswith(".") for ext in SUPPORTED_EXTENSIONS)
    assert MIME_TYPES["pdf"] == "application/pdf"
    assert MIME_TYPES["docx"].endswith("wordprocessingml.document")
    assert MIME_TYPES["xlsx"].endswith("spreadsheetml.sheet")
    assert MIME_TYPES["csv"] == "text/csv"


@pytest.mark.parametrize(
    ("filename", "extension"),
    [
        ("report.PDF", "pdf"),
        ("notes.Md", "md"),
        ("archive.tar.gz", "gz"),
        ("dir.v2/README", ""),
        ("C:\\Users\\me\\Sheet.XLSX", "xlsx"),
        (".env", ""),
        ("trailing.", ""),
        ("noext", ""),
        ("", ""),
    ],
)
def test_extension_of(filename: str, extension: str) -> None:
    assert extension_of(filename) == extension


def test_unsupported_extension() -> None:
    with pytest.raises(UnsupportedFileType, match=r"\.exe"):
        parse_file("setup.exe", b"MZ\x90\x00")
    with pytest.raises(UnsupportedFileType, match="without extension"):
        parse_file("Makefile", b"all:\n")
    with pytest.raises(UnsupportedFileType):
        parse_file("old.doc", b"\xd0\xcf\x11\xe0")


def test_extension_is_case_insensitive() -> None:
    text = "\n".join(SENTENCES)
    assert parse_file("NOTES.TXT", text.encode()) == text
    assert parse_file("page.HtMl", b"<p>caf\xc3\xa9</p>") == "café"
    assert parse_file("doc.PDF", make_pdf([SENTENCES])) == parse_file("doc.pdf", make_pdf([SENTENCES]))


# --- text formats and decoding


@pytest.mark.parametrize("extension", ["txt", "md", "markdown", "mdx", "vtt", "properties"])
def test_text_formats_keep_the_source(extension: str) -> None:
    source = "# Heading café\n\nSome *naïve* text with [a link](http://x.y).\n\n## 日本語\n- item\n"
    assert parse_file(f"f.{extension}", source.encode()) == source


def test_utf8_bom_and_newlines() -> None:
    data = b"\xef\xbb\xbf" + "line one café\r\nline two\rline three".encode()
    assert parse_file("a.txt", data) == "line one café\nline two\nline three"


@pytest.mark.parametrize("encoding", ["utf-16", "utf-16-be", "utf-32"])
def test_utf16_and_utf32_with_bom(encoding: str) -> None:
    text = "\n".join(SENTENCES)
    data = text.encode(encoding)
    if encoding == "utf-16-be":
        data = b"\xfe\xff" + data
    assert parse_file("a.txt", data) == text


@pytest.mark.parametrize("encoding", ["utf-16-le", "utf-16-be"])
def test_utf16_without_bom(encoding: str) -> None:
    text = "Plain text, café and naïve, without any byte order mark."
    assert parse_file("a.txt", text.encode(encoding)) == text


@pytest.mark.parametrize(
    "text",
    [
        "Le café naïve.",  # too short for any detector: Latin guesses become cp1252
        "Le café était très naïve, à côté de la fenêtre. Déjà vu! Les élèves préfèrent la bibliothèque.",
        "Größenwahn ist schön, übermäßig und äußerst süß. Die Straße führt zum Fluß.",
    ],
)
def test_latin1_text(text: str) -> None:
    assert parse_file("a.txt", text.encode("latin-1")) == text


def test_cp1252_punctuation() -> None:
    text = "“Quoted” café — naïve… €5"
    assert parse_file("a.txt", text.encode("cp1252")) == text


@pytest.mark.parametrize(
    ("text", "encoding"),
    [
        ("Привет, как дела? Это простой текст на русском языке для проверки кодировки. " * 3, "cp1251"),
        ("日本語のテキストです。これは文字コードの検出テストです。" * 3, "shift_jis"),
        ("中文文本测试，这是一个编码检测。" * 3, "gbk"),
        ("Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig. Polska mowa jest piękna i trudna. ", "cp1250"),
    ],
)
def test_legacy_encodings_are_detected(text: str, encoding: str) -> None:
    assert decode_text(text.encode(encoding)) == text


def test_binary_data_in_text_file() -> None:
    with pytest.raises(ParseFailed, match="binary"):
        parse_file("a.txt", b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00")
    assert parse_file("a.txt", b"") == ""


# --- CSV


def test_csv_rows_like_dify() -> None:
    data = ('name, city ,note\n"Smith, J",Zürich,"two\nlines"\n,,\nTanaka,東京,\nAnn,Paris,ok,extra\n').encode()
    assert parse_file("people.csv", data) == (
        "name: Smith, J;city: Zürich;note: two lines\n"
        "name: Tanaka;city: 東京\n"
        "name: Ann;city: Paris;note: ok;column 4: extra"
    )


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_csv_delimiter_is_sniffed(delimiter: str) -> None:
    rows = [["id", "text"], ["1", "café; naïve, done"], ["2", "日本語"]]
    lines = []
    for row in rows:
        cells = [f'"{cell}"' if (delimiter in cell or "," in cell or ";" in cell) else cell for cell in row]
        lines.append(delimiter.join(cells))
    text = parse_file("a.csv", "\n".join(lines).encode())
    assert text == "id: 1;text: café; naïve, done\nid: 2;text: 日本語"


def test_csv_header_only_and_legacy_encoding() -> None:
    assert parse_file("a.csv", b"alpha,beta\n") == "alpha;beta"
    assert parse_file("a.csv", "ville,café\nGenève,noir\n".encode("latin-1")) == "ville: Genève;café: noir"
    assert parse_file("a.csv", "\ufeffa,b\r\n1,2\r\n".encode()) == "a: 1;b: 2"


# --- HTML


def test_html_structure_and_dropped_content() -> None:
    html = """<!DOCTYPE html><html><head><title>Ignored title</title><meta charset="utf-8">
    <style>p { color: red }</style><script>var secret = "no";</script></head>
    <body><h1>The   first
       sentence</h1><p>Le <b>café</b> était <i>naïve</i>.</p>
    <div>line one<br>line two</div><ul><li>alpha</li><li>beta</li></ul>
    <table><tr><th>Key</th><th>Value</th></tr><tr><td>日本語</td><td>yes</td></tr></table>
    <pre>def f():
    return 1</pre><noscript>enable js</noscript><!-- a comment -->
    <script>alert("nope")</script><p>Fin &amp; end</p></body></html>"""
    text = parse_file("page.html", html.encode())
    assert text == (
        "The first sentence\n\nLe café était naïve.\n\nline one\nline two\n\nalpha\nbeta\n\n"
        "Key | Value\n日本語 | yes\n\ndef f():\n    return 1\n\nFin & end"
    )
    for hidden in ("Ignored", "secret", "nope", "color", "enable js", "comment"):
        assert hidden not in text


def test_html_declared_encoding() -> None:
    html = '<html><head><meta charset="iso-8859-1"></head><body><p>Déjà vu, naïve café.</p></body></html>'
    assert parse_file("a.htm", html.encode("latin-1")) == "Déjà vu, naïve café."
    assert parse_file("a.htm", b"") == ""
    assert parse_file("a.htm", b"just text") == "just text"


# --- PDF


def test_pdf_pages_in_order() -> None:
    pages = [SENTENCES[:2], [], SENTENCES[2:]]
    for compress in (False, True):
        text = parse_file("doc.pdf", make_pdf(pages, compress=compress))
        assert_in_order(text, SENTENCES)
        assert text.split("\n\n") == ["\n".join(SENTENCES[:2]), "\n".join(SENTENCES[2:])]


def test_pdf_from_a_real_writer() -> None:
    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    paragraphs = [f"Page {n}: le café naïve number {n} is here." for n in range(1, 6)]
    for paragraph in paragraphs:
        pdf.add_page()
        pdf.multi_cell(0, 8, paragraph, new_x="LMARGIN", new_y="NEXT")
    text = parse_file("fpdf.pdf", bytes(pdf.output()))
    assert_in_order(text, paragraphs)
    assert text.count("\n\n") == len(paragraphs) - 1


def _encrypt(data: bytes, *, user_password: str, algorithm: str) -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password="owner-secret", algorithm=algorithm)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


@pytest.mark.parametrize("algorithm", ["RC4-128", "AES-256"])
def test_pdf_encrypted_with_empty_user_password_is_read(algorithm: str) -> None:
    data = _encrypt(make_pdf([SENTENCES]), user_password="", algorithm=algorithm)
    assert PdfReader(io.BytesIO(data)).is_encrypted
    assert_in_order(parse_file("locked.pdf", data), SENTENCES)


def test_pdf_with_a_password_fails() -> None:
    data = _encrypt(make_pdf([SENTENCES]), user_password="open-sesame", algorithm="AES-128")
    with pytest.raises(ParseFailed, match="invalid PDF: encrypted"):
        parse_file("locked.pdf", data)


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"not a pdf at all",
        b"%PDF-1.7\n" + b"\x00garbage" * 50,
        make_pdf([SENTENCES])[:60],  # truncated: no xref, no trailer
    ],
)
def test_corrupt_pdf(data: bytes) -> None:
    with pytest.raises(ParseFailed, match="invalid PDF"):
        parse_file("bad.pdf", data)


def test_pdf_with_one_broken_page_keeps_the_others(caplog: pytest.LogCaptureFixture) -> None:
    pages = [["first page text"], ["second page text"], ["third page text"]]
    with pytest.raises(NotImplementedError):  # what pypdf does with such a page
        PdfReader(io.BytesIO(make_pdf(pages, broken=frozenset({1})))).pages[1].extract_text()
    assert parse_file("partial.pdf", make_pdf(pages, broken=frozenset({1}))) == "first page text\n\nthird page text"
    assert "pdf page 2: text extraction failed" in caplog.text
    with pytest.raises(ParseFailed, match="invalid PDF: no page could be read"):
        parse_file("broken.pdf", make_pdf(pages, broken=frozenset({0, 1, 2})))


# --- DOCX


def test_docx_paragraphs_and_tables_in_document_order() -> None:
    document = Document()
    document.add_heading(SENTENCES[0], level=1)
    paragraph = document.add_paragraph("Le café ")
    paragraph.add_run("était naïve").bold = True
    paragraph.add_run(", à côté de la fenêtre.").font.size = Pt(9)
    document.add_paragraph("")
    table = document.add_table(rows=3, cols=3)
    for r, row in enumerate([["Name", "City", "Note"], ["Tanaka", "東京", "日本語"], ["Ann", "Zürich", ""]]):
        for c, value in enumerate(row):
            table.cell(r, c).text = value
    table.cell(2, 2).add_paragraph("second para")
    merged = document.add_table(rows=2, cols=3)
    merged.cell(0, 0).merge(merged.cell(0, 1)).text = "wide"
    merged.cell(0, 2).text = "right"
    merged.cell(1, 0).text = "a"
    merged.cell(1, 1).text = "b"
    merged.cell(1, 2).text = "c"
    document.add_paragraph(SENTENCES[2])
    document.add_paragraph(SENTENCES[3])
    out = io.BytesIO()
    document.save(out)
    text = parse_file("doc.docx", out.getvalue())
    assert text == "\n".join(
        [
            SENTENCES[0],
            SENTENCES[1],
            "| Name | City | Note |",
            "| --- | --- | --- |",
            "| Tanaka | 東京 | 日本語 |",
            "| Ann | Zürich | second para |",
            "| wide |  | right |",
            "| --- | --- | --- |",
            "| a | b | c |",
            SENTENCES[2],
            SENTENCES[3],
        ]
    )


@pytest.mark.parametrize("extension", ["docx", "xlsx"])
def test_corrupt_office_files(extension: str) -> None:
    kind = extension.upper()
    with pytest.raises(ParseFailed, match=f"invalid {kind}: empty"):
        parse_file(f"a.{extension}", b"")
    with pytest.raises(ParseFailed, match=f"invalid {kind}: not a ZIP"):
        parse_file(f"a.{extension}", b"PK\x03\x04 truncated garbage")
    not_office = io.BytesIO()
    with zipfile.ZipFile(not_office, "w") as archive:
        archive.writestr("hello.txt", "not an office document")
    with pytest.raises(ParseFailed, match=f"invalid {kind}"):
        parse_file(f"a.{extension}", not_office.getvalue())


@pytest.mark.parametrize("extension", ["docx", "xlsx"])
def test_office_zip_bomb_is_refused(extension: str, monkeypatch: pytest.MonkeyPatch) -> None:
    out = io.BytesIO()
    if extension == "docx":
        document = Document()
        document.add_paragraph("x" * 200_000)
        document.save(out)
    else:
        workbook = Workbook()
        workbook.active.append(["x" * 30_000] * 10)  # type: ignore[union-attr]
        workbook.save(out)
    assert parse_file(f"big.{extension}", out.getvalue())  # fine under the real limit
    monkeypatch.setattr(office, "MAX_UNCOMPRESSED", 150_000)
    with pytest.raises(ParseFailed, match=f"invalid {extension.upper()}: expands to"):
        parse_file(f"big.{extension}", out.getvalue())


def test_docx_and_xlsx_are_not_interchangeable() -> None:
    workbook = Workbook()
    workbook.active.append(["a"])  # type: ignore[union-attr]
    xlsx = io.BytesIO()
    workbook.save(xlsx)
    with pytest.raises(ParseFailed, match="invalid DOCX"):
        parse_file("wrong.docx", xlsx.getvalue())
    docx = io.BytesIO()
    Document().save(docx)
    with pytest.raises(ParseFailed, match="invalid XLSX"):
        parse_file("wrong.xlsx", docx.getvalue())


# --- XLSX


def test_xlsx_rows_like_dify() -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.title = "People"
    sheet.append([None, None, None])
    sheet.append(["Name", "City", None, "Score"])
    sheet.append(["Tanaka", "東京", "extra", 3])
    sheet.append([None, None, None, None])
    sheet.append(["Ann", "Zürich\nnord", None, 2.5])
    sheet.append(["Bob", None, None, "=1+1"])  # a formula without cached value (never computed by Excel)
    numbers = workbook.create_sheet("Types")
    numbers.append(["when", "flag", "ratio"])
    numbers.append([dt.datetime(2024, 5, 1), True, 0.1 + 0.2])
    numbers.append([dt.datetime(2024, 5, 1, 13, 30), False, 1e20])
    workbook.create_sheet("Empty")
    workbook.create_sheet("Header only").append(["only", None, "header"])
    out = io.BytesIO()
    workbook.save(out)
    text = parse_file("book.xlsx", out.getvalue())
    assert text == (
        '"Name":"Tanaka";"City":"東京";"C":"extra";"Score":"3"\n'
        '"Name":"Ann";"City":"Zürich nord";"Score":"2.5"\n'
        '"Name":"Bob"\n'
        "\n"
        '"when":"2024-05-01";"flag":"TRUE";"ratio":"0.3"\n'
        '"when":"2024-05-01 13:30:00";"flag":"FALSE";"ratio":"1e+20"\n'
        "\n"
        '"only";"header"'
    )


def test_xlsx_sentences_in_order() -> None:
    workbook = Workbook()
    sheet = workbook.active
    assert sheet is not None
    sheet.append(["sentence"])
    for sentence in SENTENCES:
        sheet.append([sentence])
    out = io.BytesIO()
    workbook.save(out)
    text = parse_file("s.xlsx", out.getvalue())
    assert text.splitlines() == [f'"sentence":"{s}"' for s in SENTENCES]
