"""/metrics with authentication on: a bearer with metrics.read for every tenant, or 401/403 (audited);
with auth off (loopback) or metrics_auth = false, served as before. A real runtime, a real HTTP port."""

from __future__ import annotations

import asyncio
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, ClassVar

import pytest

from isthmus_core.auth.stack import ListAudit
from isthmus_core.auth.wiring import local_issuer
from isthmus_core.runtime.module import Module, ModuleContext, Offer
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.settings import SectionSettings, section_config
from isthmus_core.testing.infra import free_port_run

ACCESS = """
[platform]
bindings = [{ principal = "scraper", role = "auditor" }]

[tenants.acme]
bindings = [{ principal = "alice", role = "auditor" }]
"""


class NoSettings(SectionSettings):
    section: ClassVar[str] = "nothing"
    model_config = section_config("nothing")


async def _build(ctx: ModuleContext[NoSettings]) -> Offer:
    return Offer()


NOTHING = Module(name="nothing", settings_cls=NoSettings, build=_build)


def _get(port: int, token: str | None) -> tuple[int, str, dict[str, str]]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}/metrics")
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode(), dict(response.headers)
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode(), dict(exc.headers)


async def _runtime(tmp_path: Path, **common: Any) -> tuple[Runtime, int]:
    port = free_port_run(1)
    overrides = {"common": {"data_dir": str(tmp_path), "grpc_port": 0, "metrics_port": port, **common}}
    rt = Runtime.from_settings("all", [NOTHING], overrides=overrides)
    await rt.start()
    return rt, port


async def test_with_auth_on_a_scrape_needs_metrics_read_for_every_tenant(tmp_path: Path) -> None:
    (tmp_path / "access.toml").write_text(ACCESS)
    rt, port = await _runtime(tmp_path, auth="local")
    rt.auth.audit = audit = ListAudit()  # what the guard records (the bus sink is started, replace it)
    try:
        issuer = local_issuer(rt.common)
        cases = {
            "none": None,
            "garbage": "not-a-jwt",
            "alice": issuer.mint("alice"),  # metrics.read in one tenant only
            "scraper": issuer.mint("scraper"),
        }
        got = {name: await asyncio.to_thread(_get, port, token) for name, token in cases.items()}
        assert got["none"][0] == 401 and "Bearer" in got["none"][2].get("WWW-Authenticate", "")
        assert got["garbage"][0] == 401 and "malformed" in got["garbage"][1]
        assert got["alice"][0] == 403 and "metrics.read" in got["alice"][1]
        status, body, _ = got["scraper"]
        assert status == 200 and "isthmus_grpc_requests_total" in body
        await asyncio.sleep(0)  # the guard hands its audit records to the loop
        kinds = [(r.kind, r.principal, r.method) for r in audit.records]
        assert kinds == [
            ("authentication_failed", "", "GET /metrics"),
            ("authentication_failed", "", "GET /metrics"),
            ("permission_denied", "alice", "GET /metrics"),
        ]
    finally:
        await rt.stop()


@pytest.mark.parametrize("common", [{"auth": "off"}, {"auth": "local", "metrics_auth": False}])
async def test_without_the_guard_metrics_are_served_to_anyone(tmp_path: Path, common: dict[str, Any]) -> None:
    rt, port = await _runtime(tmp_path, **common)
    try:
        status, body, _ = await asyncio.to_thread(_get, port, None)
        assert status == 200 and "isthmus_grpc_requests_total" in body
    finally:
        await rt.stop()
