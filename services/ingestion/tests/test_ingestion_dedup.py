from __future__ import annotations

import hashlib
import re

import pytest

from isthmus_core.errors import InvalidArgument
from isthmus_ingestion.dedup import content_hash, document_id_for


def test_content_hash_is_prefixed_sha256_of_the_bytes() -> None:
    data = "café".encode()
    assert content_hash(data) == "sha256:" + hashlib.sha256(data).hexdigest()
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", content_hash(b""))


def test_content_hash_is_deterministic_and_content_sensitive() -> None:
    assert content_hash(b"same bytes") == content_hash(b"same " + b"bytes")
    assert content_hash(b"same bytes") != content_hash(b"same bytes ")


def test_document_id_is_deterministic_and_short() -> None:
    digest = content_hash(b"report")
    first = document_id_for("acme", digest)
    assert first == document_id_for("acme", digest)
    assert re.fullmatch(r"doc-[0-9a-f]{24}", first)


def test_document_ids_separate_tenants_and_contents() -> None:
    report, memo = content_hash(b"report"), content_hash(b"memo")
    ids = {
        document_id_for("acme", report),
        document_id_for("globex", report),
        document_id_for("acme", memo),
        document_id_for("globex", memo),
    }
    assert len(ids) == 4


@pytest.mark.parametrize(
    ("tenant", "digest"),
    [("", content_hash(b"x")), ("acme", "md5:abc"), ("acme", hashlib.sha256(b"x").hexdigest())],
)
def test_document_id_rejects_bad_input(tenant: str, digest: str) -> None:
    with pytest.raises(InvalidArgument):
        document_id_for(tenant, digest)
