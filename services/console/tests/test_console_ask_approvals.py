"""The Ask playground's human in the loop: with ``search`` a sensitive tool, a react run waits for an
approval; the APPROVAL_WAIT step in the page carries Approve/Reject, and the run's stream goes on once
it is decided (a separate platform: sensitive searches would stop every other test's answers)."""

from __future__ import annotations

import asyncio
import html
import json
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import pytest_asyncio

from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_cli.modules import MODULES
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.client import upload, wait_indexed
from isthmus_core.testing.in_process import platform_overrides
from isthmus_core.testing.infra import free_port_run

pytestmark = [pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TENANT = "ask-approvals"
KAFKA_MD = b"""# Apache Kafka

Kafka stores streams of records in topics, and every topic is split into partitions.
"""


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def console(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[dict[str, Any]]:
    data_dir: Path = tmp_path_factory.mktemp("isthmus")
    port = free_port_run()
    overrides: dict[str, dict[str, Any]] = platform_overrides(
        str(data_dir), console={"port": port}, agent_orchestrator={"sensitive_tools": ["search"]}
    )
    rt = Runtime.from_settings("all", MODULES, None, overrides)
    await rt.start()
    ch = grpc.aio.insecure_channel(rt.address)
    try:
        await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=TENANT)
        )
        r = await upload(ch, TENANT, "kafka.md", KAFKA_MD, document_id="kafka")
        await wait_indexed(ch, TENANT, [r.document_id])
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=60) as http:
            yield {"http": http}
    finally:
        await ch.close()
        await rt.stop()


def csrf_of(page: str) -> str:
    m = re.search(r"hx-headers='([^']*)'", page)
    assert m
    return str(json.loads(html.unescape(m.group(1)))["X-CSRF-Token"])


async def start_question(http: httpx.AsyncClient, question: str, graph: str) -> str:
    page = await http.get("/ask")
    r = await http.post(
        "/ask",
        data={"tenant": TENANT, "question": question, "graph": graph},
        headers={"X-CSRF-Token": csrf_of(page.text)},
    )
    assert r.status_code == 200, r.text
    m = re.search(r'sse-connect="([^"]+)"', r.text)
    assert m, r.text
    return html.unescape(m.group(1))


async def events_of(http: httpx.AsyncClient, url: str, out: list[tuple[str, str]]) -> None:
    """The stream's events (name, data), appended to ``out`` as they come, up to ``done``."""
    name, data = "message", []
    async with http.stream("GET", url) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if line.startswith("event:"):
                name = line[6:].strip()
            elif line.startswith("data:"):
                data.append(line[5:].removeprefix(" "))
            elif line == "":
                if data:
                    out.append((name, "\n".join(data)))
                    if name == "done":
                        return
                name, data = "message", []


def joined(events: list[tuple[str, str]], name: str) -> str:
    return "\n".join(d for n, d in events if n == name)


async def test_a_sensitive_tool_call_is_approved_in_the_page(console: dict[str, Any]) -> None:
    http = console["http"]
    url = await start_question(http, "How are topics split in Kafka?", graph="react")
    events: list[tuple[str, str]] = []
    reading = asyncio.create_task(events_of(http, url, events))
    form = None
    for _ in range(300):
        form = re.search(r'hx-post="(/ask/approvals/[^"]+)"', joined(events, "step"))
        if form or reading.done():
            break
        await asyncio.sleep(0.1)
    assert form, events
    assert "waiting for approval" in joined(events, "step") and ">Approve<" in joined(events, "step")
    token = csrf_of((await http.get("/ask")).text)
    decided = await http.post(
        html.unescape(form.group(1)),
        data={"decision": "approve", "reason": "fine by me"},
        headers={"X-CSRF-Token": token},
    )
    assert decided.status_code == 200, decided.text
    assert ">approved<" in decided.text and "fine by me" in decided.text
    await asyncio.wait_for(reading, 120)
    assert "approval decided" in joined(events, "step")
    final = joined(events, "final")
    assert "partitions" in joined(events, "sentence") + final
    # a second decision: the platform's refusal, with its code
    again = await http.post(
        html.unescape(form.group(1)), data={"decision": "reject"}, headers={"X-CSRF-Token": token}
    )
    assert again.status_code >= 400 and 'role="alert"' in again.text
    bad = await http.post(
        html.unescape(form.group(1)), data={"decision": "maybe"}, headers={"X-CSRF-Token": token}
    )
    assert bad.status_code == 400 and "decision must be" in bad.text
