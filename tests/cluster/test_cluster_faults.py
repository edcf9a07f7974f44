"""Pod-level faults on a real node, all-in-one shape (one pod, every service, in-process bus, embedded state
on a ReadWriteOnce volume; `Recreate`): the pod's process crashed (SIGKILL from the node, as an OOM kill)
while documents are uploaded and questions asked, and a `helm upgrade` under steady Ask traffic.

What a client is promised, and what is asserted here (figures — recovery time, the upgrade's gap — are
the cluster benchmark's, `python -m isthmus_bench.cluster`):
* every document whose upload was acknowledged ends indexed exactly once (none stuck, none twice: the
  index holds exactly the chunks the registry lists), a client retrying UNAVAILABLE uploads included;
* a question in flight at the crash is answered or fails UNAVAILABLE (retryable), never anything else;
* a 1-replica Recreate upgrade has a gap (the old pod drains, then the new one starts): every call that
  fails during it fails UNAVAILABLE, and the state (documents, tenant, signing key) survives it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from dataclasses import dataclass

import grpc
import pytest

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2 as ao
from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2_grpc as ao_grpc
from isthmus.ingestion.v1 import ingestion_pb2, ingestion_pb2_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.testing.client import bearer_channel, upload, wait_indexed
from isthmus_core.testing.kube_faults import (
    RETRYABLE,
    Traffic,
    crash_pod,
    failures,
    wait_restarted,
)
from isthmus_core.testing.kube_node import KubeNode, isthmus_values
from isthmus_core.testing.kube_platform import install_distributed

pytestmark = [pytest.mark.cluster, pytest.mark.slow, pytest.mark.timeout(1500)]

RELEASE = "flt"
TENANT = "acme"
SELECTOR = f"app.kubernetes.io/instance={RELEASE}"
SEED = (
    b"# Swept wings\n\nThe boundary layer on a swept wing thickens toward the tip because spanwise flow "
    b"carries low-momentum air outboard.\nWing fences and vortex generators limit that spanwise flow.\n"
)
QUESTION = "Why does the boundary layer thicken toward the tip?"


def document(i: int) -> bytes:
    """A small unique Markdown document (unique bytes: no two share a content hash)."""
    return (
        f"# Test panel {i}\n\nPanel {i} of the wind tunnel series was run at Mach 0.{i % 9 + 1} with a "
        f"trip strip at {i + 3} percent chord.\nIts transition point moved aft by {i * 7 % 23 + 1} "
        f"millimetres when the strip was removed, run number {i * 131 + 17}.\n"
    ).encode()


@dataclass(frozen=True)
class Install:
    node: KubeNode
    namespace: str
    address: str
    token: str

    def pod(self) -> str:
        return str(self.node.pods(self.namespace, SELECTOR)[0]["metadata"]["name"])


def _values(image: str, revision: str = "1") -> dict[str, object]:
    return isthmus_values(
        image,
        {
            "auth": {"mode": "local"},
            "access": {"bindings": [{"principal": "me", "role": "platform-admin"}]},
            # a pod template change a `helm upgrade` rolls out (the same as a new image tag would)
            "podAnnotations": {"isthmus.dev/test-revision": revision},
        },
    )


@pytest.fixture(scope="class")
def installed(kube_node: KubeNode, isthmus_image: str) -> Iterator[Install]:
    namespace = f"fault-aio-{int(time.time()) % 100000}"
    kube_node.create_namespace(namespace)
    try:
        kube_node.install(RELEASE, namespace, _values(isthmus_image), timeout_s=300)
        token = kube_node.exec(
            namespace, f"deploy/{RELEASE}-all", "isthmus", "auth", "token", "--subject", "me"
        ).strip()
        install = Install(kube_node, namespace, kube_node.service_address(namespace, f"{RELEASE}-all"), token)

        async def seed() -> None:
            channel = bearer_channel(install.address, token)
            await retrieval_pb2_grpc.RetrievalServiceStub(channel).CreateTenant(
                retrieval_pb2.CreateTenantRequest(tenant_id=TENANT), timeout=30
            )
            uploaded = await upload(channel, TENANT, "wings.md", SEED, document_id="wings")
            await wait_indexed(channel, TENANT, [uploaded.document_id], within_s=120)
            await channel.close()

        asyncio.run(seed())
        yield install
    finally:
        kube_node.delete_namespace(namespace)


async def _ask(channel: grpc.aio.Channel, *, wait: bool = False) -> None:
    """One question, answered with the seed's citation. ``wait``: through a reconnect (the channel waits
    out gRPC's reconnect backoff instead of failing fast; what a client does once told the service is back)."""
    answer = await ao_grpc.AgentOrchestratorServiceStub(channel).Ask(
        ao.AskRequest(tenant_id=TENANT, question=QUESTION), timeout=60 if wait else 30, wait_for_ready=wait
    )
    assert answer.citations and answer.citations[0].document_id == "wings", answer


async def _upload_until_accepted(channel: grpc.aio.Channel, i: int) -> tuple[str, int]:
    """Upload document ``i`` until acknowledged, retrying what the client may retry (UNAVAILABLE: the pod
    was down); the document id and how many attempts failed."""
    failed = 0
    while True:
        try:
            result = await upload(channel, TENANT, f"panel-{i}.md", document(i), document_id=f"panel-{i:03d}")
            return str(result.document_id), failed
        except grpc.aio.AioRpcError as exc:
            assert exc.code() in RETRYABLE, f"panel-{i}: {exc.code()} {exc.details()}"
            failed += 1
            await asyncio.sleep(0.2)


async def _index_matches_registry(channel: grpc.aio.Channel, expected: set[str], within_s: float) -> None:
    """Every expected document indexed once: the registry lists exactly them (plus the seed), all INDEXED
    (waited for, ``within_s``), and the index holds exactly the chunks the registry says they have (no
    chunk lost, none indexed twice)."""
    ingestion = ingestion_pb2_grpc.IngestionServiceStub(channel)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while True:
        docs = await ingestion.ListDocuments(ingestion_pb2.ListDocumentsRequest(tenant_id=TENANT), timeout=30)
        stuck = {
            d.document_id: ingestion_pb2.DocumentStatus.Name(d.status)
            for d in docs.documents
            if d.status != ingestion_pb2.DOCUMENT_STATUS_INDEXED
        }
        if not stuck or loop.time() > deadline:
            break
        await asyncio.sleep(0.5)
    assert {d.document_id for d in docs.documents} == expected | {"wings"}
    assert not stuck, f"acknowledged but never indexed: {stuck}"
    tenant = await retrieval_pb2_grpc.RetrievalServiceStub(channel).GetTenant(
        retrieval_pb2.GetTenantRequest(tenant_id=TENANT), timeout=30
    )
    assert tenant.chunk_count == sum(d.chunk_count for d in docs.documents)


class TestAllInOne:
    """One all-in-one release for these tests (deleted before the Distributed one starts)."""

    def test_a_crash_mid_ingest_and_mid_question_loses_and_duplicates_nothing(
        self, installed: Install
    ) -> None:
        """SIGKILL of the pod's process while a writer uploads documents and two readers ask questions: the
        kubelet restarts the container on the same volume; every acknowledged upload (and every upload the
        writer retried through the outage) ends indexed exactly once, and every question is answered or fails
        UNAVAILABLE."""
        node, ns = installed.node, installed.namespace
        pod = installed.pod()
        total, crash_after = 24, 8

        async def scenario() -> None:
            channel = bearer_channel(installed.address, installed.token)
            asks = Traffic(lambda: _ask(channel), workers=2, pause_s=0.2)
            asks.start()
            accepted: set[str] = set()
            todo = list(range(total))

            enough = asyncio.Event()

            async def writer() -> None:
                while todo:
                    doc_id, _ = await _upload_until_accepted(channel, todo.pop(0))
                    accepted.add(doc_id)
                    if len(accepted) >= crash_after:
                        enough.set()

            # three writers upload back to back; the crash comes while uploads are in flight (and the bus
            # still holds chunks of acknowledged ones)
            writers = [asyncio.create_task(writer()) for _ in range(3)]
            await enough.wait()
            restarts = await asyncio.to_thread(crash_pod, node, ns, pod)
            await asyncio.gather(*writers)
            calls = await asks.stop()
            assert restarts >= 0
            await asyncio.to_thread(wait_restarted, node, ns, pod, restarts)
            # the writer's retries went through the outage: it saw the crash (or the crash came between calls)
            bad = [c for c in failures(calls) if c.code not in RETRYABLE]
            assert not bad, bad[:5]
            assert any(c.code == grpc.StatusCode.OK for c in calls)
            await _index_matches_registry(channel, accepted, within_s=60)
            await _ask(channel, wait=True)  # and the restarted pod answers
            await channel.close()

        asyncio.run(scenario())

    def test_a_recreate_upgrade_under_ask_traffic_fails_only_retryably_and_keeps_the_state(
        self, installed: Install, isthmus_image: str
    ) -> None:
        """`helm upgrade --wait` of the one-replica Recreate pod (a pod template change) while two readers ask
        questions back to back: the old pod drains (readiness NOT_SERVING, in-flight calls finish), the new one
        starts on the same volume. Calls in the gap fail UNAVAILABLE only; afterwards the new pod answers from
        the documents indexed before (its state, and the signing key of the token, survived)."""
        node, ns = installed.node, installed.namespace
        old = installed.pod()

        async def scenario() -> None:
            channel = bearer_channel(installed.address, installed.token)
            asks = Traffic(lambda: _ask(channel), workers=2, pause_s=0.2)
            asks.start()
            await asks.answered.wait()  # traffic flows before the upgrade
            await asyncio.to_thread(
                node.install, RELEASE, ns, _values(isthmus_image, revision="2"), timeout_s=300
            )
            await _ask(channel, wait=True)
            calls = await asks.stop()
            bad = [c for c in failures(calls) if c.code not in RETRYABLE]
            assert not bad, bad[:5]
            assert installed.pod() != old
            await _ask(channel, wait=True)
            await channel.close()

        asyncio.run(scenario())


# --- Distributed shape: Kafka between the services, each its own Deployment ---------------------------------


@dataclass(frozen=True)
class Split:
    node: KubeNode
    namespace: str
    release: str
    addresses: dict[str, str]
    token: str
    image: str
    values: dict[str, object]

    def selector(self, service: str) -> str:
        return f"app.kubernetes.io/instance={self.release},app.kubernetes.io/component={service}"

    def pods(self, service: str) -> list[dict[str, object]]:
        return [p for p in self.node.pods(self.namespace, self.selector(service)) if not _deleting(p)]


def _deleting(pod: dict[str, object]) -> bool:
    metadata = pod["metadata"]
    assert isinstance(metadata, dict)
    return bool(metadata.get("deletionTimestamp"))


def _ready(pod: dict[str, object]) -> bool:
    status = pod["status"]
    assert isinstance(status, dict)
    return any(c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions", []))


@pytest.fixture(scope="module")
def split(kube_node: KubeNode, isthmus_image: str) -> Iterator[Split]:
    namespace = f"fault-dist-{int(time.time()) % 100000}"
    kube_node.create_namespace(namespace)
    try:
        install = install_distributed(kube_node, namespace, isthmus_image)
        yield Split(
            kube_node,
            namespace,
            install.release,
            dict(install.addresses),
            install.token(),
            isthmus_image,
            dict(install.values),
        )
    finally:
        kube_node.delete_namespace(namespace)


async def _seed(split: Split) -> grpc.aio.Channel:
    """The tenant and the seed document (indexed); a channel to the orchestrator's Service."""
    retrieval = bearer_channel(split.addresses["retrieval"], split.token)
    await retrieval_pb2_grpc.RetrievalServiceStub(retrieval).CreateTenant(
        retrieval_pb2.CreateTenantRequest(tenant_id=TENANT), timeout=30
    )
    await retrieval.close()
    ingestion = bearer_channel(split.addresses["ingestion"], split.token)
    uploaded = await upload(ingestion, TENANT, "wings.md", SEED, document_id="wings")
    await wait_indexed(ingestion, TENANT, [uploaded.document_id], within_s=180)
    await ingestion.close()
    return bearer_channel(split.addresses["agent-orchestrator"], split.token)


def _wait_ready(split: Split, service: str, ready: bool, *, within_s: float = 120) -> None:
    """Until every (not deleting) pod of ``service`` has Ready = ``ready``."""
    deadline = time.monotonic() + within_s
    while True:
        pods = split.pods(service)
        if pods and all(_ready(p) == ready for p in pods):
            return
        assert time.monotonic() < deadline, f"{service} pods not Ready={ready} within {within_s}s"
        time.sleep(0.5)


def test_distributed_rolling_upgrade_drops_no_question_and_readiness_follows_a_dependency(
    split: Split,
) -> None:
    """Distributed: (1) a `helm upgrade --wait` that rolls the orchestrator (RollingUpdate, maxUnavailable 0,
    maxSurge 1: the new pod Ready before the old one drains) under Ask traffic fails no call at all;
    (2) retrieval scaled to 0: the orchestrator reports NOT_SERVING (its readiness probe follows its
    dependencies), so Kubernetes takes it out of its Service; retrieval back: it is Ready and answers."""
    node, ns = split.node, split.namespace

    async def scenario() -> None:
        channel = await _seed(split)
        await _ask(channel)
        asks = Traffic(lambda: _ask(channel), workers=2, pause_s=0.2)
        asks.start()
        await asks.answered.wait()
        from isthmus_core.testing.kube_node import merge

        before = {p["metadata"]["name"] for p in split.pods("agent-orchestrator")}  # type: ignore[index]
        # a setting of the orchestrator only: its pod template changes, no other service's does
        rolled = merge(
            split.values, {"services": {"agent-orchestrator": {"settings": {"MAX_QUESTION_CHARS": 2001}}}}
        )
        await asyncio.to_thread(node.install, split.release, ns, rolled, timeout_s=300)
        await _ask(channel, wait=True)
        calls = await asks.stop()
        after = {p["metadata"]["name"] for p in split.pods("agent-orchestrator")}  # type: ignore[index]
        assert after and not after & before, "the orchestrator's pods were replaced"
        assert len(calls) > 10
        assert not failures(calls), failures(calls)[:5]

        deploy = f"deploy/{split.release}-retrieval"
        await asyncio.to_thread(node.kubectl, "-n", ns, "scale", deploy, "--replicas=0")
        await asyncio.to_thread(_wait_ready, split, "agent-orchestrator", False)
        await asyncio.to_thread(node.kubectl, "-n", ns, "scale", deploy, "--replicas=1")
        await asyncio.to_thread(_wait_ready, split, "agent-orchestrator", True, within_s=240)
        await _ask(channel, wait=True)
        await channel.close()

    asyncio.run(scenario())
