"""Turn an uploaded file's bytes into plain text (pure: bytes in, :class:`ParsedDocument` out).

Supported types (by extension or declared content type):

* ``text/plain`` (``.txt``), ``text/markdown`` (``.md``, ``.markdown``) — UTF-8 only;
* ``text/html`` (``.html``, ``.htm``) — UTF-8 only; scripts, styles and the ``<head>`` are dropped;
* ``application/pdf`` (``.pdf``) — text extracted with pypdf (no OCR);
* Word ``.docx``, PowerPoint ``.pptx``, Excel ``.xlsx`` (:mod:`.office`: python-docx, python-pptx,
  openpyxl);
* ``text/csv`` (``.csv``), ``text/tab-separated-values`` (``.tsv``), ``application/json`` (``.json``),
  ``application/jsonl`` (``.jsonl``, ``.ndjson``) — UTF-8, rows/records as paragraphs (:mod:`.records`);
* ``message/rfc822`` (``.eml``) and ``application/mbox`` (``.mbox``) — headers as metadata, attachments
  and messages as child documents (:mod:`.mail`).

The bytes are sniffed and must agree with the declared type; every rejection is an
:class:`~isthmus_core.errors.InvalidArgument` whose reason says what is wrong and what to do. Size limits
are enforced by the service, not here.
"""

from __future__ import annotations

from collections.abc import Mapping

from isthmus_core.errors import InvalidArgument
from isthmus_ingestion.parsing.base import (
    APPLICATION_JSON,
    APPLICATION_JSONL,
    APPLICATION_MBOX,
    APPLICATION_PDF,
    DOCX,
    EXTENSIONS,
    MESSAGE_RFC822,
    OFFICE_TYPES,
    PPTX,
    SUPPORTED_CONTENT_TYPES,
    TEXT_CSV,
    TEXT_HTML,
    TEXT_MARKDOWN,
    TEXT_PLAIN,
    TEXT_TSV,
    XLSX,
    ChildFile,
    ParsedDocument,
    ParseOptions,
    clean_title,
    decode_text,
    html_to_text,
    markdown_to_text,
    normalise_whitespace,
    parse_pdf,
    require_pdf_bytes,
    resolve_content_type,
    supported_types_description,
)

__all__ = [
    "APPLICATION_JSON",
    "APPLICATION_JSONL",
    "APPLICATION_MBOX",
    "APPLICATION_PDF",
    "DOCX",
    "EXTENSIONS",
    "MESSAGE_RFC822",
    "PPTX",
    "SUPPORTED_CONTENT_TYPES",
    "TEXT_CSV",
    "TEXT_HTML",
    "TEXT_MARKDOWN",
    "TEXT_PLAIN",
    "TEXT_TSV",
    "XLSX",
    "ChildFile",
    "ParseOptions",
    "ParsedDocument",
    "normalise_whitespace",
    "parse_document",
    "supported_types_description",
]


def parse_document(
    data: bytes, filename: str, content_type: str | None = None, options: ParseOptions | None = None
) -> ParsedDocument:
    """Extract the text of an uploaded file.

    ``content_type`` may carry parameters (``text/plain; charset=utf-8``); ``application/octet-stream``
    counts as "not declared". The type comes from the declared content type and the file extension
    (which must agree), then the bytes are checked against it. ``options``: the field map of JSON
    records (defaults: :class:`ParseOptions`).

    Raises :class:`InvalidArgument` for an empty file, an unsupported or undeterminable type, a type that
    disagrees with the bytes, text that is not UTF-8, a corrupt, encrypted or textless PDF or Office file,
    a CSV without a header, JSON without the mapped text field, and a file with no text at all.
    """
    name = filename or "<unnamed>"
    if not data:
        raise InvalidArgument(f"empty file: {name!r} has no content", filename=name)
    kind = resolve_content_type(name, content_type)
    title: str | None = None
    metadata: Mapping[str, str] = {}
    children: list[ChildFile] = []
    if kind == APPLICATION_PDF:
        require_pdf_bytes(data, name)
        text, title = parse_pdf(data, name)
    elif kind in OFFICE_TYPES:
        from isthmus_ingestion.parsing.office import parse_office  # the Office libraries load on first use

        text, title = parse_office(data, name, kind)
    elif kind == MESSAGE_RFC822:
        from isthmus_ingestion.parsing.mail import parse_eml

        text, title, metadata, children = parse_eml(data, name, kind)
    elif kind == APPLICATION_MBOX:
        from isthmus_ingestion.parsing.mail import parse_mbox

        text, children = parse_mbox(data, name, kind)
    else:
        source = decode_text(data, name, kind)
        if kind == TEXT_HTML:
            text, title = html_to_text(source)
        elif kind == TEXT_MARKDOWN:
            text, title = markdown_to_text(source)
        elif kind in (TEXT_CSV, TEXT_TSV):
            from isthmus_ingestion.parsing.records import csv_text

            text = csv_text(source, name, kind)
        elif kind in (APPLICATION_JSON, APPLICATION_JSONL):
            from isthmus_ingestion.parsing.records import json_text

            text, title, metadata = json_text(source, name, kind, options or ParseOptions())
        else:
            text = source
    text = normalise_whitespace(text)
    if not text:
        raise InvalidArgument(
            f"{name!r} contains no text ({kind} with only whitespace or markup)",
            filename=name,
            content_type=kind,
        )
    return ParsedDocument(
        text=text,
        content_type=kind,
        title=clean_title(title),
        metadata=dict(metadata),
        children=tuple(children),
    )
