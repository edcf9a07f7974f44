"""E-mail: one message (.eml, RFC 5322) and mailboxes (.mbox), read with the stdlib ``email`` package.

* eml: the text is a header block (From, To, Cc, Date, Subject), the body (the plain-text part, else the
  HTML part as text) and the attachments' names; the headers are metadata too (``email_from``,
  ``email_to``, ``email_cc``, ``email_date``, ``email_subject``, ``email_message_id``) and the subject is
  the title. Every attachment (a forwarded message included) is a child document.
* mbox: split on its ``From `` lines (as the stdlib ``mailbox`` module does, ``>From`` lines unquoted as in
  mboxrd); each message is a child document (an ``.eml``), and the mailbox's own text is the list of its
  messages (subject, sender, date).
"""

from __future__ import annotations

import mimetypes
import re
from email import policy
from email.message import EmailMessage, Message, MIMEPart
from email.parser import BytesParser
from pathlib import PurePosixPath
from typing import Final

from isthmus_ingestion.parsing.base import (
    EXTENSIONS,
    MESSAGE_RFC822,
    ChildFile,
    binary_signature,
    html_to_text,
    looks_like_pdf,
    rejected,
)

#: header -> metadata key; shown in the text in this order
HEADERS: Final = (
    ("From", "email_from"),
    ("To", "email_to"),
    ("Cc", "email_cc"),
    ("Date", "email_date"),
    ("Subject", "email_subject"),
)
_MESSAGE_ID_KEY: Final = "email_message_id"
_IDENTIFYING: Final = ("from", "to", "subject", "date", "message-id")
MAX_HEADER_CHARS: Final = 1024
_MBOX_QUOTED_FROM: Final = re.compile(rb"^>(>*From )", re.M)


Email = tuple[str, str | None, dict[str, str], list[ChildFile]]


def parse_eml(data: bytes, filename: str, kind: str) -> Email:
    """Text, title, metadata and attachments of one e-mail message."""
    _require_mail_bytes(data, filename, kind)
    message = _parse(data)
    if not any(h in message for h in _IDENTIFYING):
        raise rejected(
            filename,
            kind,
            f"{filename!r} is not an e-mail message: it has none of the headers From, To, Subject, Date, "
            "Message-ID",
        )
    metadata = {key: value for header, key in HEADERS if (value := _header(message, header))}
    if message_id := _header(message, "Message-ID"):
        metadata[_MESSAGE_ID_KEY] = message_id
    head = "\n".join(f"{header}: {metadata[key]}" for header, key in HEADERS if key in metadata)
    body = _body(message)
    children = _attachments(message, filename)
    parts = [head, body]
    if children:
        parts.append("Attachments: " + ", ".join(c.filename for c in children))
    return "\n\n".join(p for p in parts if p.strip()), metadata.get("email_subject"), metadata, children


def parse_mbox(data: bytes, filename: str, kind: str) -> tuple[str, list[ChildFile]]:
    """The mailbox's list of messages, and each message as a child ``.eml``."""
    _require_mail_bytes(data, filename, kind)
    start = data.lstrip(b"\r\n")
    if not start.startswith(b"From "):
        raise rejected(
            filename,
            kind,
            f"{filename!r} is not an mbox mailbox: it must start with a 'From ' line "
            "(upload a single message as .eml)",
        )
    stem = PurePosixPath(filename.replace("\\", "/")).stem or "message"
    children: list[ChildFile] = []
    listing: list[str] = []
    for number, raw in enumerate(_mbox_messages(start), start=1):
        message = _parse(raw, headers_only=True)
        subject = _header(message, "Subject") or "(no subject)"
        sender = _header(message, "From")
        date = _header(message, "Date")
        listing.append(" — ".join(p for p in (f"{number}. {subject}", sender, date) if p))
        children.append(
            ChildFile(
                filename=f"{stem}-{number:04d}.eml",
                data=raw,
                content_type=MESSAGE_RFC822,
                metadata={"mbox_index": str(number)},
            )
        )
    if not children:
        raise rejected(filename, kind, f"{filename!r} holds no messages")
    return f"Mailbox {stem}: {len(children)} messages\n\n" + "\n".join(listing), children


def _mbox_messages(data: bytes) -> list[bytes]:
    messages: list[bytes] = []
    current: list[bytes] | None = None
    for line in data.splitlines(keepends=True):
        if line.startswith(b"From "):
            if current is not None:
                messages.append(b"".join(current))
            current = []  # the From_ separator line itself is not part of the message
            continue
        if current is not None:
            current.append(line)
    if current is not None:
        messages.append(b"".join(current))
    return [_MBOX_QUOTED_FROM.sub(rb"\1", m).rstrip(b"\r\n") + b"\n" for m in messages if m.strip()]


def _require_mail_bytes(data: bytes, filename: str, kind: str) -> None:
    what = "a PDF" if looks_like_pdf(data) else binary_signature(data)
    if what is None and b"\x00" in data[:4096]:
        what = "binary data"
    if what is not None:
        raise rejected(
            filename,
            kind,
            f"{filename!r} is declared as {kind} but its content is {what}, not e-mail; "
            "fix the extension or the content type",
        )


def _parse(data: bytes, headers_only: bool = False) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data, headersonly=headers_only)
    assert isinstance(message, EmailMessage)  # policy.default builds EmailMessage objects
    return message


def _header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except (ValueError, TypeError, IndexError):  # a malformed header the policy cannot parse
        value = message.get_all(name, [""])[0] if hasattr(message, "get_all") else ""
    return " ".join(str(value or "").split())[:MAX_HEADER_CHARS]


def _body(message: EmailMessage) -> str:
    """The plain-text body, else (absent or blank) the HTML body as text."""
    for kind in ("plain", "html"):
        part = message.get_body(preferencelist=(kind,))
        if part is None:
            continue
        text = _part_text(part)
        if kind == "html":
            text = html_to_text(text)[0]
        if text.strip():
            return text
    return ""


def _part_text(part: MIMEPart) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError, AssertionError):  # unknown charset, broken transfer encoding
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else ""


def _attachments(message: EmailMessage, filename: str) -> list[ChildFile]:
    children: list[ChildFile] = []
    stem = PurePosixPath(filename.replace("\\", "/")).stem or "message"
    for number, part in enumerate(message.iter_attachments(), start=1):
        ctype = part.get_content_type()
        if ctype == MESSAGE_RFC822:
            inner = part.get_payload(0) if part.is_multipart() else None
            data = inner.as_bytes() if isinstance(inner, Message) else b""
        else:
            payload = part.get_payload(decode=True)
            data = payload if isinstance(payload, bytes) else b""
        name = PurePosixPath((part.get_filename() or "").replace("\\", "/")).name
        if not name:
            ext = ".eml" if ctype == MESSAGE_RFC822 else (mimetypes.guess_extension(ctype) or "")
            name = f"{stem}-attachment-{number}{ext}"
        known = PurePosixPath(name).suffix.lower() in EXTENSIONS
        children.append(
            ChildFile(
                filename=name,
                data=data,
                # the extension decides when it is known (mail clients often send octet-stream or a legacy
                # type for Office files); otherwise the part's declared type
                content_type="" if known else ctype,
                metadata={"attachment_index": str(number)},
            )
        )
    return children
