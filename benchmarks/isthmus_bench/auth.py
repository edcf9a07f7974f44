"""What authentication and authorization cost per RPC (issue 14): the same calls, side by side, against
an all-in-one platform with auth off and one with auth on, in one run.

Run::

    .venv/bin/python -m isthmus_bench.auth [--calls 2000] [--json]

Two ``isthmus run --target all`` processes are started (throwaway data dirs, free ports, in-process
bus, embedded store): ``off`` (``auth = "off"``, loopback) and ``on`` (``auth = "local"``: bearer JWTs
from the local development issuer, ES256, checked by the gRPC edge; role bindings from an access file
evaluated by pycasbin; per-tenant rate quotas configured but far above the load). The caller of ``on``
is a ``reader`` of tenant ``bench`` and sends its token on every call.

For each RPC measured — ``GetTenant`` (retrieval, the cheapest tenant-scoped call), ``GetModel``
(embedding, no tenant: "permission in any tenant") and ``Search`` (BM25 over an empty tenant) — calls
alternate between the two servers, one at a time (``off``, ``on``, ``off``, ``on``...), so both see the
same machine state; latency is measured by the client from send to answer. Reported: p50/p95/p99 per
server and the difference (``on`` - ``off``) beside the issue's target (≤ 0.3 ms p95 added). The first
call on ``on`` verifies the token's signature; later ones hit the verified-token cache, as a client
reusing its token would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import grpc
import numpy as np

from isthmus.embedding.v1 import embedding_pb2, embedding_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.auth.local_issuer import LocalIssuer
from isthmus_core.testing.client import bearer_channel
from isthmus_core.testing.cluster import Cluster

TARGET_P95_ADDED_MS = 0.3
TENANT = "bench"

ACCESS = f"""
[platform]
bindings = [{{ principal = "bench-admin", role = "platform-admin" }}]

[tenants.{TENANT}]
bindings = [{{ principal = "bench-reader", role = "reader" }}]

[tenants.{TENANT}.quota]
requests_per_s = {{ documents = 1000000, search = 1000000, models = 1000000 }}
"""


def percentiles(samples_ms: list[float]) -> dict[str, float]:
    a = np.asarray(samples_ms, dtype=np.float64)
    return {f"p{q}": float(np.percentile(a, q)) for q in (50, 95, 99)}


def added(off: dict[str, float], on: dict[str, float]) -> dict[str, float]:
    return {k: on[k] - off[k] for k in off}


async def _timed(call: Callable[[], Awaitable[Any]]) -> float:
    t0 = time.perf_counter()
    await call()
    return (time.perf_counter() - t0) * 1000


async def measure(calls: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="isthmus-bench-auth-") as tmp:
        base = Path(tmp)
        (base / "on").mkdir()
        (base / "off").mkdir()
        access = base / "access.toml"
        access.write_text(ACCESS)
        issuer = LocalIssuer(base / "on" / "all" / "auth" / "local-issuer.pem")
        admin = issuer.mint("bench-admin", groups=[], ttl_s=7200, audience="isthmus")
        reader = issuer.mint("bench-reader", groups=[], ttl_s=7200, audience="isthmus")
        off = Cluster(base / "off", "", targets=("all",))
        on = Cluster(
            base / "on",
            "",
            {"ISTHMUS_AUTH": "local", "ISTHMUS_ACCESS_FILE": str(access)},
            targets=("all",),
        )
        try:
            for cluster in (off, on):
                cluster.start("all")
            for cluster in (off, on):
                await cluster.wait_healthy("all")
            async with (
                grpc.aio.insecure_channel(off.endpoints["all"]) as ch_off,
                bearer_channel(on.endpoints["all"], reader) as ch_on,
                bearer_channel(on.endpoints["all"], admin) as ch_admin,
            ):
                await retrieval_pb2_grpc.RetrievalServiceStub(ch_off).CreateTenant(
                    retrieval_pb2.CreateTenantRequest(tenant_id=TENANT)
                )
                await retrieval_pb2_grpc.RetrievalServiceStub(ch_admin).CreateTenant(
                    retrieval_pb2.CreateTenantRequest(tenant_id=TENANT)
                )
                rpcs = _rpcs()
                out: dict[str, Any] = {"calls": calls, "target_p95_added_ms": TARGET_P95_ADDED_MS, "rpcs": {}}
                for name, make in rpcs.items():
                    call_off, call_on = make(ch_off), make(ch_on)
                    for _ in range(min(50, calls)):  # warm both (channels, caches, the first verification)
                        await call_off()
                        await call_on()
                    samples: dict[str, list[float]] = {"off": [], "on": []}
                    for i in range(calls):
                        order = (
                            (("off", call_off), ("on", call_on))
                            if i % 2 == 0
                            else (("on", call_on), ("off", call_off))
                        )
                        for label, call in order:
                            samples[label].append(await _timed(call))
                    p_off, p_on = percentiles(samples["off"]), percentiles(samples["on"])
                    out["rpcs"][name] = {"off": p_off, "on": p_on, "added": added(p_off, p_on)}
                return out
        finally:
            off.stop_all()
            on.stop_all()


def _rpcs() -> dict[str, Callable[[grpc.aio.Channel], Callable[[], Awaitable[Any]]]]:
    def get_tenant(ch: grpc.aio.Channel) -> Callable[[], Awaitable[Any]]:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        req = retrieval_pb2.GetTenantRequest(tenant_id=TENANT)
        return lambda: stub.GetTenant(req)

    def get_model(ch: grpc.aio.Channel) -> Callable[[], Awaitable[Any]]:
        stub = embedding_pb2_grpc.EmbeddingServiceStub(ch)
        req = embedding_pb2.GetModelRequest()
        return lambda: stub.GetModel(req)

    def search(ch: grpc.aio.Channel) -> Callable[[], Awaitable[Any]]:
        stub = retrieval_pb2_grpc.RetrievalServiceStub(ch)
        req = retrieval_pb2.SearchRequest(
            tenant_id=TENANT, query="boundary layer", mode=retrieval_pb2.SEARCH_MODE_BM25, top_k=5
        )
        return lambda: stub.Search(req)

    return {
        "RetrievalService/GetTenant": get_tenant,
        "EmbeddingService/GetModel": get_model,
        "RetrievalService/Search (bm25)": search,
    }


def render(result: dict[str, Any]) -> str:
    lines = [
        f"auth cost per RPC: {result['calls']} calls each, alternating auth off / auth on "
        "(local issuer, ES256, casbin)",
        f"{'rpc':32} {'off p50':>8} {'off p95':>8} {'on p50':>8} {'on p95':>8} {'+p50':>7} {'+p95':>7}"
        "  target +p95",
    ]
    for name, r in result["rpcs"].items():
        lines.append(
            f"{name:32} {r['off']['p50']:8.3f} {r['off']['p95']:8.3f}"
            f" {r['on']['p50']:8.3f} {r['on']['p95']:8.3f}"
            f" {r['added']['p50']:+7.3f} {r['added']['p95']:+7.3f}  <= {result['target_p95_added_ms']} ms"
        )
    lines.append("(milliseconds, measured by the client on loopback)")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m isthmus_bench.auth", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--calls", type=int, default=2000, help="calls per RPC per server")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    result = asyncio.run(measure(args.calls))
    print(json.dumps(result, indent=2) if args.json else render(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
