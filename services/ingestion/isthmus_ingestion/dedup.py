"""Content hashing and deterministic document ids (pure).

The same bytes uploaded twice by a tenant get the same document id, so a re-upload is recognised as a
duplicate; two tenants uploading the same bytes get different ids.
"""

from __future__ import annotations

import hashlib
import re
from typing import Final

from isthmus_core.errors import InvalidArgument

HASH_PREFIX: Final = "sha256:"
DOCUMENT_ID_PREFIX: Final = "doc-"
_DOCUMENT_ID_HEX_CHARS: Final = 24
_CONTENT_HASH: Final = re.compile(r"^sha256:[0-9a-f]{64}$")


def content_hash(data: bytes) -> str:
    """``"sha256:<64 lower-case hex>"`` of the raw bytes."""
    return HASH_PREFIX + hashlib.sha256(data).hexdigest()


def document_id_for(tenant_id: str, content_hash: str) -> str:
    """Deterministic id ``"doc-<24 hex>"`` of a document's content within a tenant.

    Raises :class:`InvalidArgument` for an empty tenant id or a hash not made by :func:`content_hash`.
    """
    if not tenant_id:
        raise InvalidArgument("tenant id must not be empty")
    if not _CONTENT_HASH.match(content_hash):
        raise InvalidArgument(
            f"content hash {content_hash!r} is not of the form 'sha256:<64 lower-case hex digits>'"
        )
    # the NUL separator keeps (tenant, hash) pairs from colliding by concatenation
    digest = hashlib.sha256(f"{tenant_id}\x00{content_hash}".encode()).hexdigest()
    return DOCUMENT_ID_PREFIX + digest[:_DOCUMENT_ID_HEX_CHARS]
