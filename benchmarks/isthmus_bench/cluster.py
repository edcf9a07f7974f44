"""Pod faults and upgrades on the real single-node Kubernetes of the cluster tier, measured from a client's
side: what steady Ask traffic through the release's Service sees.

``python -m isthmus_bench.cluster [--window 30] [--workers 2] [--json]`` (needs the node of ``make
cluster-up`` and root, like the cluster tests; builds or reuses the image of this checkout with
tools/image.sh). It installs the chart's all-in-one shape (one pod, ``Recreate``, embedded state on a
volume) in a namespace of its own, indexes one document, then — ``--workers`` clients asking back to back
through the Service ClusterIP, one phase after another, in one run:

* **baseline**: ``--window`` seconds of that traffic and nothing else;
* **upgrade**: a ``helm upgrade --wait`` rolling out a new pod template (an annotation, as a new image tag
  would), traffic on until ``--window`` seconds after it returned;
* **crash**: SIGKILL of the pod's process from the node (an OOM kill); the kubelet restarts the container;
* **delete**: ``kubectl delete pod`` (graceful: SIGTERM, drain); the Deployment makes a new pod.

Per phase: calls, errors by status, p50/p99 latency of the successful calls, the longest gap between two
successful answers (what a user retrying back to back waits: the baseline's is the steady state), and for
the faults the outage clients saw (recovery: from the first call failing after the fault to the first
answer after it; 0 when none failed). The namespace is deleted at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import itertools
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

ROOT = Path(__file__).resolve().parents[2]
KUBECONFIG = Path("/tmp/isthmus-cluster/pki/admin.kubeconfig")
RELEASE = "bench"
TENANT = "acme"
SEED = (
    b"# Swept wings\n\nThe boundary layer on a swept wing thickens toward the tip because spanwise flow "
    b"carries low-momentum air outboard.\nWing fences and vortex generators limit that spanwise flow.\n"
)
QUESTION = "Why does the boundary layer thicken toward the tip?"


def _image() -> str:
    proc = subprocess.run(
        ["bash", str(ROOT / "tools" / "image.sh")], capture_output=True, text=True, timeout=2400, check=False
    )
    if proc.returncode != 0:
        raise SystemExit(f"tools/image.sh failed: {proc.stderr[-3000:]}")
    return proc.stdout.strip().splitlines()[-1]


def _values(image: str, revision: str) -> dict[str, Any]:
    from isthmus_core.testing.kube_node import isthmus_values

    return isthmus_values(
        image,
        {
            "auth": {"mode": "local"},
            "access": {"bindings": [{"principal": "me", "role": "platform-admin"}]},
            "podAnnotations": {"isthmus.dev/bench-revision": revision},
        },
    )


def _channel(address: str, token: str) -> grpc.aio.Channel:
    """The clients' channel: a bearer token, and reconnect backoff bounded to 1 s (gRPC's default grows to
    minutes), so a gap measured is the server's, not the client's backoff after it."""
    from isthmus_core.auth.outbound import StaticToken, bearer_interceptors

    return grpc.aio.insecure_channel(
        address,
        interceptors=bearer_interceptors(StaticToken(token)),
        options=[("grpc.initial_reconnect_backoff_ms", 200), ("grpc.max_reconnect_backoff_ms", 1000)],
    )


def summarize(calls: list[Any], fault_at: float | None = None) -> dict[str, Any]:
    """Figures of one phase's calls (``kube_faults.Call``), ``fault_at`` the fault's monotonic time."""
    ok = sorted(c.ended for c in calls if c.code == grpc.StatusCode.OK)
    latencies = sorted(c.ended - c.started for c in calls if c.code == grpc.StatusCode.OK)
    gaps = [b - a for a, b in itertools.pairwise(ok)]
    errors = collections.Counter(c.code.name for c in calls if c.code != grpc.StatusCode.OK)
    out: dict[str, Any] = {
        "calls": len(calls),
        "errors": sum(errors.values()),
        "errors_by_status": dict(errors),
        "p50_ms": round(1000 * statistics.median(latencies), 1) if latencies else None,
        "p99_ms": round(1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))], 1)
        if latencies
        else None,
        "longest_gap_s": round(max(gaps), 2) if gaps else None,
    }
    if fault_at is not None:
        # the outage clients saw: from the first call that failed after the fault (the old pod may serve
        # a while longer: the drain) to the first answer after it
        failed = [c.started for c in calls if c.code != grpc.StatusCode.OK and c.started >= fault_at]
        back = [t for t in ok if failed and t > failed[0]]
        out["recovery_s"] = round(back[0] - failed[0], 2) if back else 0.0
    return out


async def _run(window_s: float, workers: int) -> dict[str, Any]:
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
    from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
    from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
    from isthmus_core.testing.client import upload, wait_indexed
    from isthmus_core.testing.kube_faults import Traffic, crash_pod, wait_ready_replaced, wait_restarted
    from isthmus_core.testing.kube_node import KubeNode

    tools = ROOT / ".tools"
    node = KubeNode(
        kubeconfig=KUBECONFIG,
        kubectl_bin=tools / "kube-node" / "bin" / "kubectl",
        helm_bin=tools / "bin" / "helm",
        helm_home=Path(tempfile.mkdtemp(prefix="isthmus-bench-helm-")),
    )
    image = await asyncio.to_thread(_image)
    namespace = f"fault-bench-{int(time.time()) % 100000}"
    selector = f"app.kubernetes.io/instance={RELEASE}"
    node.create_namespace(namespace)
    result: dict[str, Any] = {"shape": "AllInOne (1 replica, Recreate)", "image": image, "workers": workers}
    try:
        started = time.monotonic()
        await asyncio.to_thread(node.install, RELEASE, namespace, _values(image, "1"), timeout_s=300)
        result["install_s"] = round(time.monotonic() - started, 1)
        token = node.exec(namespace, f"deploy/{RELEASE}-all", "isthmus", "auth", "token", "--subject", "me")
        channel = _channel(node.service_address(namespace, f"{RELEASE}-all"), token.strip())
        await retrieval_pb2_grpc.RetrievalServiceStub(channel).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id=TENANT), timeout=30
        )
        seeded = await upload(channel, TENANT, "wings.md", SEED, document_id="wings")
        await wait_indexed(channel, TENANT, [seeded.document_id], within_s=120)
        stub = ao_grpc.AgentOrchestratorServiceStub(channel)

        async def ask() -> None:
            await stub.Ask(ao.AskRequest(tenant_id=TENANT, question=QUESTION), timeout=30)

        loop = asyncio.get_running_loop()

        async def phase(fault: Any = None) -> dict[str, Any]:
            traffic = Traffic(ask, workers=workers, pause_s=0.1)
            traffic.start()
            await traffic.answered.wait()
            fault_at = None
            if fault is not None:
                fault_at = loop.time()
                await fault()
            await asyncio.sleep(window_s)  # steady traffic (after a fault: once it was dealt with)
            calls = await traffic.stop()
            return summarize(calls, fault_at)

        def pod() -> str:
            return str(node.pods(namespace, selector)[0]["metadata"]["name"])

        result["baseline"] = await phase()

        async def upgrade() -> None:
            t0 = time.monotonic()
            await asyncio.to_thread(node.install, RELEASE, namespace, _values(image, "2"), timeout_s=300)
            result["upgrade_helm_s"] = round(time.monotonic() - t0, 1)

        result["upgrade"] = await phase(upgrade)

        async def crash() -> None:
            name = pod()
            restarts = await asyncio.to_thread(crash_pod, node, namespace, name)
            await asyncio.to_thread(wait_restarted, node, namespace, name, restarts)

        result["crash"] = await phase(crash)

        async def delete() -> None:
            name = pod()
            await asyncio.to_thread(node.kubectl, "-n", namespace, "delete", "pod", name, "--wait=false")
            await asyncio.to_thread(wait_ready_replaced, node, namespace, selector, name)

        result["delete"] = await phase(delete)
        await channel.close()
    finally:
        node.delete_namespace(namespace)
    return result


def _print(r: dict[str, Any]) -> None:
    print(f"shape: {r['shape']}; {r['workers']} clients asking back to back through the Service")
    print(f"install (helm --wait): {r['install_s']} s; helm upgrade --wait: {r.get('upgrade_helm_s')} s")
    head = f"{'phase':10s} {'calls':>6s} {'errors':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'longest gap s':>14s}"
    print(head + f" {'recovery s':>11s}  errors by status")
    for name in ("baseline", "upgrade", "crash", "delete"):
        p = r[name]
        print(
            f"{name:10s} {p['calls']:6d} {p['errors']:7d} {p['p50_ms']!s:>8s} {p['p99_ms']!s:>8s} "
            f"{p['longest_gap_s']!s:>14s} {p.get('recovery_s', '-')!s:>11s}  {p['errors_by_status'] or ''}"
        )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--window", type=float, default=30.0, help="seconds of steady traffic per phase")
    ap.add_argument("--workers", type=int, default=2, help="clients asking back to back")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    result = asyncio.run(_run(args.window, args.workers))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        _print(result)


if __name__ == "__main__":
    main()
