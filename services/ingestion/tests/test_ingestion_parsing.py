from __future__ import annotations

import io
import re

import pytest
from pypdf import PdfReader, PdfWriter

from isthmus_core.errors import ErrorCode, InvalidArgument
from isthmus_ingestion.parsing import (
    APPLICATION_PDF,
    EXTENSIONS,
    TEXT_HTML,
    TEXT_MARKDOWN,
    TEXT_PLAIN,
    ParsedDocument,
    normalise_whitespace,
    parse_document,
)

# --- a real PDF, built object by object with a correct cross-reference table -----------------------


def _pdf_string(text: str) -> str:
    return "(" + text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)") + ")"


def make_pdf(pages: list[str], title: str | None = None) -> bytes:
    """A minimal PDF 1.4 with one Helvetica text line per input line, one page per item of ``pages``."""
    objects: dict[int, bytes] = {1: b"<< /Type /Catalog /Pages 2 0 R >>"}
    font = 3 + 2 * len(pages)
    info = font + 1
    kids = " ".join(f"{3 + 2 * i} 0 R" for i in range(len(pages)))
    objects[2] = f"<< /Type /Pages /Kids [{kids}] /Count {len(pages)} >>".encode()
    for i, page_text in enumerate(pages):
        page, contents = 3 + 2 * i, 4 + 2 * i
        objects[page] = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
            f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {contents} 0 R >>"
        ).encode()
        operators = ["BT", "/F1 12 Tf", "14 TL", "72 720 Td"]
        operators += [f"{_pdf_string(line)} Tj T*" for line in page_text.split("\n")]
        operators.append("ET")
        stream = "\n".join(operators).encode("latin-1")
        objects[contents] = b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream)
    objects[font] = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>"
    if title is not None:
        objects[info] = f"<< /Title {_pdf_string(title)} >>".encode("latin-1")
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets: dict[int, int] = {}
    for number in sorted(objects):
        offsets[number] = len(out)
        out += b"%d 0 obj\n%s\nendobj\n" % (number, objects[number])
    size = max(objects) + 1
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % size
    for number in range(1, size):
        out += b"%010d 00000 n \n" % offsets[number] if number in offsets else b"0000000000 65535 f \n"
    trailer = b"<< /Size %d /Root 1 0 R" % size + (b" /Info %d 0 R" % info if title is not None else b"")
    out += b"trailer\n%s >>\nstartxref\n%d\n%%%%EOF\n" % (trailer, xref)
    return bytes(out)


def _rewrite(pdf: bytes, *, user_password: str | None = None, owner_password: str = "owner") -> bytes:
    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf)))
    if user_password is not None:
        writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-128")
    buffer = io.BytesIO()
    writer.write(buffer)
    return buffer.getvalue()


PAGE_ONE = "Isthmus ingests documents.\nThe second line (with parentheses)."
PAGE_TWO = "Retrieval happens on page two."


@pytest.fixture(scope="module")
def pdf_bytes() -> bytes:
    return make_pdf([PAGE_ONE, PAGE_TWO], title="Isthmus Handbook")


def _reject(data: bytes, filename: str, content_type: str | None = None) -> str:
    with pytest.raises(InvalidArgument) as caught:
        parse_document(data, filename, content_type)
    assert caught.value.code is ErrorCode.INVALID_ARGUMENT
    assert caught.value.permanent
    return str(caught.value.reason)


# --- PDF ----------------------------------------------------------------------------------------------


def test_the_hand_built_pdf_is_valid_for_a_strict_reader(pdf_bytes: bytes) -> None:
    reader = PdfReader(io.BytesIO(pdf_bytes), strict=True)
    assert len(reader.pages) == 2
    assert "Isthmus ingests documents." in reader.pages[0].extract_text()


def test_pdf_text_of_every_page_with_a_paragraph_break_between_pages(pdf_bytes: bytes) -> None:
    parsed = parse_document(pdf_bytes, "handbook.pdf")
    assert parsed.content_type == APPLICATION_PDF
    assert parsed.title == "Isthmus Handbook"
    one, two = parsed.text.split("\n\n")
    assert one.splitlines() == PAGE_ONE.splitlines()
    assert two == PAGE_TWO


def test_pdf_declared_only_by_content_type_and_without_title() -> None:
    parsed = parse_document(make_pdf([PAGE_TWO]), "upload", "application/pdf")
    assert parsed == ParsedDocument(text=PAGE_TWO, content_type=APPLICATION_PDF, title=None)


def test_pdf_encrypted_with_only_an_owner_password_is_readable(pdf_bytes: bytes) -> None:
    encrypted = _rewrite(pdf_bytes, user_password="")
    assert PdfReader(io.BytesIO(encrypted)).is_encrypted
    assert PAGE_TWO in parse_document(encrypted, "open.pdf").text


def test_password_protected_pdf_is_rejected(pdf_bytes: bytes) -> None:
    reason = _reject(_rewrite(pdf_bytes, user_password="secret"), "locked.pdf")
    assert reason.startswith("encrypted PDF")
    assert "password" in reason


@pytest.mark.parametrize("fraction", [0.3, 0.6, 0.9])
def test_truncated_pdf_is_corrupt(pdf_bytes: bytes, fraction: float) -> None:
    reason = _reject(pdf_bytes[: int(len(pdf_bytes) * fraction)], "cut.pdf")
    assert reason.startswith("corrupt PDF: 'cut.pdf'")


def test_garbled_pdf_is_corrupt() -> None:
    reason = _reject(b"%PDF-1.7\n" + bytes(range(256)) * 4, "garbled.pdf")
    assert reason.startswith("corrupt PDF")


def test_pdf_without_a_text_layer_is_rejected() -> None:
    writer = PdfWriter()
    writer.add_blank_page(width=200, height=200)
    writer.add_blank_page(width=200, height=200)
    buffer = io.BytesIO()
    writer.write(buffer)
    reason = _reject(buffer.getvalue(), "scan.pdf")
    assert reason.startswith("PDF has no extractable text")
    assert "2 page(s)" in reason


# --- plain text ---------------------------------------------------------------------------------------


def test_plain_text_whitespace_is_normalised_and_paragraphs_kept() -> None:
    raw = "\ufeff  First   line\twith tabs \r\nsecond line\r\n\r\n\r\n\r\n  Next\u00a0paragraph  \n\n"
    parsed = parse_document(raw.encode("utf-8"), "notes.txt")
    assert parsed == ParsedDocument(
        text="First line with tabs\nsecond line\n\nNext paragraph", content_type=TEXT_PLAIN, title=None
    )


def test_plain_text_keeps_non_ascii_and_accepts_charset_parameter() -> None:
    text = "café naïve — Ζεύς 🙂"
    parsed = parse_document(text.encode(), "greek.txt", "text/plain; charset=utf-8")
    assert parsed.text == text


def test_generic_content_type_counts_as_undeclared() -> None:
    assert parse_document(b"hello", "a.txt", "application/octet-stream").content_type == TEXT_PLAIN


def test_unknown_extension_defers_to_the_declared_type() -> None:
    assert parse_document(b"log line", "service.log", "text/plain").text == "log line"


def test_extension_is_case_insensitive_and_paths_are_ignored() -> None:
    assert parse_document(b"# Hi", "docs\\sub/README.MD").content_type == TEXT_MARKDOWN


# --- markdown -----------------------------------------------------------------------------------------

MARKDOWN = """# Getting started &amp; more

Isthmus is a *RAG* platform with `hybrid` search, see [the docs](https://example.com).
![architecture diagram](arch.png)

## Install

- run **make setup**
- run make test

| Flag | Meaning |
|------|---------|
| -v   | verbose |

```bash
isthmus run --target all
```

<div>Raw <b>HTML</b> block<script>alert(1)</script></div>
"""


def test_markdown_keeps_words_and_headings_and_strips_markup() -> None:
    parsed = parse_document(MARKDOWN.encode(), "guide.md")
    assert parsed.content_type == TEXT_MARKDOWN
    assert parsed.title == "Getting started & more"
    paragraphs = parsed.text.split("\n\n")
    assert paragraphs[0] == "Getting started & more"
    assert "Install" in paragraphs
    for words in ("RAG platform with hybrid search, see the docs.", "architecture diagram", "-v | verbose"):
        assert words in parsed.text
    assert "run make setup\nrun make test" in parsed.text
    assert "isthmus run --target all" in paragraphs
    assert "Raw HTML block" in paragraphs
    for markup in ("#", "*", "`", "](", "![", "|---", "<b>", "alert"):
        assert markup not in parsed.text


def test_markdown_title_falls_back_to_the_first_heading() -> None:
    parsed = parse_document(b"Intro text\n\n### Deep *heading*\n\nbody", "x.markdown")
    assert parsed.title == "Deep heading"
    assert parsed.text == "Intro text\n\nDeep heading\n\nbody"


def test_text_plain_declared_for_a_markdown_file_is_parsed_as_markdown() -> None:
    parsed = parse_document(b"# Title\n\nbody", "readme.md", "text/plain")
    assert (parsed.content_type, parsed.title, parsed.text) == (TEXT_MARKDOWN, "Title", "Title\n\nbody")


def test_markdown_soft_line_breaks_are_spaces_and_hard_breaks_stay() -> None:
    source = (
        "# Travel\n\n"
        "Employees book flights through the Skyport portal at least\n"
        "fourteen days before departure. Hotels cost up to 120 euros per night in Germany and at\n"
        "140 euros per night abroad.\n\n"
        "Signed by the board.  \nHamburg, May 2026\n\n"
        "- Hamburg first, then Antwerp, then\n  Rotterdam.\n- Taxis only at night.\n"
    )
    parsed = parse_document(source.encode(), "travel.md")
    assert parsed.text.split("\n\n") == [
        "Travel",
        "Employees book flights through the Skyport portal at least fourteen days before departure. "
        "Hotels cost up to 120 euros per night in Germany and at 140 euros per night abroad.",
        "Signed by the board.\nHamburg, May 2026",  # a hard break (two trailing spaces) is a line break
        "Hamburg first, then Antwerp, then Rotterdam.\nTaxis only at night.",  # one list item per line
    ]


# --- HTML ---------------------------------------------------------------------------------------------

HTML = b"""<!DOCTYPE html>
<html><head><title> Release
   notes </title><style>p { color: red }</style><script>var secret = 1;</script></head>
<body><!-- a comment -->
<h1>Version 2</h1>
<p>Faster   <b>ingestion</b> and
   better &amp; safer retrieval.<br>Second line.</p>
<ul><li>one</li><li>two</li></ul>
<noscript>enable javascript</noscript>
<pre>  indented
    code</pre>
<script>document.write("tracking")</script>
</body></html>"""


def test_html_drops_scripts_and_styles_and_keeps_title_and_paragraphs() -> None:
    parsed = parse_document(HTML, "notes.html")
    assert parsed.content_type == TEXT_HTML
    assert parsed.title == "Release notes"
    assert parsed.text.split("\n\n") == [
        "Version 2",
        "Faster ingestion and better & safer retrieval.\nSecond line.",
        "one\ntwo",
        "indented\ncode",
    ]
    for hidden in ("secret", "color", "tracking", "comment", "javascript", "Release"):
        assert hidden not in parsed.text


def test_html_source_line_breaks_are_spaces() -> None:
    markup = (
        b"<html><body><p>Employees book flights through the <b>Skyport</b> portal at least\n"
        b"   fourteen days before departure.</p>\n"
        b"<ul><li>Hamburg first,\n  then Antwerp</li></ul></body></html>"
    )
    assert parse_document(markup, "travel.html").text == (
        "Employees book flights through the Skyport portal at least fourteen days before departure."
        "\n\nHamburg first, then Antwerp"
    )


def test_html_title_falls_back_to_the_first_h1() -> None:
    parsed = parse_document(b"<h1>Only <i>heading</i></h1><p>body</p>", "frag.htm", "text/html")
    assert parsed.title == "Only heading"
    assert parsed.text == "Only heading\n\nbody"


# --- rejections ---------------------------------------------------------------------------------------


def test_empty_file() -> None:
    assert _reject(b"", "a.txt").startswith("empty file")


@pytest.mark.parametrize("filename", ["report.doc", "archive.tar.gz", "image.PNG"])
def test_unsupported_extension_names_the_supported_ones(filename: str) -> None:
    reason = _reject(b"whatever", filename)
    assert reason.startswith("unsupported file extension")
    assert all(extension in reason for extension in EXTENSIONS)


def test_no_extension_and_no_content_type() -> None:
    reason = _reject(b"hello", "README")
    assert "no file extension and no content type" in reason
    assert ".md" in reason


def test_unsupported_content_type_names_the_supported_ones() -> None:
    reason = _reject(b"a,b", "data.bin", "application/zip")
    assert reason.startswith("unsupported content type 'application/zip'")
    assert all(kind in reason for kind in (TEXT_PLAIN, TEXT_MARKDOWN, TEXT_HTML, APPLICATION_PDF))


def test_declared_type_disagreeing_with_the_extension() -> None:
    reason = _reject(b"hello", "notes.txt", "application/pdf")
    assert "disagrees with the file extension '.txt'" in reason


def test_pdf_extension_holding_text() -> None:
    reason = _reject(b"just some text", "x.pdf")
    assert "declared as a PDF but its content is text" in reason


def test_pdf_content_type_holding_html() -> None:
    reason = _reject(HTML, "page", "application/pdf")
    assert "its content is an HTML document" in reason


def test_text_extension_holding_a_pdf(pdf_bytes: bytes) -> None:
    reason = _reject(pdf_bytes, "x.txt")
    assert "its content is a PDF" in reason


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"\x89PNG\r\n\x1a\n" + bytes(32), "a PNG image"),
        (b"PK\x03\x04" + bytes(32), "a ZIP archive"),
        (b"abc\x00\x01\x02def", "binary data (a NUL byte at offset 3)"),
        (bytes([0x01, 0x02, 0x03, 0x04]) * 10 + b"text", "looks like binary data"),
    ],
)
def test_text_extension_holding_binary(data: bytes, expected: str) -> None:
    assert expected in _reject(data, "x.txt")


def test_text_that_is_not_utf8() -> None:
    latin1 = "naïve café".encode("latin-1")
    reason = _reject(latin1, "legacy.txt")
    assert f"is not valid UTF-8 (byte 0x{'ï'.encode('latin-1')[0]:02x} at offset 2)" in reason


def test_utf16_text_is_rejected_with_advice() -> None:
    assert "re-save it as UTF-8" in _reject("hello".encode("utf-16"), "wide.md")


def test_plain_text_holding_an_html_document() -> None:
    assert "its content is an HTML document" in _reject(HTML, "page.txt")


def test_html_without_markup() -> None:
    assert "contains no HTML markup" in _reject(b"plain words only", "page.html")


@pytest.mark.parametrize(
    ("data", "filename"),
    [(b" \n\t\r\n ", "blank.txt"), (b"<html><script>x()</script></html>", "s.html"), (b"---\n", "rule.md")],
)
def test_documents_without_any_text(data: bytes, filename: str) -> None:
    assert "contains no text" in _reject(data, filename)


# --- normalisation ------------------------------------------------------------------------------------


def test_normalise_whitespace_removes_invisible_characters_and_composes_accents() -> None:
    decomposed = "cafe\u0301 in\u00adter\u200bnal\x07\fpage two"
    assert normalise_whitespace(decomposed) == "café internal\n\npage two"
    assert re.search(r"\s{3,}", normalise_whitespace("a\n\n\n\n b   c")) is None
