"""Fixtures for the operator tests: a real Kubernetes API server, the CRDs, a real retrieval service, a
fake guardrail service.

``kube_api`` starts kube-apiserver v1.34.2 + etcd once per session (``tests/infra/kube.sh``; binaries from
``tools/tools.d/kube-apiserver.sh``) and applies ``charts/isthmus-operator/crds/``. Without the binaries
the tests that need it skip locally with the reason, and fail under CI=true. ``ISTHMUS_TEST_KUBECONFIG``
points the tests at an API server you already run instead.

``run_operator`` runs the operator in this process with ``kopf.testing.KopfRunner(['run', '-A',
'--standalone'])``, on a fresh registry built by ``isthmus_operator.handlers.register`` with the
dependencies the test injects (a tenant registry: the in-memory fake or the gRPC adapter pointed at
``retrieval_server``, the real retrieval servicer over an embedded store on a loopback port; a policy
applier: the in-memory fake or the gRPC adapter pointed at ``guardrail_server``, a GuardrailService whose
``ApplyPolicyRef`` is the in-memory fake's behind the real gRPC server stack).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import kopf
import pytest
import yaml
from kopf.testing import KopfRunner
from kubernetes import client

from isthmus_core.testing.infra import missing_tool
from isthmus_operator.guardrail import InMemoryPolicyApplier, PolicyApplier
from isthmus_operator.handlers import register
from isthmus_operator.kube import ConfigMapMetricsSource, Kube, MetricsSource, api_client
from isthmus_operator.names import GROUP, VERSION
from isthmus_operator.reconcile import AccessConfig, Dependencies
from isthmus_operator.regional import RegionClients
from isthmus_operator.retrieval import TenantRegistry

ROOT = Path(__file__).resolve().parents[2]
CRDS = ROOT / "charts" / "isthmus-operator" / "crds"
KUBE_SH = ROOT / "tests" / "infra" / "kube.sh"
T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    # the test API server has a self-signed certificate (its kubeconfig: insecure-skip-tls-verify)
    config.addinivalue_line("filterwarnings", "ignore::urllib3.exceptions.InsecureRequestWarning")


def _binary(name: str) -> str | None:
    local = ROOT / ".tools" / "bin" / name
    return str(local) if local.exists() else shutil.which(name)


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 30.0, every: float = 0.2) -> T:
    """Poll ``check`` until it returns something truthy; fail with ``what`` and the last value otherwise."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(every)
    pytest.fail(f"timed out after {timeout:.0f} s waiting for {what}; last seen: {last!r}")


class Cluster:
    """Typed-enough helpers over the official client for the tests (raw dicts in, raw dicts out)."""

    def __init__(self, kubeconfig: Path) -> None:
        self.kubeconfig = kubeconfig
        self.api = api_client(str(kubeconfig))
        self.core = client.CoreV1Api(self.api)
        self.apps = client.AppsV1Api(self.api)
        self.custom = client.CustomObjectsApi(self.api)
        self.ext = client.ApiextensionsV1Api(self.api)

    # custom objects ---------------------------------------------------------------------------------
    def create(self, plural: str, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        return dict(self.custom.create_namespaced_custom_object(GROUP, VERSION, namespace, plural, body))

    def get(self, plural: str, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, plural, name))
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def patch_spec(self, plural: str, namespace: str, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP,
            VERSION,
            namespace,
            plural,
            name,
            {"spec": spec},
            _content_type="application/merge-patch+json",
        )

    def delete(self, plural: str, namespace: str, name: str) -> None:
        self.custom.delete_namespaced_custom_object(GROUP, VERSION, namespace, plural, name)

    def status(self, plural: str, namespace: str, name: str) -> dict[str, Any]:
        obj = self.get(plural, namespace, name) or {}
        return dict(obj.get("status") or {})

    # built-ins --------------------------------------------------------------------------------------
    def configmap(self, namespace: str, name: str) -> dict[str, Any] | None:
        try:
            return self.api.sanitize_for_serialization(self.core.read_namespaced_config_map(name, namespace))
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def put_configmap(self, namespace: str, name: str, data: dict[str, str]) -> None:
        body = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data}
        try:
            self.core.create_namespaced_config_map(namespace, body)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
            self.core.replace_namespaced_config_map(name, namespace, body)

    def daemonset(self, namespace: str, name: str) -> dict[str, Any]:
        return self.api.sanitize_for_serialization(self.apps.read_namespaced_daemon_set(name, namespace))

    def create_daemonset(
        self, namespace: str, name: str, labels: dict[str, str], bundle: str | None = None
    ) -> None:
        template_meta: dict[str, Any] = {"labels": {"app": name}}
        meta: dict[str, Any] = {"name": name, "labels": labels}
        env = [{"name": "LOG_FORMAT", "value": "json"}]
        if bundle is not None:  # as the operator leaves a workload it put ``bundle`` on
            template_meta["annotations"] = {"isthmus.dev/model-bundle": bundle}
            meta["annotations"] = {"isthmus.dev/model-bundle": bundle}
        body = {
            "apiVersion": "apps/v1",
            "kind": "DaemonSet",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": template_meta,
                    "spec": {
                        "nodeSelector": {"isthmus.dev/node-group": name},
                        "containers": [
                            {"name": "model-server", "image": "isthmus:test", "env": env},
                            {"name": "sidecar", "image": "busybox:stable"},
                        ],
                    },
                },
            },
        }
        self.apps.create_namespaced_daemon_set(namespace, body)

    def create_scalable(
        self, namespace: str, kind: str, name: str, labels: dict[str, str], replicas: int
    ) -> None:
        """A Deployment or StatefulSet (nothing runs it: the API server alone has no controllers)."""
        body: dict[str, Any] = {
            "apiVersion": "apps/v1",
            "kind": kind,
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "replicas": replicas,
                "selector": {"matchLabels": {"app": name}},
                "template": {
                    "metadata": {"labels": {"app": name}},
                    "spec": {"containers": [{"name": "main", "image": "isthmus:test"}]},
                },
            },
        }
        if kind == "Deployment":
            self.apps.create_namespaced_deployment(namespace, body)
        else:
            body["spec"]["serviceName"] = name
            self.apps.create_namespaced_stateful_set(namespace, body)

    def create_pod(self, namespace: str, name: str, labels: dict[str, str]) -> None:
        """A pod (never scheduled). The ServiceAccount admission wants the namespace's ``default``
        account, which no controller creates here."""
        try:
            self.core.create_namespaced_service_account(namespace, {"metadata": {"name": "default"}})
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        body = {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {"name": name, "labels": labels},
            "spec": {
                "automountServiceAccountToken": False,
                "containers": [{"name": "main", "image": "isthmus:test"}],
            },
        }
        self.core.create_namespaced_pod(namespace, body)

    def replicas(self, namespace: str) -> dict[str, tuple[int, dict[str, str]]]:
        """name -> (spec.replicas, the drill annotations) of every Deployment and StatefulSet."""
        out = {}
        for items in (
            self.apps.list_namespaced_deployment(namespace).items,
            self.apps.list_namespaced_stateful_set(namespace).items,
        ):
            for w in items:
                notes = {
                    k: v
                    for k, v in (w.metadata.annotations or {}).items()
                    if k.startswith("isthmus.dev/drill")
                }
                out[w.metadata.name] = (w.spec.replicas, notes)
        return out


@pytest.fixture(scope="session")
def kube_api() -> Iterator[Cluster]:
    """A real kube-apiserver with the operator's CRDs applied (Established)."""
    given = os.environ.get("ISTHMUS_TEST_KUBECONFIG")
    data: Path | None = None
    if given:
        kubeconfig = Path(given)
    else:
        if _binary("kube-apiserver") is None:
            missing_tool(
                "kube-apiserver is not built: run tools/tools.d/kube-apiserver.sh (needs Go; ~4-6 min once)"
            )
        if _binary("etcd") is None:
            missing_tool("etcd is not installed: apt-get install etcd-server (or run tools/install-tools.sh)")
        data = Path(tempfile.mkdtemp(prefix="isthmus-kube-"))
        proc = subprocess.run(
            ["bash", str(KUBE_SH), "up", "--dir", str(data)], capture_output=True, text=True, timeout=180
        )
        if proc.returncode != 0:
            pytest.fail(f"could not start the API server: {proc.stderr[-3000:]}", pytrace=False)
        kubeconfig = Path(proc.stdout.strip().splitlines()[-1])
    try:
        cluster = Cluster(kubeconfig)
        for path in sorted(CRDS.glob("*.yaml")):
            crd = yaml.safe_load(path.read_text())
            try:
                cluster.ext.create_custom_resource_definition(crd)
            except client.ApiException as exc:
                if exc.status != 409:
                    raise
                existing = cluster.ext.read_custom_resource_definition(crd["metadata"]["name"])
                crd["metadata"]["resourceVersion"] = existing.metadata.resource_version
                cluster.ext.replace_custom_resource_definition(crd["metadata"]["name"], crd)

            def established(name: str = crd["metadata"]["name"]) -> bool:
                conds = cluster.ext.read_custom_resource_definition(name).status.conditions or []
                return any(c.type == "Established" and c.status == "True" for c in conds)

            wait_for(established, f"CRD {crd['metadata']['name']} to be established")
        yield cluster
    finally:
        if data is not None:
            subprocess.run(
                ["bash", str(KUBE_SH), "down", "--dir", str(data)], capture_output=True, timeout=60
            )


@pytest.fixture
def namespace(kube_api: Cluster) -> str:
    """A fresh namespace per test (no namespace controller runs, so it is never cleaned: the server is)."""
    name = f"op-{uuid.uuid4().hex[:8]}"
    kube_api.core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    return name


class BackgroundLoop:
    """An asyncio loop in a thread: hosts servers the operator (in KopfRunner's own loop) calls."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@pytest.fixture(scope="session")
def background_loop() -> Iterator[BackgroundLoop]:
    bg = BackgroundLoop()
    yield bg
    bg.close()


class RetrievalServer:
    """The real retrieval gRPC servicer over an embedded store, on a loopback port."""

    def __init__(self, bg: BackgroundLoop, data_dir: Path) -> None:
        from isthmus.retrieval.v1 import retrieval_pb2_grpc as pb_grpc
        from isthmus_core.grpc.server import GrpcServer
        from isthmus_retrieval.api import RetrievalServicer
        from isthmus_retrieval.service import Retrieval
        from isthmus_retrieval.store_embedded import EmbeddedStore

        self._bg = bg
        self.deleted_events: list[str] = []

        async def no_embedding(*_: Any, **__: Any) -> Any:
            raise AssertionError("the operator never searches")

        async def no_publish(*_: Any) -> None:
            return None

        async def record_deleted(event: Any) -> None:
            self.deleted_events.append(event.tenant_id)

        async def start() -> tuple[GrpcServer, EmbeddedStore]:
            store = EmbeddedStore(data_dir)
            core = Retrieval(store, no_embedding, no_publish, record_deleted)
            servicer = RetrievalServicer(core, default_top_k=10, default_alpha=0.5)
            server = GrpcServer("127.0.0.1", 0)
            server.add(
                [lambda s: pb_grpc.add_RetrievalServiceServicer_to_server(servicer, s)],
                ["isthmus.retrieval.v1.RetrievalService"],
            )
            await server.start()
            await server.set_serving()
            return server, store

        self._server, self.store = bg.run(start())
        self.endpoint = self._server.address

    def has_tenant(self, tenant_id: str) -> bool:
        return bool(self._bg.run(self.store.has_tenant(tenant_id)))

    def stop(self) -> None:
        async def stop() -> None:
            await self._server.stop(0.5)
            await self.store.close()

        self._bg.run(stop())


@pytest.fixture(scope="session")
def retrieval_server(
    background_loop: BackgroundLoop, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RetrievalServer]:
    server = RetrievalServer(background_loop, tmp_path_factory.mktemp("retrieval"))
    yield server
    server.stop()


class GuardrailServer:
    """A GuardrailService on a loopback port (the real gRPC server stack: its error mapping) whose
    ``ApplyPolicyRef`` is :class:`InMemoryPolicyApplier`'s; it records each call's bearer. The guardrail's
    own servicer is tested with the guardrail; this one serves the operator's side of the contract."""

    def __init__(self, bg: BackgroundLoop) -> None:
        from isthmus.guardrail.v1 import guardrail_pb2 as pb
        from isthmus.guardrail.v1 import guardrail_pb2_grpc as pb_grpc
        from isthmus_core.grpc.server import GrpcServer

        self._bg = bg
        self.store = InMemoryPolicyApplier()
        self.bearers: list[str | None] = []
        outer = self

        class Servicer(pb_grpc.GuardrailServiceServicer):
            async def ApplyPolicyRef(self, request: Any, context: Any) -> Any:
                metadata = dict(context.invocation_metadata() or ())
                outer.bearers.append(metadata.get("authorization"))
                applied = await outer.store.apply(request.tenant_id, request.name, request.version or None)
                return pb.Policy(
                    tenant_id=request.tenant_id,
                    version=applied.version,
                    label=applied.label,
                    source=applied.source,
                    current=True,
                )

        async def start() -> GrpcServer:
            server = GrpcServer("127.0.0.1", 0)
            server.add(
                [lambda s: pb_grpc.add_GuardrailServiceServicer_to_server(Servicer(), s)],
                ["isthmus.guardrail.v1.GuardrailService"],
            )
            await server.start()
            await server.set_serving()
            return server

        self._server = bg.run(start())
        self.endpoint = self._server.address

    def current(self, tenant_id: str) -> tuple[int, str] | None:
        """The tenant's current version and what made it."""
        version = self.store.current.get(tenant_id)
        return None if version is None else (version, self.store.versions[tenant_id][version - 1])

    def stop(self) -> None:
        self._bg.run(self._server.stop(0.5))


@pytest.fixture(scope="session")
def guardrail_server(background_loop: BackgroundLoop) -> Iterator[GuardrailServer]:
    server = GuardrailServer(background_loop)
    yield server
    server.stop()


@pytest.fixture
def run_operator(kube_api: Cluster) -> Callable[..., contextlib.AbstractContextManager[KopfRunner]]:
    """``with run_operator(tenants=...) as runner:`` — the operator in this process, against ``kube_api``
    (``regions={name: RegionClients(...)}``: several regions, e.g. in-memory fakes per region;
    ``access=AccessConfig(...)``: it also renders each namespace's access file; ``policies=``: it applies
    each Tenant's guardrailPolicyRef there; ``metrics=``: where rollouts read their metrics, default the
    ConfigMap source)."""

    @contextlib.contextmanager
    def run(
        tenants: TenantRegistry | None = None,
        *,
        regions: dict[str, RegionClients] | None = None,
        interval: float = 0.5,
        retry_delay: float = 0.5,
        regions_interval: float = 30.0,
        drill_interval: float = 0.2,
        kube: Kube | None = None,
        args: list[str] | None = None,
        access: AccessConfig | None = None,
        policies: PolicyApplier | None = None,
        metrics: MetricsSource | None = None,
    ) -> Iterator[KopfRunner]:
        kube = kube or Kube(api_client(str(kube_api.kubeconfig)))
        deps = Dependencies(
            kube=kube,
            metrics=metrics or ConfigMapMetricsSource(kube),
            tenants=tenants,
            regions=regions or {},
            access=access,
            policies=policies,
        )
        registry = kopf.OperatorRegistry()
        register(
            registry,
            deps,
            rollout_interval_s=interval,
            retry_delay_s=retry_delay,
            regions_interval_s=regions_interval,
            drill_interval_s=drill_interval,
        )
        settings = kopf.OperatorSettings()
        argv = args or ["run", "-A", "--standalone"]
        with KopfRunner(argv, registry=registry, settings=settings, timeout=60) as runner:
            yield runner
        assert runner.exception is None, runner.output[-3000:]
        assert runner.exit_code == 0, runner.output[-3000:]

    return run


@pytest.fixture
def wait() -> Callable[..., Any]:
    """``wait(check, what, timeout=30)``: poll until ``check()`` is truthy, return its value."""
    return wait_for
