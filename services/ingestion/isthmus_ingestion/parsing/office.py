"""Word (.docx), PowerPoint (.pptx) and Excel (.xlsx) files, read with python-docx, python-pptx and openpyxl.

* docx: the body's paragraphs and tables in document order (a table row is one line, its cells joined by
  ``" | "``), headers and footers left out; title: the core properties' title, else the first paragraph
  in the Title or Heading 1 style;
* pptx: each slide's text (title first, then every text frame and table, group shapes included, then the
  speaker notes), slides separated by a page break; title: the core properties' title, else the first
  slide's title;
* xlsx: each non-empty sheet is a section headed by its name; the sheet's first non-empty row is its
  header and every later row is one record ``"Header: value; Header: value"`` (empty cells left out); cell
  values are what Excel last computed (formulas are not evaluated here).

An Office Open XML file is a ZIP package. An encrypted (password-protected) one is an OLE compound file
holding an ``EncryptedPackage`` stream instead, and a legacy ``.doc``/``.xls``/``.ppt`` file is an OLE
compound file too: both are told apart and rejected with what to do.
"""

from __future__ import annotations

import datetime as dt
import io
import zipfile
from collections.abc import Iterable, Iterator
from typing import Any, Final

import docx
import openpyxl
import pptx
from docx.table import Table as DocxTable
from docx.text.paragraph import Paragraph as DocxParagraph
from pptx.enum.shapes import MSO_SHAPE_TYPE

from isthmus_ingestion.parsing.base import DOCX, PPTX, XLSX, describe_content, record_text, rejected

_NAMES: Final = {DOCX: "Word document", PPTX: "PowerPoint presentation", XLSX: "Excel workbook"}
_LEGACY: Final = {DOCX: ".doc", PPTX: ".ppt", XLSX: ".xls"}
_ZIP_MAGIC: Final = b"PK\x03\x04"
_OLE_MAGIC: Final = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"
#: the stream name of an encrypted OOXML package inside its OLE container (UTF-16LE directory entry)
_ENCRYPTED_PACKAGE: Final = "EncryptedPackage".encode("utf-16-le")
#: the part every package of the type holds
_MAIN_PART: Final = {DOCX: "word/", PPTX: "ppt/", XLSX: "xl/"}
#: a sheet with more rows than this is read up to it, the rest reported in the text
MAX_SHEET_ROWS: Final = 200_000
#: what a package may unpack to (its parts' declared sizes, which the ZIP reader enforces): a "ZIP bomb"
#: of a few MiB that unpacks to gigabytes is refused before any part is read
MAX_UNPACKED_BYTES: Final = 512 * 1024 * 1024


def parse_office(data: bytes, filename: str, kind: str) -> tuple[str, str | None]:
    """The text and title of a docx, pptx or xlsx file; InvalidArgument with the reason otherwise."""
    name = _NAMES[kind]
    _check_package(data, filename, kind)
    try:
        if kind == DOCX:
            return _docx_text(data)
        if kind == PPTX:
            return _pptx_text(data)
        return _xlsx_text(data)
    except Exception as exc:  # the three libraries raise many exception types on damaged packages
        raise rejected(
            filename,
            kind,
            f"corrupt {name}: {filename!r} could not be read ({type(exc).__name__}: {exc}); "
            "the file is truncated or damaged: open and save it again",
        ) from exc


def _check_package(data: bytes, filename: str, kind: str) -> None:
    name = _NAMES[kind]
    if data.startswith(_OLE_MAGIC):
        if _ENCRYPTED_PACKAGE in data:
            raise rejected(
                filename,
                kind,
                f"encrypted {name}: {filename!r} is password-protected; remove the password "
                "(File > Info > Protect) and upload it again",
            )
        raise rejected(
            filename,
            kind,
            f"{filename!r} is a legacy binary Office file (e.g. {_LEGACY[kind]}), not {_a(name)}; "
            f"save it as {_ext(kind)} and upload it again",
        )
    if not data.startswith(_ZIP_MAGIC):
        raise rejected(
            filename,
            kind,
            f"{filename!r} is declared as {_a(name)} but its content is {describe_content(data)}, "
            f"not an Office Open XML package; fix the extension or the content type",
        )
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as package:
            names = package.namelist()
            unpacked = sum(item.file_size for item in package.infolist())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise rejected(
            filename,
            kind,
            f"corrupt {name}: {filename!r} is not a readable ZIP package ({exc}); "
            "the file is truncated or damaged",
        ) from exc
    if unpacked > MAX_UNPACKED_BYTES:
        raise rejected(
            filename,
            kind,
            f"{filename!r} unpacks to {unpacked} bytes, more than the {MAX_UNPACKED_BYTES} "
            f"{_a(name)} may unpack to; split it into smaller files",
        )
    if "[Content_Types].xml" not in names or not any(n.startswith(_MAIN_PART[kind]) for n in names):
        found = next((k for k, part in _MAIN_PART.items() if any(n.startswith(part) for n in names)), None)
        what = _a(_NAMES[found]) if found is not None else "a ZIP archive"
        raise rejected(
            filename,
            kind,
            f"{filename!r} is declared as {_a(name)} but it is {what}; fix the extension or the content type",
        )


def _a(name: str) -> str:
    return f"{'an' if name[0] in 'AEIOU' else 'a'} {name}"


def _ext(kind: str) -> str:
    return {DOCX: ".docx", PPTX: ".pptx", XLSX: ".xlsx"}[kind]


# --- Word -----------------------------------------------------------------------------------------------


def _docx_text(data: bytes) -> tuple[str, str | None]:
    document = docx.Document(io.BytesIO(data))
    parts: list[str] = []
    heading: str | None = None
    for block in document.iter_inner_content():
        if isinstance(block, DocxParagraph):
            text = block.text
            style = block.style.name if block.style is not None else ""
            if heading is None and text.strip() and style in ("Title", "Heading 1"):
                heading = text
            parts.append(text)
        elif isinstance(block, DocxTable):
            parts.append("\n".join(_docx_rows(block)))
    title = document.core_properties.title or heading
    return "\n\n".join(parts), title


def _docx_rows(table: DocxTable) -> Iterator[str]:
    for row in table.rows:
        cells: list[str] = []
        for cell in row.cells:
            text = " ".join(cell.text.split())
            if text and (not cells or cells[-1] != text):  # a merged cell repeats: once
                cells.append(text)
        if cells:
            yield " | ".join(cells)


# --- PowerPoint -----------------------------------------------------------------------------------------


def _pptx_text(data: bytes) -> tuple[str, str | None]:
    presentation = pptx.Presentation(io.BytesIO(data))
    slides: list[str] = []
    first_title: str | None = None
    for slide in presentation.slides:
        title_shape = slide.shapes.title
        title = title_shape.text_frame.text if title_shape is not None and title_shape.has_text_frame else ""
        first_title = first_title or (title.strip() or None)
        parts = [title] if title else []
        for shape in _shapes(slide.shapes):
            if title_shape is not None and shape.shape_id == title_shape.shape_id:
                continue
            parts.extend(_shape_text(shape))
        if slide.has_notes_slide and slide.notes_slide.notes_text_frame is not None:
            parts.append(slide.notes_slide.notes_text_frame.text)
        slides.append("\n\n".join(p for p in parts if p.strip()))
    title = presentation.core_properties.title or first_title
    return "\f".join(slides), title


def _shapes(shapes: Iterable[Any]) -> Iterator[Any]:
    for shape in shapes:
        if shape.shape_type == MSO_SHAPE_TYPE.GROUP:
            yield from _shapes(shape.shapes)
        else:
            yield shape


def _shape_text(shape: Any) -> Iterator[str]:
    if getattr(shape, "has_text_frame", False) and shape.has_text_frame:
        yield shape.text_frame.text
    if getattr(shape, "has_table", False) and shape.has_table:
        rows = (" | ".join(c.text for c in row.cells if c.text.strip()) for row in shape.table.rows)
        yield "\n".join(r for r in rows if r)


# --- Excel ----------------------------------------------------------------------------------------------


def _xlsx_text(data: bytes) -> tuple[str, str | None]:
    workbook = openpyxl.load_workbook(io.BytesIO(data), read_only=True, data_only=True)
    try:
        sheets = ((sheet.title, sheet.iter_rows()) for sheet in workbook.worksheets)
        sections = [section for name, rows in sheets if (section := _sheet_text(name, rows))]
        title = workbook.properties.title
    finally:
        workbook.close()
    return "\n\n".join(sections), title


def _sheet_text(name: str, rows: Iterable[Iterable[Any]]) -> str:
    header: list[str] | None = None
    records: list[str] = []
    extra = 0
    for count, row in enumerate(rows):
        values = [cell_text(getattr(c, "value", c)) for c in row]
        if not any(values):
            continue
        if header is None:
            header = values
            continue
        if count >= MAX_SHEET_ROWS:
            extra += 1
            continue
        records.append(record_text(header, values))
    if header is None:
        return ""
    if not records:  # a single row: it is the content
        records = ["; ".join(v for v in header if v)]
    if extra:
        records.append(f"({extra} more rows not indexed)")
    return "\n\n".join([name, *records])


def cell_text(value: Any) -> str:
    """A cell's value as text: dates in ISO 8601, whole floats without ``.0``, booleans as TRUE/FALSE."""
    if value is None:
        return ""
    if isinstance(value, bool):
        return "TRUE" if value else "FALSE"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, dt.datetime):
        return value.isoformat(sep=" ") if value.time() != dt.time() else value.date().isoformat()
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    return " ".join(str(value).split())
