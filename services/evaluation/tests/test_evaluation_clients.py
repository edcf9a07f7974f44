"""Evaluation's gRPC client of the platform (the EvalPlatform conformance suite runs against it on the
real platform in tests/e2e/test_e2e_service_clients.py): an outage is Unavailable, not a gRPC error."""

from __future__ import annotations

import pytest

from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import Unavailable
from isthmus_core.grpc.client import open_channel
from isthmus_core.ports.eval_platform import EvalPlatform
from isthmus_core.store.port import SearchMode
from isthmus_evaluation.clients import GrpcEvalPlatform


async def test_an_unreachable_platform_is_unavailable_for_every_call() -> None:
    async with open_channel("127.0.0.1:1") as ch:  # nothing listens on port 1
        platform = GrpcEvalPlatform(ch, ch, timeout_s=5, long_timeout_s=5)
        assert isinstance(platform, EvalPlatform)
        tenant = TenantId("acme")
        with pytest.raises(Unavailable):
            await platform.create_tenant(tenant)
        with pytest.raises(Unavailable):
            await platform.delete_tenant(tenant)
        with pytest.raises(Unavailable):
            await platform.upload(tenant, "d1", "d1.txt", b"text")
        with pytest.raises(Unavailable):
            await platform.progress(tenant)
        with pytest.raises(Unavailable):
            await platform.search(tenant, "q", SearchMode.HYBRID, 10, rerank=True)
