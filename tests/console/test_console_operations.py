"""The operations page in a real browser: it loads, the six services' health shows SERVING (and the
live summary says so), axe-core finds no serious or critical problem, and the keyboard alone reaches a
dead letter's Replay button and replays it (after the confirmation), the result announced in its row.

A dead letter needs a bad event on the bus, which no public API of a platform in another process
produces: this module runs the `all` target in this process instead — on an asyncio loop in a
background thread, since Playwright's sync API owns the test's thread — and publishes a document the
parser refuses (ingestion dead-letters it)."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc
import pytest

from isthmus.operations.v1 import operations_pb2, operations_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_cli.modules import MODULES
from isthmus_console.backend import SERVICES
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.browser import chromium_path
from isthmus_core.testing.infra import free_port_run

pytestmark = [pytest.mark.browser, pytest.mark.slow]

T = TypeVar("T")
TENANT = "acme"


@dataclass
class ThreadPlatform:
    url: str
    runtime: Runtime
    loop: asyncio.AbstractEventLoop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)


@pytest.fixture(scope="module")
def ops_platform(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadPlatform]:
    """The `all` target with the console on a free port, on a loop in a background thread; tenant acme
    with one dead letter on isthmus.documents.submitted.v1.dlq."""
    chromium_path()
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    port = free_port_run(1)
    overrides: dict[str, dict[str, Any]] = {
        "common": {
            "data_dir": str(tmp_path_factory.mktemp("console-ops")),
            "grpc_port": 0,
            "metrics_port": 0,
            "bus": "auto",
            "shutdown_grace_s": 2.0,
        },
        "console": {"port": port},
    }

    async def start() -> Runtime:
        rt = Runtime.from_settings("all", MODULES, None, overrides)
        await rt.start()
        return rt

    rt = asyncio.run_coroutine_threadsafe(start(), loop).result(300)
    platform = ThreadPlatform(f"http://127.0.0.1:{port}", rt, loop)
    try:
        platform.run(_dead_letter(rt))
        yield platform
    finally:
        asyncio.run_coroutine_threadsafe(rt.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()


async def _dead_letter(rt: Runtime) -> None:
    async with grpc.aio.insecure_channel(rt.address) as ch:
        await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=TENANT)
        )
        bad = DocumentSubmitted(
            tenant_id=TENANT, idempotency_key="k-bad", document_id="bad", filename="bad.pdf", content=b"no"
        )
        await publish_event(rt.bus, topics.DOCUMENTS_SUBMITTED, bad)
        ops = operations_pb2_grpc.OperationsServiceStub(ch)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            listed = await ops.ListDeadLetters(
                operations_pb2.ListDeadLettersRequest(topic=topics.DOCUMENTS_SUBMITTED.name)
            )
            if listed.dead_letters:
                return
            await asyncio.sleep(0.3)
        pytest.fail("the bad document was not dead-lettered")


def test_operations_page_health_axe_and_replay_by_keyboard(
    ops_platform: ThreadPlatform, page: Any, axe_check: Any, tmp_path: Path
) -> None:
    response = page.goto(ops_platform.url + "/operations")
    assert response is not None and response.ok, response
    page.get_by_role("heading", name="Operations", level=1).wait_for()
    for service in SERVICES:
        badge = page.locator(f'#health [data-service="{service}"][data-region=""]')
        assert badge.inner_text() == "SERVING", service
    assert page.locator("#health-summary").inner_text() == "All 6 services SERVING in this deployment."
    assert page.get_by_text("not configured (set console.kube_namespace)").count() == 1
    # the dead letters of the default topic load on their own (htmx), with the Replay button
    replay = page.get_by_role("button", name=re.compile(r"^Replay dead letter \d+:\d+$"))
    replay.first.wait_for()
    page.get_by_role("table").filter(has_text="Group").first.wait_for()  # consumer lag loaded too
    assert not axe_check(page)
    page.screenshot(path=str(tmp_path / "operations.png"), full_page=True)

    # the keyboard alone: Tab from the top of the page until the Replay button has the focus
    page.on("dialog", lambda dialog: dialog.accept())
    page.locator("body").focus()
    for _ in range(80):
        page.keyboard.press("Tab")
        if replay.first.evaluate("el => el === document.activeElement"):
            break
    else:
        pytest.fail("Tab never reached the Replay button")
    page.keyboard.press("Enter")  # submits its form; the confirmation is accepted
    result = page.locator(".replay-result").first
    result.filter(has_text="replayed").wait_for()
    assert re.search(r"offset \d+", result.inner_text()), result.inner_text()
    # the health table keeps polling (every 5 s) without errors
    page.wait_for_timeout(5500)
    assert page.locator("#health-summary").inner_text() == "All 6 services SERVING in this deployment."
