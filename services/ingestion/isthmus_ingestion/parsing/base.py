"""What every format's parser shares (pure: bytes in, :class:`ParsedDocument` out): the supported types,
type resolution and sniffing, whitespace normalisation, and the text, HTML, Markdown and PDF extractors.

The bytes are sniffed and must agree with the declared type; every rejection is an
:class:`~isthmus_core.errors.InvalidArgument` whose reason says what is wrong and what to do. Size limits
are enforced by the service, not here.
"""

from __future__ import annotations

import io
import re
import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Final

from bs4 import BeautifulSoup, Tag
from bs4.element import Comment, Declaration, Doctype, NavigableString, ProcessingInstruction
from markdown_it import MarkdownIt
from markdown_it.token import Token
from pypdf import PasswordType, PdfReader
from pypdf.errors import DependencyError

from isthmus_core.errors import ConfigurationError, InvalidArgument

TEXT_PLAIN: Final = "text/plain"
TEXT_MARKDOWN: Final = "text/markdown"
TEXT_HTML: Final = "text/html"
APPLICATION_PDF: Final = "application/pdf"
DOCX: Final = "application/vnd.openxmlformats-officedocument.wordprocessingml.document"
PPTX: Final = "application/vnd.openxmlformats-officedocument.presentationml.presentation"
XLSX: Final = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"
TEXT_CSV: Final = "text/csv"
TEXT_TSV: Final = "text/tab-separated-values"
APPLICATION_JSON: Final = "application/json"
APPLICATION_JSONL: Final = "application/jsonl"
MESSAGE_RFC822: Final = "message/rfc822"
APPLICATION_MBOX: Final = "application/mbox"

#: file extension (lower case, with the dot) -> canonical content type
EXTENSIONS: Final[dict[str, str]] = {
    ".txt": TEXT_PLAIN,
    ".md": TEXT_MARKDOWN,
    ".markdown": TEXT_MARKDOWN,
    ".html": TEXT_HTML,
    ".htm": TEXT_HTML,
    ".pdf": APPLICATION_PDF,
    ".docx": DOCX,
    ".pptx": PPTX,
    ".xlsx": XLSX,
    ".csv": TEXT_CSV,
    ".tsv": TEXT_TSV,
    ".json": APPLICATION_JSON,
    ".jsonl": APPLICATION_JSONL,
    ".ndjson": APPLICATION_JSONL,
    ".eml": MESSAGE_RFC822,
    ".mbox": APPLICATION_MBOX,
}
SUPPORTED_CONTENT_TYPES: Final = frozenset(EXTENSIONS.values())

#: other spellings of the supported types seen in the wild
_CONTENT_TYPE_ALIASES: Final[dict[str, str]] = {
    "text/x-markdown": TEXT_MARKDOWN,
    "application/xhtml+xml": TEXT_HTML,
    "application/x-pdf": APPLICATION_PDF,
    "application/csv": TEXT_CSV,
    "text/x-csv": TEXT_CSV,
    "text/tsv": TEXT_TSV,
    "text/json": APPLICATION_JSON,
    "application/x-ndjson": APPLICATION_JSONL,
    "application/x-jsonlines": APPLICATION_JSONL,
    "application/ndjson": APPLICATION_JSONL,
    "application/jsonlines": APPLICATION_JSONL,
    "text/x-mbox": APPLICATION_MBOX,
    "application/x-mbox": APPLICATION_MBOX,
}
#: the Office Open XML types (ZIP packages)
OFFICE_TYPES: Final = frozenset({DOCX, PPTX, XLSX})
#: types read as UTF-8 text before their own parser runs
TEXT_TYPES: Final = frozenset(
    {TEXT_PLAIN, TEXT_MARKDOWN, TEXT_HTML, TEXT_CSV, TEXT_TSV, APPLICATION_JSON, APPLICATION_JSONL}
)
#: content types that say nothing about the content (clients send them when they do not know)
_GENERIC_CONTENT_TYPES: Final = frozenset({"", "application/octet-stream", "binary/octet-stream"})

#: leading bytes of common binary formats, only to word the error precisely
_BINARY_SIGNATURES: Final[tuple[tuple[bytes, str], ...]] = (
    (b"\x89PNG\r\n\x1a\n", "a PNG image"),
    (b"\xff\xd8\xff", "a JPEG image"),
    (b"GIF87a", "a GIF image"),
    (b"GIF89a", "a GIF image"),
    (b"PK\x03\x04", "a ZIP archive (e.g. .docx, .xlsx, .pptx or .zip)"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Microsoft Office document (.doc, .xls or .ppt)"),
    (b"\x1f\x8b", "gzip-compressed data"),
)
_PDF_MAGIC: Final = b"%PDF-"
#: control characters that never occur in real text (tab, newlines and form feed excluded)
_BINARY_CONTROL_CHARS: Final = frozenset(chr(c) for c in [*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F])
_BINARY_CONTROL_CHAR: Final = re.compile("[\x00-\x08\x0e-\x1f\x7f]")
#: share of such characters above which "text" is really binary data
_MAX_CONTROL_CHAR_RATIO: Final = 0.05

_HORIZONTAL_SPACE: Final = re.compile(r"[^\S\n]+")
_MANY_NEWLINES: Final = re.compile(r"\n{3,}")
_WHITESPACE: Final = re.compile(r"\s+")
_HTML_DOCUMENT_START: Final = re.compile(r"\s*(?:<!--.*?-->\s*)*<(?:!doctype\s+html|html[\s>])", re.I | re.S)
_HTML_TAG: Final = re.compile(r"<(?:[a-z][a-z0-9-]*|!--|!doctype)[\s>/]", re.I)

#: characters that become line breaks (\f: page break -> paragraph break) or disappear
_TRANSLATION: Final[dict[int, str | None]] = {
    **{ord(c): None for c in _BINARY_CONTROL_CHARS},
    0x0B: "\n",  # vertical tab
    0x0C: "\n\n",  # form feed
    0x85: "\n",  # next line
    0x2028: "\n",  # line separator
    0x2029: "\n\n",  # paragraph separator
    0x00AD: None,  # soft hyphen
    0x200B: None,  # zero-width space
    0xFEFF: None,  # byte-order mark / zero-width no-break space
}

_HTML_DROPPED_TAGS: Final = (
    "head",
    "script",
    "style",
    "noscript",
    "template",
    "svg",
    "canvas",
    "iframe",
    "object",
    "embed",
)
_HTML_PARAGRAPH_TAGS: Final = (
    "address",
    "article",
    "aside",
    "blockquote",
    "caption",
    "details",
    "div",
    "dl",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hr",
    "main",
    "nav",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "ul",
)
_HTML_LINE_TAGS: Final = ("li", "dt", "dd", "tr")
_HTML_CELL_TAGS: Final = ("td", "th")


@dataclass(frozen=True, slots=True)
class ChildFile:
    """A file found inside a document (an e-mail's attachment, one message of an mbox): the service ingests
    it as a document of its own, with the parent's id in its metadata."""

    filename: str
    data: bytes
    #: the declared type ("" = from the extension and the bytes)
    content_type: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ParseOptions:
    """How to read record formats (JSON, JSON Lines): which fields hold the text, the title and metadata.

    A field is a key of the record, or a dotted path into nested objects (``body.text``). A record's text
    is its text fields that are present, in this order; a record with none of them is an error."""

    text_fields: tuple[str, ...] = ("text", "content", "body")
    title_field: str = "title"
    metadata_fields: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class ParsedDocument:
    """Plain text of a document (paragraphs separated by a blank line), its canonical type and title.

    Inside a Markdown or HTML paragraph, source line breaks are spaces (a sentence wrapped over two lines
    stays one line); only hard breaks (``<br>``, a Markdown hard break), list items and table rows keep a
    single newline. ``metadata``: what the file says about itself (an e-mail's headers, a JSON record's
    metadata fields), below the upload's own metadata; ``children``: files found inside it.
    """

    text: str
    content_type: str
    title: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    children: tuple[ChildFile, ...] = ()


def rejected(filename: str, kind: str, reason: str) -> InvalidArgument:
    """The InvalidArgument of a file of type ``kind`` that cannot be read (``reason`` says why and what to
    do)."""
    return InvalidArgument(reason, filename=filename, content_type=kind)


def record_text(header: list[str], values: list[str]) -> str:
    """``"Header: value; Header: value"``; empty values left out, a column without a header named by its
    position (``column 3``)."""
    fields = []
    for index, value in enumerate(values):
        if not value:
            continue
        label = header[index] if index < len(header) and header[index] else f"column {index + 1}"
        fields.append(f"{label}: {value}")
    return "; ".join(fields)


def normalise_whitespace(text: str) -> str:
    """NFC-normalise; unify line breaks; collapse runs of spaces; keep paragraph breaks (one blank line).

    Lines are stripped, at most one blank line is kept between paragraphs, invisible and control
    characters are removed, and the result has no leading or trailing whitespace.
    """
    text = unicodedata.normalize("NFC", text.replace("\r\n", "\n").replace("\r", "\n"))
    text = text.translate(_TRANSLATION)
    text = "\n".join(_HORIZONTAL_SPACE.sub(" ", line).strip() for line in text.split("\n"))
    return _MANY_NEWLINES.sub("\n\n", text).strip()


def supported_types_description() -> str:
    """Human list of what is accepted, for error messages and help texts."""
    extensions = ", ".join(sorted(EXTENSIONS))
    types = ", ".join(sorted(SUPPORTED_CONTENT_TYPES))
    return f"supported extensions: {extensions}; supported content types: {types}"


# --- type resolution ----------------------------------------------------------------------------------


def _normalise_content_type(content_type: str | None) -> str | None:
    if content_type is None:
        return None
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type in _GENERIC_CONTENT_TYPES:
        return None
    return _CONTENT_TYPE_ALIASES.get(media_type, media_type)


def _extension(filename: str) -> str:
    return PurePosixPath(filename.replace("\\", "/")).suffix.lower()


def resolve_content_type(filename: str, content_type: str | None) -> str:
    declared = _normalise_content_type(content_type)
    extension = _extension(filename)
    by_extension = EXTENSIONS.get(extension)
    if declared is not None and declared not in SUPPORTED_CONTENT_TYPES:
        raise InvalidArgument(
            f"unsupported content type {content_type!r} for {filename!r}; {supported_types_description()}",
            filename=filename,
            content_type=str(content_type),
        )
    if declared is None:
        if by_extension is not None:
            return by_extension
        if extension:
            reason = f"unsupported file extension {extension!r} ({filename!r})"
        else:
            reason = f"cannot tell the type of {filename!r}: it has no file extension and no content type"
        raise InvalidArgument(f"{reason}; {supported_types_description()}", filename=filename)
    if by_extension is None or by_extension == declared:
        # an unknown extension (``notes.log``) defers to the declared type; the bytes are still checked
        return declared
    if declared == TEXT_PLAIN and by_extension == TEXT_MARKDOWN:
        return TEXT_MARKDOWN  # browsers commonly send text/plain for .md files
    raise InvalidArgument(
        f"{filename!r}: the declared content type {declared!r} disagrees with the file extension "
        f"{extension!r} ({by_extension}); fix the extension or the content type",
        filename=filename,
        content_type=declared,
    )


# --- sniffing -----------------------------------------------------------------------------------------


def looks_like_pdf(data: bytes) -> bool:
    return data.lstrip(b" \t\r\n\f\x00")[: len(_PDF_MAGIC)] == _PDF_MAGIC


def binary_signature(data: bytes) -> str | None:
    for signature, description in _BINARY_SIGNATURES:
        if data.startswith(signature):
            return description
    return None


def describe_content(data: bytes) -> str:
    """What the bytes look like, for "declared X but the content is ..." messages."""
    signature = binary_signature(data)
    if signature is not None:
        return signature
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "UTF-16 text"
    if b"\x00" in data:
        return "binary data"
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return "binary data or text that is not UTF-8"
    if _HTML_DOCUMENT_START.match(text):
        return "an HTML document"
    return "text"


def require_pdf_bytes(data: bytes, filename: str) -> None:
    if not looks_like_pdf(data):
        raise InvalidArgument(
            f"{filename!r} is declared as a PDF but its content is {describe_content(data)}, not a PDF "
            f"(no {_PDF_MAGIC.decode()!r} header); fix the extension or the content type",
            filename=filename,
            content_type=APPLICATION_PDF,
        )


def decode_text(data: bytes, filename: str, kind: str) -> str:
    """UTF-8 (with or without BOM) text of a text-family upload, after checking it is not something else."""
    if looks_like_pdf(data):
        raise InvalidArgument(
            f"{filename!r} is declared as {kind} but its content is a PDF; "
            f"upload it with a .pdf extension or the content type {APPLICATION_PDF}",
            filename=filename,
            content_type=kind,
        )
    signature = binary_signature(data)
    if signature is not None:
        raise InvalidArgument(
            f"{filename!r} is declared as {kind} but its content is {signature}, not text; "
            f"{supported_types_description()}",
            filename=filename,
            content_type=kind,
        )
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise InvalidArgument(
            f"{filename!r} is UTF-16 encoded; only UTF-8 text is supported: re-save it as UTF-8",
            filename=filename,
            content_type=kind,
        )
    nul = data.find(b"\x00")
    if nul != -1:
        raise InvalidArgument(
            f"{filename!r} is declared as {kind} but contains binary data (a NUL byte at offset {nul}), "
            "not text",
            filename=filename,
            content_type=kind,
        )
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise InvalidArgument(
            f"{filename!r} is not valid UTF-8 (byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "only UTF-8 text is supported: re-save it as UTF-8",
            filename=filename,
            content_type=kind,
        ) from exc
    controls = len(_BINARY_CONTROL_CHAR.findall(text))
    if controls > _MAX_CONTROL_CHAR_RATIO * len(text):
        raise InvalidArgument(
            f"{filename!r} is declared as {kind} but looks like binary data "
            f"({controls} control characters in {len(text)}), not text",
            filename=filename,
            content_type=kind,
        )
    if kind == TEXT_PLAIN and _HTML_DOCUMENT_START.match(text):
        raise InvalidArgument(
            f"{filename!r} is declared as {TEXT_PLAIN} but its content is an HTML document; "
            f"upload it with an .html extension or the content type {TEXT_HTML}",
            filename=filename,
            content_type=kind,
        )
    if kind == TEXT_HTML and not _HTML_TAG.search(text):
        raise InvalidArgument(
            f"{filename!r} is declared as {TEXT_HTML} but contains no HTML markup; "
            f"upload it with a .txt extension or the content type {TEXT_PLAIN}",
            filename=filename,
            content_type=kind,
        )
    return text


# --- extractors ---------------------------------------------------------------------------------------


def parse_pdf(data: bytes, filename: str) -> tuple[str, str | None]:
    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted and reader.decrypt("") == PasswordType.NOT_DECRYPTED:
            # an empty user password opens "owner-password only" PDFs; anything else needs the password
            raise InvalidArgument(
                f"encrypted PDF: {filename!r} is password-protected; remove the password and upload it again",
                filename=filename,
                content_type=APPLICATION_PDF,
            )
        page_texts = [page.extract_text() or "" for page in reader.pages]
        metadata = reader.metadata
        title = metadata.title if metadata is not None else None
    except InvalidArgument:
        raise
    except DependencyError as exc:
        raise ConfigurationError(
            f"cannot decrypt {filename!r}: {exc} (install pypdf's 'crypto' extra, i.e. 'cryptography')"
        ) from exc
    except Exception as exc:  # pypdf raises many exception types on damaged input
        raise InvalidArgument(
            f"corrupt PDF: {filename!r} could not be read ({type(exc).__name__}: {exc}); "
            "the file is truncated or damaged",
            filename=filename,
            content_type=APPLICATION_PDF,
        ) from exc
    if not page_texts:
        raise InvalidArgument(
            f"PDF has no pages: {filename!r}", filename=filename, content_type=APPLICATION_PDF
        )
    if not any(text.strip() for text in page_texts):
        raise InvalidArgument(
            f"PDF has no extractable text: {filename!r} has {len(page_texts)} page(s) but no text layer "
            "(scanned images are not supported: run OCR on it first)",
            filename=filename,
            content_type=APPLICATION_PDF,
        )
    # a form feed marks each page break; normalisation turns it into a paragraph break
    return "\f".join(page_texts), title if isinstance(title, str) else None


def html_to_text(markup: str) -> tuple[str, str | None]:
    soup = BeautifulSoup(markup, "lxml")
    title = _element_text(soup.find("title"))
    for node in soup.find_all(string=True):
        if isinstance(node, Comment | Declaration | Doctype | ProcessingInstruction):
            node.extract()
    for tag in soup.find_all(_HTML_DROPPED_TAGS):
        tag.decompose()
    if title is None:
        title = _element_text(soup.find("h1"))
    # source line breaks are plain spaces in HTML (except in <pre>): collapse them before adding ours
    for node in soup.find_all(string=True):
        if isinstance(node, NavigableString) and node.find_parent(["pre", "textarea"]) is None:
            node.replace_with(_WHITESPACE.sub(" ", str(node)))
    for tag in soup.find_all("br"):
        tag.replace_with("\n")
    for tag in soup.find_all(_HTML_PARAGRAPH_TAGS):
        tag.insert_before("\n\n")
        tag.insert_after("\n\n")
    for tag in soup.find_all(_HTML_LINE_TAGS):
        tag.insert_after("\n")
    for tag in soup.find_all(_HTML_CELL_TAGS):
        tag.insert_after(" ")
    return soup.get_text(), title


def _element_text(element: object) -> str | None:
    if isinstance(element, Tag):
        text = _WHITESPACE.sub(" ", element.get_text(" ")).strip()
        return text or None
    return None


@dataclass(slots=True)
class _Block:
    text: str
    #: blocks of one group (the rows of a table, the items of a tight list) are joined by a single newline
    group: int | None


def markdown_to_text(source: str) -> tuple[str, str | None]:
    tokens = MarkdownIt("commonmark").enable(["table", "strikethrough"]).parse(source)
    blocks: list[_Block] = []
    groups: list[int] = []  # innermost list or table last
    group_count = 0
    row: list[str] | None = None
    first_heading: str | None = None
    first_h1: str | None = None
    for position, token in enumerate(tokens):
        if token.type in ("bullet_list_open", "ordered_list_open", "table_open"):
            group_count += 1
            groups.append(group_count)
        elif token.type in ("bullet_list_close", "ordered_list_close", "table_close"):
            groups.pop()
        elif token.type == "tr_open":
            row = []
        elif token.type == "tr_close" and row is not None:
            blocks.append(_Block(" | ".join(cell for cell in row if cell), group=groups[-1]))
            row = None
        elif token.type == "inline":
            text = _render_inline(token.children or [])
            if row is not None:
                row.append(text.strip())
                continue
            opener = tokens[position - 1] if position else None
            if opener is not None and opener.type == "heading_open":
                heading = " ".join(text.split()) or None
                first_heading = first_heading or heading
                if opener.tag == "h1":
                    first_h1 = first_h1 or heading
            tight = opener is not None and opener.type == "paragraph_open" and opener.hidden and bool(groups)
            blocks.append(_Block(text, group=groups[-1] if tight else None))
        elif token.type in ("fence", "code_block"):
            blocks.append(_Block(token.content.rstrip("\n"), group=None))
        elif token.type == "html_block":
            blocks.append(_Block(html_to_text(token.content)[0], group=None))
    parts: list[str] = []
    for index, block in enumerate(blocks):
        if index:
            same_group = block.group is not None and block.group == blocks[index - 1].group
            parts.append("\n" if same_group else "\n\n")
        parts.append(block.text)
    return "".join(parts), first_h1 or first_heading


def _render_inline(children: list[Token]) -> str:
    parts: list[str] = []
    for child in children:
        if child.type in ("text", "text_special", "code_inline", "image"):
            parts.append(child.content)  # an image's content is its alt text
        elif child.type == "softbreak":
            # a source line break inside a paragraph is a space: the sentence goes on (CommonMark 6.13)
            parts.append(" ")
        elif child.type == "hardbreak":
            parts.append("\n")
    return "".join(parts)


def clean_title(title: str | None) -> str | None:
    if title is None:
        return None
    cleaned = _WHITESPACE.sub(" ", normalise_whitespace(title)).strip()
    return cleaned or None
