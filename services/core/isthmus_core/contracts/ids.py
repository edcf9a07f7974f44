"""Identifiers as types: one parser each, applied once at every edge (gRPC servicer, bus subscriber, CLI).

After :func:`parse_tenant_id` / :func:`parse_document_id` an id is a :data:`TenantId` / :data:`DocumentId`;
its alphabet has no path separator, no dot-dot, no whitespace and no control character, and its length is
bounded, so it can never become a path, a topic, a Weaviate tenant or a storage key unchecked. Pure: no
I/O, values in and :class:`~isthmus_core.errors.InvalidArgument` out, with the rule in the message.
"""

from __future__ import annotations

import re
from typing import Final, NewType

from isthmus_core.errors import InvalidArgument

TenantId = NewType("TenantId", str)
DocumentId = NewType("DocumentId", str)

#: tenant ids: lowercase DNS-label style (they name Kubernetes objects, Weaviate tenants and directories)
TENANT_ID_PATTERN: Final = r"^[a-z0-9][a-z0-9-]{0,62}$"
TENANT_ID_RULE: Final = (
    "tenant ids are 1-63 characters of lowercase letters, digits and '-', starting with a letter or digit"
)
#: document ids: letters, digits and ``._:-`` (dataset ids such as ``MED-10``, ``doc-3f2a…``), no ``..``
DOCUMENT_ID_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$"
DOCUMENT_ID_RULE: Final = (
    "document ids are 1-128 characters of letters, digits and '.', '_', ':', '-', starting with a letter "
    "or digit, without '..'"
)
#: principals (document ACL entries): printable, no separators used by the ACL encoding
PRINCIPAL_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,255}$"
PRINCIPAL_RULE: Final = (
    "principals are 1-256 characters of letters, digits and '.', '_', ':', '@', '/', '+', '-', "
    "starting with a letter or digit"
)

_TENANT: Final = re.compile(TENANT_ID_PATTERN)
_DOCUMENT: Final = re.compile(DOCUMENT_ID_PATTERN)
_PRINCIPAL: Final = re.compile(PRINCIPAL_PATTERN)


def _shown(raw: object) -> str:
    text = repr(raw)
    return text if len(text) <= 80 else text[:77] + "..."


def is_tenant_id(raw: object) -> bool:
    return isinstance(raw, str) and _TENANT.fullmatch(raw) is not None


def parse_tenant_id(raw: object, field: str = "tenant_id") -> TenantId:
    """``raw`` as a :data:`TenantId`, or :class:`InvalidArgument` saying which rule it breaks."""
    if raw is None or raw == "":
        raise InvalidArgument(f"{field} is required")
    if not is_tenant_id(raw):
        raise InvalidArgument(f"invalid {field} {_shown(raw)}: {TENANT_ID_RULE}")
    return TenantId(str(raw))


def is_document_id(raw: object) -> bool:
    return isinstance(raw, str) and _DOCUMENT.fullmatch(raw) is not None and ".." not in raw


def parse_document_id(raw: object, field: str = "document_id") -> DocumentId:
    """``raw`` as a :data:`DocumentId`, or :class:`InvalidArgument` saying which rule it breaks."""
    if raw is None or raw == "":
        raise InvalidArgument(f"{field} is required")
    if not is_document_id(raw):
        raise InvalidArgument(f"invalid {field} {_shown(raw)}: {DOCUMENT_ID_RULE}")
    return DocumentId(str(raw))


def parse_principals(raw: object, field: str = "access.principals", limit: int = 256) -> tuple[str, ...]:
    """Principals of an access scope (deduplicated, in order), or :class:`InvalidArgument`."""
    if isinstance(raw, str) or not hasattr(raw, "__iter__"):
        raise InvalidArgument(f"{field} must be a list of strings")
    out: list[str] = []
    for p in raw:
        if not isinstance(p, str) or _PRINCIPAL.fullmatch(p) is None:
            raise InvalidArgument(f"invalid principal {_shown(p)} in {field}: {PRINCIPAL_RULE}")
        if p not in out:
            out.append(p)
    if len(out) > limit:
        raise InvalidArgument(f"{field} lists {len(out)} principals; the limit is {limit}")
    return tuple(out)
