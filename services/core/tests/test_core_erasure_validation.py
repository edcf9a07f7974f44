"""Erase and GetErasure requests are checked at the edge like every request: exactly the fields' rules
(document ids through the one parser, a bounded list, a printable data subject, a well-formed erasure
id), before any handler runs."""

from __future__ import annotations

import pytest
from google.protobuf.message import Message

from isthmus.ingestion.v1 import ingestion_pb2 as pb
from isthmus_core.errors import InvalidArgument
from isthmus_core.grpc.validation import validate_message

HEX = "0123456789abcdef" * 2


@pytest.mark.parametrize(
    "msg",
    [
        pb.EraseRequest(tenant_id="acme", documents=pb.DocumentIds(ids=["d1", "doc:2"])),
        pb.EraseRequest(tenant_id="acme", data_subject="alice@example.com", reason="art. 17"),
        pb.EraseRequest(tenant_id="acme", whole_tenant=True),
        pb.EraseRequest(tenant_id="acme"),  # no target: the service says which one to name
        pb.GetErasureRequest(tenant_id="acme", erasure_id=HEX),
    ],
)
def test_valid_erasure_requests_pass(msg: Message) -> None:
    validate_message(msg)


@pytest.mark.parametrize(
    ("msg", "reason"),
    [
        (pb.EraseRequest(tenant_id="acme", documents=pb.DocumentIds(ids=["d1", "../x"])), "documents.ids[1]"),
        (pb.EraseRequest(tenant_id="acme", documents=pb.DocumentIds(ids=["d"] * 10_001)), "limit is 10000"),
        (pb.EraseRequest(tenant_id="acme", data_subject=""), "data_subject is empty"),
        (pb.EraseRequest(tenant_id="acme", data_subject="a\x00b"), "non-printable"),
        (pb.EraseRequest(tenant_id="acme", data_subject="x" * 257), "at most 256"),
        (pb.EraseRequest(tenant_id="../etc", whole_tenant=True), "tenant_id"),
        (pb.GetErasureRequest(tenant_id="acme", erasure_id="../../x"), "erasure_id"),
        (pb.GetErasureRequest(tenant_id="acme"), "erasure_id"),
    ],
)
def test_bad_erasure_requests_are_refused_at_the_edge(msg: Message, reason: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        validate_message(msg)
    assert reason in str(caught.value)
