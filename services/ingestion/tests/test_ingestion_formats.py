"""The formats of issue 18 on real files made by the tools that produce them (python-docx, python-pptx,
openpyxl, the stdlib email package): text, title, metadata, child files, and each format's rejection
reasons."""

from __future__ import annotations

import io
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from isthmus_core.errors import InvalidArgument
from isthmus_ingestion.parsing import (
    APPLICATION_JSON,
    APPLICATION_JSONL,
    APPLICATION_MBOX,
    DOCX,
    MESSAGE_RFC822,
    PPTX,
    TEXT_CSV,
    TEXT_TSV,
    XLSX,
    ParseOptions,
    office,
    parse_document,
)
from isthmus_ingestion.testing import (
    OLE_MAGIC,
    encrypted_office_file,
    make_docx,
    make_eml,
    make_mbox,
    make_pptx,
    make_xlsx,
)


def _reject(data: bytes, filename: str, content_type: str | None = None, **kw: ParseOptions) -> str:
    with pytest.raises(InvalidArgument) as info:
        parse_document(data, filename, content_type, **kw)
    return info.value.reason


# --- Word -------------------------------------------------------------------------------------------


def test_docx_paragraphs_and_tables_in_order_with_the_core_title() -> None:
    data = make_docx(
        ["Gliders circle in thermals.", "They land on grass strips."],
        title="Soaring handbook",
        heading="Thermals",
        table=[["Wing", "Span"], ["ASK 21", "17 m"]],
    )
    parsed = parse_document(data, "handbook.docx")
    assert parsed.content_type == DOCX
    assert parsed.title == "Soaring handbook"
    assert parsed.text == (
        "Thermals\n\nGliders circle in thermals.\n\nThey land on grass strips.\n\nWing | Span\nASK 21 | 17 m"
    )


def test_docx_title_falls_back_to_the_first_heading() -> None:
    parsed = parse_document(make_docx(["Body text."], heading="Launch methods"), "x.docx")
    assert parsed.title == "Launch methods"


def test_corrupt_docx() -> None:
    data = make_docx(["Some text."])
    reason = _reject(data[: len(data) // 2], "broken.docx")
    assert reason.startswith("corrupt Word document: 'broken.docx' is not a readable ZIP package")


def test_docx_whose_main_part_is_damaged() -> None:
    source = zipfile.ZipFile(io.BytesIO(make_docx(["Some text."])))
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as target:
        for item in source.infolist():
            content = source.read(item)
            target.writestr(item, b"<not xml" if item.filename == "word/document.xml" else content)
    reason = _reject(out.getvalue(), "damaged.docx")
    assert reason.startswith("corrupt Word document: 'damaged.docx' could not be read")


@pytest.mark.parametrize(("filename", "name"), [("a.docx", "Word document"), ("b.xlsx", "Excel workbook")])
def test_encrypted_office_files(filename: str, name: str) -> None:
    reason = _reject(encrypted_office_file(), filename)
    assert reason.startswith(f"encrypted {name}: {filename!r} is password-protected; remove the password")


def test_legacy_binary_office_file() -> None:
    reason = _reject(OLE_MAGIC + bytes(1024), "old.docx")
    assert "is a legacy binary Office file (e.g. .doc), not a Word document; save it as .docx" in reason


def test_office_extension_holding_another_office_type() -> None:
    reason = _reject(make_xlsx({"S": [["a"], ["b"]]}), "sheet.docx")
    assert reason == (
        "'sheet.docx' is declared as a Word document but it is an Excel workbook; "
        "fix the extension or the content type"
    )


def test_office_extension_holding_text() -> None:
    reason = _reject(b"plain words", "notes.pptx")
    assert "declared as a PowerPoint presentation but its content is text" in reason


def test_docx_without_text() -> None:
    assert "contains no text" in _reject(make_docx([]), "empty.docx")


# --- PowerPoint -------------------------------------------------------------------------------------


def test_pptx_slides_in_order_with_notes() -> None:
    data = make_pptx(
        [("Why soar", "Silent flight\nLong distances"), ("Safety", "Lookout first")],
        notes=["Mention the club.", ""],
    )
    parsed = parse_document(data, "deck.pptx")
    assert parsed.content_type == PPTX
    assert parsed.title == "Why soar"  # no core title: the first slide's
    assert parsed.text == (
        "Why soar\n\nSilent flight\nLong distances\n\nMention the club.\n\nSafety\n\nLookout first"
    )


def test_corrupt_pptx() -> None:
    assert _reject(b"PK\x03\x04" + bytes(64), "deck.pptx").startswith("corrupt PowerPoint presentation")


# --- Excel, CSV ---------------------------------------------------------------------------------------


def test_xlsx_rows_as_records_under_sheet_headings() -> None:
    data = make_xlsx(
        {
            "Pilots": [
                ["Name", "Hours", "Instructor"],
                ["Ann", 310, True],
                ["Bob", 12.5, None],
                [None, None],
            ],
            "Empty": [],
            "Fleet": [["Type", "Seats"], ["ASK 21", 2]],
        },
        title="Club data",
    )
    parsed = parse_document(data, "club.xlsx")
    assert parsed.content_type == XLSX
    assert parsed.title == "Club data"
    assert parsed.text == (
        "Pilots\n\nName: Ann; Hours: 310; Instructor: TRUE\n\nName: Bob; Hours: 12.5\n\n"
        "Fleet\n\nType: ASK 21; Seats: 2"
    )


def test_xlsx_with_only_empty_sheets() -> None:
    assert "contains no text" in _reject(make_xlsx({"A": [], "B": []}), "blank.xlsx")


def test_csv_rows_as_records_with_a_sniffed_delimiter() -> None:
    data = b"Name;City;Note\nAnn;Paris;\n Bob ; Rome ; likes  ridge lift\n"
    parsed = parse_document(data, "pilots.csv")
    assert parsed.content_type == TEXT_CSV
    assert parsed.text == "Name: Ann; City: Paris\n\nName: Bob; City: Rome; Note: likes ridge lift"


def test_csv_quoted_field_spanning_lines() -> None:
    parsed = parse_document(b'name,note\nAnn,"first line\nsecond line"\nBob,x\n', "x.csv")
    assert parsed.text == "name: Ann; note: first line second line\n\nname: Bob; note: x"


def test_tsv_and_a_row_longer_than_the_header() -> None:
    parsed = parse_document(b"a\tb\n1\t2\t3\n", "x.tsv")
    assert parsed.content_type == TEXT_TSV
    assert parsed.text == "a: 1; b: 2; column 3: 3"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"1,2,3\n4,5,6\n", "CSV without a header: the first row of 'x.csv' holds only numbers (1, 2, 3)"),
        (b"name,,city\nAnn,1,Paris\n", "CSV without a header: 'x.csv': column(s) [2] of the first row"),
        (b"name,name\nAnn,Bob\n", "the header names columns more than once: name"),
        (b"name,city\n", "'x.csv' has a header row but no data rows"),
        (b"name,city\n\xff\xfe", "is not valid UTF-8"),
    ],
)
def test_csv_rejections(data: bytes, expected: str) -> None:
    assert expected in _reject(data, "x.csv")


# --- JSON, JSON Lines ---------------------------------------------------------------------------------


def test_json_object_with_title_and_metadata_fields() -> None:
    data = b'{"title": "Thermals", "body": {"text": "Rising air."}, "author": "Ann", "tags": ["wx", 2]}'
    options = ParseOptions(text_fields=("body.text",), metadata_fields=("author", "tags"))
    parsed = parse_document(data, "x.json", options=options)
    assert parsed.content_type == APPLICATION_JSON
    assert (parsed.title, parsed.text) == ("Thermals", "Thermals\nRising air.")
    assert parsed.metadata == {"author": "Ann", "tags": "wx\n2"}


def test_json_array_one_paragraph_per_record() -> None:
    data = b'[{"title": "A", "text": "first", "k": "x"}, {"content": "second"}]'
    parsed = parse_document(data, "x.json", options=ParseOptions(metadata_fields=("k",)))
    assert parsed.title is None
    assert parsed.text == "A\nk: x\nfirst\n\nsecond"
    assert parsed.metadata == {}


def test_jsonl_records() -> None:
    parsed = parse_document(b'{"text": "one"}\n\n{"text": "two", "title": "T"}\n', "x.jsonl")
    assert parsed.content_type == APPLICATION_JSONL
    assert parsed.text == "one\n\nT\ntwo"


@pytest.mark.parametrize(
    ("data", "filename", "expected"),
    [
        (
            b'[{"text": "ok"}, {"message": "no text field"}]',
            "x.json",
            "JSON without the text field: record(s) 2 of 'x.json' have none of the text fields "
            "['text', 'content', 'body']; name the fields that hold the text in the upload metadata "
            "'json_text_fields'",
        ),
        (b'{"text": "a"}\n{"msg": "b"}\n', "x.jsonl", "line(s) 2 of 'x.jsonl' have none of the text fields"),
        (b'{"text": "a",}', "x.json", "invalid JSON: 'x.json' (line 1 column 14): Expecting property name"),
        (b'{"text": "a"}\n[1]\n', "x.jsonl", "'x.jsonl' line 2 is an array, not a JSON object"),
        (b'"just a string"', "x.json", "'x.json' is a string; a JSON document must be an object or an array"),
        (b"[1, 2]", "x.json", "item 1 of the array is a number, not an object"),
        (b"[]", "x.json", "'x.json' holds no records"),
    ],
)
def test_json_rejections(data: bytes, filename: str, expected: str) -> None:
    assert expected in _reject(data, filename)


# --- e-mail -------------------------------------------------------------------------------------------


def test_eml_headers_body_and_attachments() -> None:
    sheet = make_xlsx({"Budget": [["Item", "EUR"], ["Winch cable", 400]]})
    data = make_eml(
        "Budget 2027",
        "Hi all,\nthe budget is attached.",
        attachments=[
            ("budget.xlsx", sheet, "application/octet-stream"),
            ("logo.png", b"\x89PNG", "image/png"),
        ],
    )
    parsed = parse_document(data, "mail.eml")
    assert parsed.content_type == MESSAGE_RFC822
    assert parsed.title == "Budget 2027"
    assert parsed.metadata["email_from"] == "alice@example.org"
    assert parsed.metadata["email_subject"] == "Budget 2027"
    assert parsed.metadata["email_message_id"].endswith("@example.org>")
    assert parsed.text.startswith("From: alice@example.org\nTo: bob@example.org\nDate: ")
    assert parsed.text.endswith(
        "Subject: Budget 2027\n\nHi all,\nthe budget is attached.\n\nAttachments: budget.xlsx, logo.png"
    )
    assert [(c.filename, c.data, c.content_type) for c in parsed.children] == [
        ("budget.xlsx", sheet, ""),  # a known extension decides its type
        ("logo.png", b"\x89PNG", "image/png"),  # else the part's own type
    ]
    # the attachment is a real workbook: it parses on its own
    assert parse_document(parsed.children[0].data, "budget.xlsx").text == (
        "Budget\n\nItem: Winch cable; EUR: 400"
    )


def test_eml_html_only_body_and_a_forwarded_message() -> None:
    inner = make_eml("Inner", "Forwarded words.")
    data = make_eml(
        "Outer", "", html="<p>Hello <b>team</b></p>", attachments=[("fwd.eml", inner, "message/rfc822")]
    )
    parsed = parse_document(data, "outer.eml")
    assert "Hello team" in parsed.text
    (child,) = parsed.children
    assert child.filename == "fwd.eml"
    assert parse_document(child.data, child.filename).title == "Inner"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (
            b"just some words\nwithout headers\n",
            "'x.eml' is not an e-mail message: it has none of the headers",
        ),
        (b"%PDF-1.4 xxx", "its content is a PDF, not e-mail"),
        (b"PK\x03\x04" + bytes(20), "its content is a ZIP archive"),
    ],
)
def test_eml_rejections(data: bytes, expected: str) -> None:
    assert expected in _reject(data, "x.eml")


def test_mbox_messages_become_children() -> None:
    first = make_eml("Launch list", "From the field: winch at 9.")  # a body line starting "From "
    second = make_eml("Weather", "Cumulus by noon.", sender="carol@example.org")
    parsed = parse_document(make_mbox([first, second]), "club.mbox")
    assert parsed.content_type == APPLICATION_MBOX
    assert parsed.text.startswith("Mailbox club: 2 messages\n\n1. Launch list — alice@example.org — ")
    assert "\n2. Weather — carol@example.org — " in parsed.text
    assert [c.filename for c in parsed.children] == ["club-0001.eml", "club-0002.eml"]
    one = parse_document(parsed.children[0].data, parsed.children[0].filename)
    assert "From the field: winch at 9." in one.text  # the mbox quoting is undone


def test_text_that_is_not_an_mbox() -> None:
    assert "is not an mbox mailbox: it must start with a 'From ' line" in _reject(
        make_eml("a", "b"), "x.mbox"
    )


def test_an_office_package_that_unpacks_too_large_is_refused_before_it_is_read(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(office, "MAX_UNPACKED_BYTES", 64 * 1024)  # 512 MiB in production
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as package:
        package.writestr("[Content_Types].xml", "<Types/>")
        package.writestr("xl/workbook.xml", b"\0" * (100 * 1024))  # compresses to a few hundred bytes
    assert len(out.getvalue()) < 2048
    reason = _reject(out.getvalue(), "bomb.xlsx")
    assert reason.startswith("'bomb.xlsx' unpacks to 102408 bytes, more than the 65536 an Excel workbook")


# --- any bytes: parsed, or refused with a reason (never another exception: that would be INTERNAL) -----

_SEEDS = [
    b"",
    b"PK\x03\x04",
    OLE_MAGIC,
    b"From x\n",
    b"a,b\n",
    b'{"text":',
    b"[[[[[[[[[[",
    b"From: a\n\nbody",
]


@pytest.mark.parametrize(
    "filename", ["f.docx", "f.pptx", "f.xlsx", "f.csv", "f.tsv", "f.json", "f.jsonl", "f.eml", "f.mbox"]
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.one_of(st.sampled_from(_SEEDS), st.binary(max_size=256)), tail=st.binary(max_size=64))
def test_any_bytes_are_parsed_or_refused_with_a_reason(filename: str, data: bytes, tail: bytes) -> None:
    try:
        parse_document(data + tail, filename)
    except InvalidArgument as exc:
        assert exc.reason


def test_deeply_nested_json_is_refused() -> None:
    assert "invalid JSON: 'x.json' is nested too deeply" in _reject(b"[" * 100_000 + b"]" * 100_000, "x.json")


def test_office_parts_made_of_garbage_are_corrupt() -> None:
    for name, kind in (("a.docx", "Word document"), ("a.pptx", "PowerPoint presentation")):
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as package:
            package.writestr("[Content_Types].xml", "garbage")
            package.writestr("word/document.xml" if name.endswith("docx") else "ppt/presentation.xml", "x")
        assert _reject(out.getvalue(), name).startswith(f"corrupt {kind}: {name!r} could not be read")
