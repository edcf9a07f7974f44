"""Record formats: CSV/TSV (stdlib ``csv``) and JSON / JSON Lines (stdlib ``json``) with a field map.

* CSV/TSV: the first row is the header (required: every column named, names unique, not all numbers);
  every later row is one paragraph ``"Header: value; Header: value"`` (empty values left out). The
  delimiter of a ``.csv`` is sniffed among ``, ; | tab``; a ``.tsv`` is tab-separated.
* JSON: an object (one record) or an array of objects (one record each); JSON Lines: one object per
  line. Each record is a paragraph: its title field (if any) on the first line, then its text fields
  that are present (:class:`~isthmus_ingestion.parsing.base.ParseOptions`). A single record's title is
  the document's title and its metadata fields become document metadata; with several records the
  metadata fields are written into each record as ``field: value`` lines.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any, Final

from isthmus_ingestion.parsing.base import (
    APPLICATION_JSONL,
    TEXT_TSV,
    ParseOptions,
    record_text,
    rejected,
)

_NUMBER: Final = re.compile(r"[-+]?\d+(?:[.,]\d+)?%?")
#: a metadata value taken from a record is cut at this length
MAX_METADATA_VALUE_CHARS: Final = 1024


def csv_text(source: str, filename: str, kind: str) -> str:
    """The rows of a CSV/TSV file as records; InvalidArgument for a file without a usable header."""
    dialect: type[csv.Dialect] | csv.Dialect
    if kind == TEXT_TSV:
        dialect = csv.excel_tab
    else:
        try:
            dialect = csv.Sniffer().sniff(source[: 64 * 1024], delimiters=",;|\t")
        except csv.Error:
            dialect = csv.excel  # one column, or nothing to tell from: plain commas
    try:
        reader = csv.reader(io.StringIO(source, newline=""), dialect)  # quoted fields may span lines
        rows = [row for row in reader if any(c.strip() for c in row)]
    except csv.Error as exc:
        raise rejected(filename, kind, f"malformed CSV: {filename!r}: {exc}") from exc
    if not rows:
        raise rejected(filename, kind, f"{filename!r} has no rows")
    header = [" ".join(c.split()) for c in rows[0]]
    missing = [i + 1 for i, h in enumerate(header) if not h]
    if missing:
        raise rejected(
            filename,
            kind,
            f"CSV without a header: {filename!r}: column(s) {missing} of the first row have no name; "
            "the first row must name every column",
        )
    if all(_NUMBER.fullmatch(h) for h in header):
        raise rejected(
            filename,
            kind,
            f"CSV without a header: the first row of {filename!r} holds only numbers "
            f"({', '.join(header[:5])}); "
            "add a header row naming the columns",
        )
    duplicates = sorted({h for h in header if header.count(h) > 1})
    if duplicates:
        raise rejected(
            filename, kind, f"{filename!r}: the header names columns more than once: {', '.join(duplicates)}"
        )
    if len(rows) == 1:
        raise rejected(filename, kind, f"{filename!r} has a header row but no data rows")
    return "\n\n".join(record_text(header, [" ".join(c.split()) for c in row]) for row in rows[1:])


def json_text(
    source: str, filename: str, kind: str, options: ParseOptions
) -> tuple[str, str | None, dict[str, str]]:
    """Text, title and metadata of a JSON or JSON Lines document (see the module docstring)."""
    records = list(_json_records(source, filename, kind))
    if not records:
        raise rejected(filename, kind, f"{filename!r} holds no records")
    paragraphs: list[str] = []
    without: list[int] = []
    single = len(records) == 1
    for number, record in records:
        texts = [t for f in options.text_fields if (t := _field_text(record, f))]
        if not texts:
            without.append(number)
            continue
        heading = _field_text(record, options.title_field) if options.title_field else ""
        lines = [heading] if heading else []
        if not single:
            lines += [f"{f}: {v}" for f in options.metadata_fields if (v := _field_text(record, f))]
        paragraphs.append("\n".join([*lines, "\n\n".join(texts)]))
    if without:
        where = "line" if kind == APPLICATION_JSONL else "record"
        shown = ", ".join(str(n) for n in without[:10]) + (", ..." if len(without) > 10 else "")
        raise rejected(
            filename,
            kind,
            f"JSON without the text field: {where}(s) {shown} of {filename!r} have none of the text fields "
            f"{list(options.text_fields)}; name the fields that hold the text in the upload metadata "
            "'json_text_fields' (comma-separated, dotted paths for nested fields)",
        )
    title: str | None = None
    metadata: dict[str, str] = {}
    if single:
        record = records[0][1]
        title = (_field_text(record, options.title_field) if options.title_field else "") or None
        metadata = {
            f: v[:MAX_METADATA_VALUE_CHARS] for f in options.metadata_fields if (v := _field_text(record, f))
        }
    return "\n\n".join(paragraphs), title, metadata


def _json_records(source: str, filename: str, kind: str) -> Iterator[tuple[int, Mapping[str, Any]]]:
    if kind == APPLICATION_JSONL:
        for number, line in enumerate(source.splitlines(), start=1):
            if not line.strip():
                continue
            value = _loads(line, filename, kind, f"line {number}")
            if not isinstance(value, dict):
                raise rejected(
                    filename,
                    kind,
                    f"{filename!r} line {number} is {_kind_of(value)}, not a JSON object; "
                    "JSON Lines must hold one object per line",
                )
            yield number, value
        return
    value = _loads(source, filename, kind, "")
    if isinstance(value, dict):
        yield 1, value
        return
    if not isinstance(value, list):
        raise rejected(
            filename,
            kind,
            f"{filename!r} is {_kind_of(value)}; a JSON document must be an object or an array",
        )
    for number, item in enumerate(value, start=1):
        if not isinstance(item, dict):
            raise rejected(
                filename, kind, f"{filename!r}: item {number} of the array is {_kind_of(item)}, not an object"
            )
        yield number, item


def _loads(text: str, filename: str, kind: str, where: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        at = f"{where}, " if where else ""
        raise rejected(
            filename,
            kind,
            f"invalid JSON: {filename!r} ({at}line {exc.lineno} column {exc.colno}): {exc.msg}",
        ) from exc
    except RecursionError as exc:
        raise rejected(filename, kind, f"invalid JSON: {filename!r} is nested too deeply") from exc


def _kind_of(value: Any) -> str:
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number" if isinstance(value, int | float) else "an object"


def _field_text(record: Mapping[str, Any], path: str) -> str:
    """The text at ``path`` (a key, or dotted keys into nested objects): strings as they are, numbers and
    booleans as JSON writes them, lists item by item on lines; "" when absent or null."""
    value: Any = record.get(path) if path in record else record
    if path not in record:
        for key in path.split("."):
            if not isinstance(value, dict) or key not in value:
                return ""
            value = value[key]
    return _flatten(value).strip()


def _flatten(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        return "\n".join(t for t in (_flatten(v).strip() for v in value) if t)
    if isinstance(value, dict):
        return "; ".join(f"{k}: {t}" for k, v in value.items() if (t := _flatten(v).strip()))
    return json.dumps(value)
