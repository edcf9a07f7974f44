"""Real files of every format ingestion parses, made by the tools that produce them (python-docx,
python-pptx, openpyxl, the stdlib ``email`` package), for tests: no binary fixtures checked in."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Sequence
from email.message import EmailMessage

#: the leading bytes of an OLE compound file (an encrypted OOXML package, a legacy .doc/.xls/.ppt)
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"


def make_docx(
    paragraphs: Sequence[str], *, title: str = "", heading: str = "", table: Sequence[Sequence[str]] = ()
) -> bytes:
    import docx

    document = docx.Document()
    if title:
        document.core_properties.title = title
    if heading:
        document.add_heading(heading, level=1)
    for text in paragraphs:
        document.add_paragraph(text)
    if table:
        grid = document.add_table(rows=len(table), cols=len(table[0]))
        for r, row in enumerate(table):
            for c, value in enumerate(row):
                grid.cell(r, c).text = value
    out = io.BytesIO()
    document.save(out)
    return out.getvalue()


def make_pptx(slides: Sequence[tuple[str, str]], *, notes: Sequence[str] = (), title: str = "") -> bytes:
    """One "Title and Content" slide per (title, body); ``notes[i]``: the speaker notes of slide i."""
    import pptx

    presentation = pptx.Presentation()
    if title:
        presentation.core_properties.title = title
    for index, (slide_title, body) in enumerate(slides):
        slide = presentation.slides.add_slide(presentation.slide_layouts[1])
        slide.shapes.title.text = slide_title
        slide.placeholders[1].text = body
        if index < len(notes) and notes[index]:
            slide.notes_slide.notes_text_frame.text = notes[index]
    out = io.BytesIO()
    presentation.save(out)
    return out.getvalue()


def make_xlsx(sheets: dict[str, Sequence[Sequence[object]]], *, title: str = "") -> bytes:
    """One worksheet per name, its rows as given (the first row the header)."""
    import openpyxl

    workbook = openpyxl.Workbook()
    workbook.remove(workbook.active)
    if title:
        workbook.properties.title = title
    for name, rows in sheets.items():
        sheet = workbook.create_sheet(name)
        for row in rows:
            sheet.append(list(row))
    out = io.BytesIO()
    workbook.save(out)
    return out.getvalue()


def encrypted_office_file() -> bytes:
    """What Office writes for a password-protected .docx/.xlsx/.pptx: an OLE compound file whose
    directory names an ``EncryptedPackage`` stream (only the parts the parser looks at)."""
    directory_entry = "EncryptedPackage".encode("utf-16-le").ljust(64, b"\x00")
    return OLE_MAGIC + bytes(504) + directory_entry + bytes(448)


def make_eml(
    subject: str,
    body: str,
    *,
    sender: str = "alice@example.org",
    to: str = "bob@example.org",
    attachments: Sequence[tuple[str, bytes, str]] = (),
    html: str = "",
) -> bytes:
    """An e-mail message; ``attachments``: (filename, bytes, "maintype/subtype")."""
    message = EmailMessage()
    message["From"] = sender
    message["To"] = to
    message["Subject"] = subject
    message["Date"] = "Mon, 07 Dec 2026 09:30:00 +0000"
    message["Message-ID"] = f"<{hashlib.sha256((subject + body).encode()).hexdigest()[:16]}@example.org>"
    message.set_content(body)
    if html:
        message.add_alternative(html, subtype="html")
    for filename, data, ctype in attachments:
        maintype, subtype = ctype.split("/", 1)
        if maintype == "message":
            from email import message_from_bytes, policy

            message.add_attachment(message_from_bytes(data, policy=policy.default), filename=filename)
        else:
            message.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename)
    return message.as_bytes()


def make_mbox(messages: Sequence[bytes]) -> bytes:
    """An mbox (mboxrd: body lines starting with ``From `` quoted with ``>``) of these messages."""
    out = bytearray()
    for message in messages:
        out += b"From MAILER-DAEMON Mon Dec  7 09:30:00 2026\n"
        for line in message.replace(b"\r\n", b"\n").split(b"\n"):
            stripped = line.lstrip(b">")
            out += (b">" + line if stripped.startswith(b"From ") else line) + b"\n"
        out += b"\n"
    return bytes(out)
