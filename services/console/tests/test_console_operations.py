"""The operations page against a real platform in this process (the `all` target, the console on a free
port) over HTTP: the six services' health, a real dead letter listed with its reason and replayed once
(refused the second time, with the reason), CSRF, consumer lag; and EdgeRollout / FailoverDrill objects
read from a real kube-apiserver (tests/infra/kube.sh, the operator tier's server) with the status the
operator writes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import grpc
import httpx
import pytest
import yaml

from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_cli.modules import MODULES
from isthmus_console.backend import SERVICES, Backend
from isthmus_console.kube import drill_view, rollout_view
from isthmus_console.pages.operations import may_replay
from isthmus_console.viewer import ANONYMOUS_VIEWER, Viewer
from isthmus_core.auth.identity import Permission
from isthmus_core.auth.local_issuer import LocalIssuer
from isthmus_core.bus.typed import publish_event
from isthmus_core.contracts import topics
from isthmus_core.contracts.events import DocumentSubmitted
from isthmus_core.runtime.runtime import Runtime
from isthmus_core.testing.in_process import platform_overrides
from isthmus_core.testing.infra import free_port_run, missing_tool

# the test API server's certificate is self-signed (its kubeconfig: insecure-skip-tls-verify)
pytestmark = pytest.mark.filterwarnings("ignore::urllib3.exceptions.InsecureRequestWarning")

ROOT = Path(__file__).resolve().parents[3]
CRDS = ROOT / "charts" / "isthmus-operator" / "crds"
KUBE_SH = ROOT / "tests" / "infra" / "kube.sh"
TOPIC = topics.DOCUMENTS_SUBMITTED.name


@contextlib.asynccontextmanager
async def platform(
    data_dir: Path, grpc_port: int = 0, auth: str = "off", **console: Any
) -> AsyncIterator[tuple[Runtime, str]]:
    """The `all` target in this process with the console on a free port: (runtime, console URL)."""
    port = free_port_run(1)
    overrides: dict[str, dict[str, Any]] = platform_overrides(
        str(data_dir), common={"auth": auth, "grpc_port": grpc_port}, console={"port": port, **console}
    )
    rt = Runtime.from_settings("all", MODULES, None, overrides)
    await rt.start()
    try:
        yield rt, f"http://127.0.0.1:{port}"
    finally:
        await rt.stop()


def csrf_of(html: str) -> str:
    """The session's CSRF token from the page's hx-headers (base.html)."""
    found = re.search(r'X-CSRF-Token&#34;: &#34;([^&]+)&#34;|"X-CSRF-Token": "([^"]+)"', html)
    assert found, "no CSRF token in the page"
    return found.group(1) or found.group(2)


async def wait_for_letters(http: httpx.AsyncClient, tenant: str, count: int) -> str:
    deadline = time.monotonic() + 60
    body = ""
    while time.monotonic() < deadline:
        r = await http.get("/operations/dead-letters", params={"topic": TOPIC, "tenant": tenant})
        assert r.status_code == 200, r.text
        body = r.text
        if body.count('class="dead-letter"') >= count:
            return body
        await asyncio.sleep(0.3)
    pytest.fail(f"no {count} dead letters listed; last: {body[-2000:]}")


@pytest.mark.slow
async def test_health_dead_letters_replay_and_csrf(tmp_path: Path) -> None:
    # two regions: "eu" is this very platform (its gRPC port), "gone" a port nobody listens on
    grpc_port, nobody = free_port_run(1), free_port_run(1)
    regions = {"eu": f"127.0.0.1:{grpc_port}", "gone": f"127.0.0.1:{nobody}"}
    async with (
        platform(tmp_path, grpc_port=grpc_port, region_endpoints=regions) as (rt, url),
        grpc.aio.insecure_channel(rt.address) as ch,
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        page = await http.get("/operations")
        assert page.status_code == 200, page.text
        # the six services' health here and per region, and the live summary naming what is not SERVING
        for service in SERVICES:
            assert re.search(rf'data-service="{service}" data-region="">SERVING<', page.text), service
            assert re.search(rf'data-service="{service}" data-region="eu">SERVING<', page.text), service
            assert re.search(rf'data-service="{service}" data-region="gone">UNREACHABLE<', page.text)
        summary = re.search(
            r'<p id="health-summary"[^>]*role="status" aria-live="polite">([^<]*)<', page.text
        )
        assert summary, page.text[:3000]
        assert summary.group(1).startswith("6 of 18 health checks not SERVING: ingestion in region gone: ")
        assert "region eu" not in summary.group(1) and "this deployment" not in summary.group(1)
        assert 'hx-trigger="every 5s"' in page.text
        # without console.kube_namespace the rollouts and drills say how to turn them on
        assert "not configured (set <code>console.kube_namespace</code>)" in page.text
        csrf = csrf_of(page.text)

        # the polled fragment: announces the summary only when it changed
        r = await http.get("/operations/health", params={"last": "something else"})
        assert r.status_code == 200 and 'hx-swap-oob="innerHTML"' in r.text
        r = await http.get("/operations/health", params={"last": summary.group(1)})
        assert "hx-swap-oob" not in r.text and r.text.count(">SERVING<") == 12

        # a real dead letter: a document the parser refuses (not a PDF) is dead-lettered by ingestion
        await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
            retrieval_pb2.CreateTenantRequest(tenant_id="t1")
        )
        bad = DocumentSubmitted(
            tenant_id="t1", idempotency_key="k-bad", document_id="bad", filename="bad.pdf", content=b"no pdf"
        )
        await publish_event(rt.bus, topics.DOCUMENTS_SUBMITTED, bad)
        body = await wait_for_letters(http, "t1", 1)
        assert "InvalidArgument" in body and "pdf" in body.lower()
        assert 'hx-post="/operations/dead-letters/replay"' in body and "hx-confirm=" in body
        row = re.search(
            r'<tr class="dead-letter" data-offset="(\d+)">.*?<th scope="row">(\d+):\d+</th>', body, re.S
        )
        assert row
        offset, partition = row.group(1), row.group(2)
        form = {"topic": TOPIC, "partition": partition, "offset": offset, "tenant": "t1"}

        # an unknown topic and a malformed tenant are refused with the reason
        r = await http.get("/operations/dead-letters", params={"topic": "nope"})
        assert r.status_code == 400 and "unknown topic" in r.text
        r = await http.get("/operations/dead-letters", params={"topic": TOPIC, "tenant": "../x"})
        assert r.status_code == 400 and "not a tenant id" in r.text

        # no CSRF token: 403, nothing replayed
        r = await http.post("/operations/dead-letters/replay", data=form)
        assert r.status_code == 403
        r = await http.post("/operations/dead-letters/replay", data=form, headers={"X-CSRF-Token": "forged"})
        assert r.status_code == 403

        # replay: the new position on the source topic
        r = await http.post("/operations/dead-letters/replay", data=form, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 200, r.text
        assert "replayed" in r.text and TOPIC in r.text
        assert re.search(r'data-new-offset="\d+"', r.text)
        # a second replay of the same letter is refused, with the platform's reason
        r = await http.post("/operations/dead-letters/replay", data=form, headers={"X-CSRF-Token": csrf})
        assert r.status_code == 400, r.text
        assert 'role="alert"' in r.text and "FAILED_PRECONDITION" in r.text and "replayed" in r.text
        # the listing shows it replayed, without its button
        body = await wait_for_letters(http, "t1", 1)
        letter = re.search(rf'data-offset="{offset}">.*?</tr>', body, re.S)
        assert letter and "Replayed to" in letter.group(0) and "hx-post" not in letter.group(0)

        # consumer lag: the groups of this process, labelled with the services served there
        r = await http.get("/operations/consumers")
        assert r.status_code == 200, r.text
        assert TOPIC in r.text and "ingestion" in r.text and "inprocess bus" in r.text


async def _log_in(http: httpx.AsyncClient, token: str) -> None:
    """The local login: paste a token (POST /auth/token with the login page's CSRF token)."""
    page = await http.get("/auth/login?next=/operations")
    r = await http.post("/auth/token", data={"token": token}, headers={"X-CSRF-Token": csrf_of(page.text)})
    assert r.status_code == 204, r.text


@pytest.mark.slow
async def test_with_auth_a_tenant_admin_replays_her_tenants_letters_and_a_reader_sees_none(
    tmp_path: Path,
) -> None:
    """auth = local: alice (tenant-admin of t1: ops.read and ops.replay there) lists and replays t1's
    dead letters but not every tenant's, nor the consumer lag (platform-wide); bob (reader of t1) has no
    ops permission: the page hides the panels and the platform refuses the calls."""
    (tmp_path / "access.toml").write_text(
        '[platform]\nbindings = [{ principal = "root", role = "platform-admin" }]\n\n'
        '[tenants.t1]\nbindings = [{ principal = "alice", role = "tenant-admin" }, '
        '{ principal = "bob", role = "reader" }]\n'
    )
    async with platform(tmp_path, auth="local") as (rt, url):
        issuer = LocalIssuer(tmp_path / "auth" / "local-issuer.pem")
        root = (("authorization", f"Bearer {issuer.mint('root')}"),)
        async with grpc.aio.insecure_channel(rt.address) as ch:
            await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
                retrieval_pb2.CreateTenantRequest(tenant_id="t1"), metadata=root
            )
        bad = DocumentSubmitted(
            tenant_id="t1", idempotency_key="k-bad", document_id="bad", filename="bad.pdf", content=b"no pdf"
        )
        await publish_event(rt.bus, topics.DOCUMENTS_SUBMITTED, bad)

        async with httpx.AsyncClient(base_url=url, timeout=30) as alice:
            assert (await alice.get("/operations")).status_code == 303  # not logged in: to the login
            await _log_in(alice, issuer.mint("alice"))
            page = await alice.get("/operations")
            assert page.status_code == 200
            assert "Consumer lag needs the <code>ops.read</code> permission in every tenant." in page.text
            assert 'id="dlq-tenant"' in page.text and "(empty: every tenant)" not in page.text
            assert (await alice.get("/operations/dead-letters", params={"topic": TOPIC})).status_code == 400
            body = await wait_for_letters(alice, "t1", 1)
            # with authentication on, a record without a producer token is dead-lettered as such
            assert "Unauthenticated" in body and "without a producer token" in body
            assert 'hx-post="/operations/dead-letters/replay"' in body
            row = re.search(r'data-offset="(\d+)">\s*<th scope="row">(\d+):', body)
            assert row
            form = {"topic": TOPIC, "partition": row.group(2), "offset": row.group(1), "tenant": "t1"}
            csrf = csrf_of(page.text)
            # another tenant named in the form: the platform refuses (she holds ops.replay in t1 only)
            r = await alice.post(
                "/operations/dead-letters/replay",
                data={**form, "tenant": "t2"},
                headers={"X-CSRF-Token": csrf},
            )
            assert r.status_code in (403, 404) and 'role="alert"' in r.text, r.text
            r = await alice.post("/operations/dead-letters/replay", data=form, headers={"X-CSRF-Token": csrf})
            assert r.status_code == 200 and "replayed" in r.text and "by alice" in r.text, r.text

        async with httpx.AsyncClient(base_url=url, timeout=30) as bob:
            await _log_in(bob, issuer.mint("bob"))
            page = await bob.get("/operations")
            assert page.status_code == 200 and ">SERVING<" in page.text  # health is for everyone
            assert "Dead letters need the <code>ops.read</code> permission." in page.text
            assert 'hx-get="/operations/consumers"' not in page.text
            r = await bob.get("/operations/dead-letters", params={"topic": TOPIC, "tenant": "t1"})
            assert r.status_code == 403 and "PERMISSION_DENIED" in r.text
            r = await bob.post(
                "/operations/dead-letters/replay", data=form, headers={"X-CSRF-Token": csrf_of(page.text)}
            )
            assert r.status_code == 403 and "PERMISSION_DENIED" in r.text


# -- fast: who may replay, the lag's addresses, the objects' views ----------------------------------------


def test_replay_is_offered_only_with_ops_replay_in_the_letters_tenant() -> None:
    def viewer(scope: frozenset[str] | None) -> Viewer:
        return Viewer(subject="u", via="local", token="t", scopes={Permission.OPS_REPLAY: scope})

    assert may_replay(ANONYMOUS_VIEWER, "acme") and may_replay(ANONYMOUS_VIEWER, "")
    assert may_replay(viewer(None), "") and may_replay(viewer(None), "globex")  # platform-wide
    tenant_admin = viewer(frozenset({"acme"}))
    assert may_replay(tenant_admin, "acme")
    assert not may_replay(tenant_admin, "globex")
    assert not may_replay(tenant_admin, "")  # a letter of no known tenant: platform admins only
    reader = Viewer(subject="r", via="local", token="t", scopes={Permission.OPS_READ: frozenset({"acme"})})
    assert not may_replay(reader, "acme")


async def test_consumer_lag_is_asked_of_every_distinct_address() -> None:
    a, b = grpc.aio.insecure_channel("127.0.0.1:1"), grpc.aio.insecure_channel("127.0.0.1:2")
    try:
        split = {"ingestion": "a", "embedding": "a", "retrieval": "b"}
        channels = {s: (a if split.get(s, "b") == "a" else b) for s in SERVICES}
        addresses = {s: split.get(s, "b") for s in SERVICES}
        backend = Backend(channels, addresses, auth_enabled=False)
        served = {address: services for address, (services, _) in backend.operations_at.items()}
        assert served == {
            "a": ("ingestion", "embedding"),
            "b": ("retrieval", "agent-orchestrator", "guardrail", "evaluation"),
        }
    finally:
        await a.close()
        await b.close()


def test_views_of_objects_the_operator_has_not_touched_yet() -> None:
    rollout = rollout_view(
        {"metadata": {"name": "r"}, "spec": {"bundle": {"name": "m", "version": "1"}, "waves": [50, 100]}}
    )
    assert rollout.phase == "Pending" and rollout.bundle == "m@1"
    assert [(w.number, w.percent, w.state) for w in rollout.waves] == [
        (1, 50, "Pending"),
        (2, 100, "Pending"),
    ]
    drill = drill_view(
        {
            "metadata": {"name": "d"},
            "spec": {"objectives": {"rpoMaxSeconds": 5, "rtoMaxSeconds": 60}},
            "status": {"phase": "Running", "rpoSeconds": None, "rtoSeconds": 12.5},
        }
    )
    assert drill.verdict == "running" and drill.timeline == ()
    assert drill.rpo.met is None and drill.rto.met is True and drill.rto.target == 60.0


# -- Kubernetes: a real API server with the operator's CRDs ------------------------------------------------


def _binary(name: str) -> str | None:
    local = ROOT / ".tools" / "bin" / name
    return str(local) if local.exists() else shutil.which(name)


@pytest.fixture(scope="module")
def kubeconfig() -> Iterator[Path]:
    """A real kube-apiserver (tests/infra/kube.sh, as the operator tier) with the CRDs established;
    ``ISTHMUS_TEST_KUBECONFIG`` points at one you run."""
    from kubernetes import client, config

    given = os.environ.get("ISTHMUS_TEST_KUBECONFIG")
    data: Path | None = None
    if given:
        path = Path(given)
    else:
        if _binary("kube-apiserver") is None:
            missing_tool("kube-apiserver is not built: run tools/tools.d/kube-apiserver.sh (needs Go)")
        if _binary("etcd") is None:
            missing_tool("etcd is not installed: apt-get install etcd-server (or run tools/install-tools.sh)")
        data = Path(tempfile.mkdtemp(prefix="isthmus-console-kube-"))
        proc = subprocess.run(
            ["bash", str(KUBE_SH), "up", "--dir", str(data)], capture_output=True, text=True, timeout=180
        )
        if proc.returncode != 0:
            pytest.fail(f"could not start the API server: {proc.stderr[-3000:]}", pytrace=False)
        path = Path(proc.stdout.strip().splitlines()[-1])
    try:
        api = config.new_client_from_config(config_file=str(path))
        ext = client.ApiextensionsV1Api(api)
        for crd_file in sorted(CRDS.glob("*.yaml")):
            crd = yaml.safe_load(crd_file.read_text())
            try:
                ext.create_custom_resource_definition(crd)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                conds = ext.read_custom_resource_definition(crd["metadata"]["name"]).status.conditions or []
                if any(c.type == "Established" and c.status == "True" for c in conds):
                    break
                time.sleep(0.2)
            else:
                pytest.fail(f"CRD {crd['metadata']['name']} not established")
        api.close()
        yield path
    finally:
        if data is not None:
            subprocess.run(
                ["bash", str(KUBE_SH), "down", "--dir", str(data)], capture_output=True, timeout=60
            )


ROLLOUT_STATUS = {
    "phase": "Progressing",
    "message": "wave 2 of 3 applied",
    "currentWave": 2,
    "currentPercent": 50,
    "baseline": {"edge-a": "", "edge-b": "", "edge-c": ""},
    "waves": [
        {
            "number": 1,
            "percent": 10,
            "state": "Passed",
            "appliedAt": "2026-12-07T09:00:00Z",
            "workloads": ["edge-a"],
            "gates": [
                {
                    "gate": "maxNdcgDrop",
                    "metric": "ndcg@10",
                    "baseline": 0.81,
                    "observed": 0.8,
                    "threshold": 0.05,
                    "regression": 0.01,
                    "passed": True,
                }
            ],
        },
        {
            "number": 2,
            "percent": 50,
            "state": "Applied",
            "appliedAt": "2026-12-07T09:10:00Z",
            "workloads": ["edge-a", "edge-b"],
            "gates": [],
        },
    ],
}

DRILL_STATUS = {
    "phase": "Failed",
    "message": "objectives missed",
    "startedAt": "2026-12-07T08:00:00Z",
    "faultAt": "2026-12-07T08:00:05Z",
    "failoverAt": "2026-12-07T08:00:20Z",
    "recoveredAt": "2026-12-07T08:01:40Z",
    "finishedAt": "2026-12-07T08:02:00Z",
    "step": 5,
    "rpoSeconds": 1.5,
    "rpoDocuments": 3,
    "rtoSeconds": 95.0,
    "timeline": [
        {"time": "2026-12-07T08:00:00Z", "action": "start", "region": "eu", "detail": "running region-loss"},
        {"time": "2026-12-07T08:00:05Z", "action": "kill-region", "region": "eu", "detail": "scaled to 0"},
        {"time": "2026-12-07T08:00:20Z", "action": "move-primary", "region": "us", "detail": "tenant acme"},
        {"time": "2026-12-07T08:02:00Z", "action": "finish", "region": "", "detail": "objectives missed"},
    ],
    "report": {
        "summary": "region-loss eu → us: RPO 1.5 s (3 documents) (max 5 s), RTO 95 s (max 60 s); "
        "objectives missed: RTO 95 s > rtoMaxSeconds 60",
        "objectivesMet": False,
        "notes": [],
    },
}


def _daemonset(api: Any, namespace: str, name: str, bundle: str, ready: int, desired: int) -> None:
    """A DaemonSet of the edge pool, its status written as the DaemonSet controller would."""
    from kubernetes import client

    apps = client.AppsV1Api(api)
    labels = {"pool": "edge", "app": name}
    template_meta: dict[str, Any] = {"labels": labels}
    if bundle:
        template_meta["annotations"] = {"isthmus.dev/model-bundle": bundle}
    apps.create_namespaced_daemon_set(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": template_meta,
                    "spec": {"containers": [{"name": "svc", "image": "isthmus:test"}]},
                },
            },
        },
    )
    apps.patch_namespaced_daemon_set_status(
        name,
        namespace,
        {
            "status": {
                "currentNumberScheduled": desired,
                "desiredNumberScheduled": desired,
                "numberMisscheduled": 0,
                "numberReady": ready,
            }
        },
    )


def _create_with_status(
    api: Any, plural: str, namespace: str, body: dict[str, Any], status: dict[str, Any]
) -> None:
    """Create the object, then write its status subresource as the operator does (merge patch)."""
    from kubernetes import client

    custom = client.CustomObjectsApi(api)
    custom.create_namespaced_custom_object("isthmus.dev", "v1alpha1", namespace, plural, body)
    custom.patch_namespaced_custom_object_status(
        "isthmus.dev",
        "v1alpha1",
        namespace,
        plural,
        body["metadata"]["name"],
        {"status": status},
        _content_type="application/merge-patch+json",
    )


@pytest.mark.slow
async def test_rollouts_and_drills_from_the_kubernetes_api(tmp_path: Path, kubeconfig: Path) -> None:
    from kubernetes import client, config

    namespace = f"console-{uuid.uuid4().hex[:8]}"
    api = config.new_client_from_config(config_file=str(kubeconfig))
    try:
        client.CoreV1Api(api).create_namespace(
            {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}
        )
        _create_with_status(
            api,
            "edgerollouts",
            namespace,
            {
                "apiVersion": "isthmus.dev/v1alpha1",
                "kind": "EdgeRollout",
                "metadata": {"name": "bundle-7"},
                "spec": {
                    "bundle": {"name": "edge-models", "version": "7"},
                    "nodePool": {"matchLabels": {"pool": "edge"}},
                    "waves": [10, 50, 100],
                    "gates": {"maxNdcgDrop": 0.05},
                },
            },
            ROLLOUT_STATUS,
        )
        _create_with_status(
            api,
            "failoverdrills",
            namespace,
            {
                "apiVersion": "isthmus.dev/v1alpha1",
                "kind": "FailoverDrill",
                "metadata": {"name": "eu-loss"},
                "spec": {
                    "scenario": "region-loss",
                    "tenants": ["acme"],
                    "regions": {"primary": "eu", "secondary": "us"},
                    "objectives": {"rpoMaxSeconds": 5, "rtoMaxSeconds": 60},
                },
            },
            DRILL_STATUS,
        )
        _daemonset(api, namespace, "edge-a", "edge-models@7", ready=2, desired=2)
        _daemonset(api, namespace, "edge-b", "edge-models@7", ready=1, desired=3)
        _daemonset(api, namespace, "edge-c", "", ready=4, desired=4)
    finally:
        api.close()

    async with (
        platform(tmp_path, kube_namespace=namespace, kubeconfig=str(kubeconfig)) as (_rt, url),
        httpx.AsyncClient(base_url=url, timeout=30) as http,
    ):
        page = await http.get("/operations")
        assert page.status_code == 200 and 'hx-get="/operations/kube"' in page.text
        assert "not configured" not in page.text
        r = await http.get("/operations/kube")
        assert r.status_code == 200, r.text
        body = r.text
        assert 'role="alert"' not in body, body
        # the rollout: its waves (the third not applied yet), their workloads and the gates' verdicts
        assert "bundle-7" in body and "edge-models@7" in body and "Progressing" in body
        waves = re.findall(
            r'<th scope="row">(\d)</th>\s*<td>(\d+) %</td>\s*<td><span class="badge[^"]*">(\w+)<', body
        )
        assert waves == [("1", "10", "Passed"), ("2", "50", "Applied"), ("3", "100", "Pending")]
        # each wave's workloads with their ready pods and the bundle their pods carry
        assert "<code>edge-a</code> (2/2 pods ready) · edge-models@7" in body
        assert "<code>edge-b</code> (1/3 pods ready) · edge-models@7" in body
        assert "edge-c" not in body  # in no wave yet
        assert "maxNdcgDrop: ndcg@10 0.8 vs baseline 0.81" in body and ">passed<" in body
        # the drill: its timeline, RPO and RTO against the objectives, failed
        assert "eu-loss" in body and 'data-verdict="fail"' in body
        assert 'data-objective="RPO">1.5 s (3 documents)' in body
        assert 'data-objective="RTO">95 s' in body
        assert ">met<" in body and ">missed<" in body  # RPO met, RTO missed
        for action in ("start", "kill-region", "move-primary", "finish"):
            assert f"<td>{action}</td>" in body
        assert "2026-12-07T08:00:05Z" in body
