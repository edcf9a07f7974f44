"""The S3 object store adapter through the real boto3 client against a real S3-compatible HTTP server
(gofakes3, built from the Go module proxy by tools/tools.d/gofakes3.sh): keys, sizes from HeadObject
before the read, missing objects, an unreachable store, and ingestion reading a document by reference."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from isthmus_core.contracts.events import ChunksCreated, DocumentSubmitted
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import InvalidArgument
from isthmus_core.models import BGE_SMALL_EN, bundled_model_dir
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_core.testing.infra import free_port_run, missing_tool, repository_root
from isthmus_ingestion.chunking import Chunker
from isthmus_ingestion.objects import ObjectStoreUnavailable, S3ObjectStore
from isthmus_ingestion.registry import DocumentRegistry, Status
from isthmus_ingestion.service import Ingestion

ACME = TenantId("acme")
BUCKET = "documents"


def _gofakes3() -> Path:
    root = repository_root()
    linked = root / ".tools" / "bin" / "gofakes3" if root else None
    if linked is not None and linked.exists():
        return linked
    on_path = shutil.which("gofakes3")
    if on_path:
        return Path(on_path)
    if root is None or shutil.which("go") is None:
        missing_tool("gofakes3 is not installed and Go is missing to build it (install Go; make test-setup)")
    proc = subprocess.run(
        ["bash", str(root / "tools" / "tools.d" / "gofakes3.sh")], capture_output=True, text=True, timeout=900
    )
    if proc.returncode != 0 or linked is None or not linked.exists():
        missing_tool(f"gofakes3 could not be built: {proc.stderr[-2000:]}")
    return linked


@pytest.fixture(scope="module")
def endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    binary = _gofakes3()
    port = free_port_run(1)
    log = (tmp_path_factory.mktemp("s3") / "gofakes3.log").open("wb")
    proc = subprocess.Popen(
        [str(binary), "-backend", "memory", "-initialbucket", BUCKET, "-host", f"127.0.0.1:{port}"],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"gofakes3 did not listen on {port} (exit {proc.poll()})", pytrace=False)
                time.sleep(0.1)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    """Static keys through the AWS default chain (the environment), as a pod's would be."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "isthmus-test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "isthmus-test-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.mark.usefixtures("credentials")
async def test_an_object_written_and_read_by_reference(endpoint: str) -> None:
    store = S3ObjectStore(BUCKET, prefix="isthmus/", endpoint_url=endpoint, timeout_s=10)
    data = bytes(range(256)) * 4096  # 1 MiB, every byte value
    uri = await store.write(ACME, "annual report.pdf", data)
    assert uri.startswith(f"s3://{BUCKET}/isthmus/acme/") and uri.endswith("/annual_report.pdf")
    assert await store.read(ACME, uri, max_bytes=len(data)) == data
    key = uri.removeprefix(f"s3://{BUCKET}/isthmus/")
    assert await store.read(ACME, key, max_bytes=len(data)) == data  # the store-relative key
    with pytest.raises(InvalidArgument, match=f"{len(data)} bytes, over the limit of {len(data) - 1} bytes"):
        await store.read(ACME, key, max_bytes=len(data) - 1)


@pytest.mark.usefixtures("credentials")
async def test_the_size_comes_from_head_object_before_the_read(endpoint: str) -> None:
    store = S3ObjectStore(BUCKET, endpoint_url=endpoint, timeout_s=10)
    uri = await store.write(ACME, "big.bin", b"x" * 50_000)
    gets: list[str] = []
    store.client().meta.events.register("before-call.s3.GetObject", lambda **kw: gets.append("get"))
    with pytest.raises(InvalidArgument, match="50000 bytes, over the limit of 1000 bytes"):
        await store.read(ACME, uri, max_bytes=1000)
    assert gets == []  # refused from the object's metadata: no byte of it was fetched


@pytest.mark.usefixtures("credentials")
async def test_missing_objects_and_foreign_references_are_refused(endpoint: str) -> None:
    store = S3ObjectStore(BUCKET, endpoint_url=endpoint, timeout_s=10)
    theirs = await store.write(TenantId("other"), "private.txt", b"another tenant's document")
    cases = {
        "acme/nothing-here.pdf": "no such object",
        theirs: "in the event's tenant's space",
        "s3://elsewhere/acme/x.pdf": "only the bucket 'documents'",
        "acme/../other/private.txt": "'..' segments",
    }
    for reference, reason in cases.items():
        with pytest.raises(InvalidArgument, match=reason):
            await store.read(ACME, reference, max_bytes=1000)


@pytest.mark.usefixtures("credentials")
async def test_an_unreachable_store_is_a_transient_failure() -> None:
    port = free_port_run(1)  # nothing listens there
    store = S3ObjectStore(BUCKET, endpoint_url=f"http://127.0.0.1:{port}", timeout_s=2)
    with pytest.raises(ObjectStoreUnavailable, match="the object store failed") as failed:
        await store.read(ACME, "acme/a.pdf", max_bytes=1000)
    assert not failed.value.permanent  # the bus retries it, then dead-letters it


@pytest.mark.usefixtures("credentials")
async def test_ingestion_reads_a_document_by_reference_from_s3(endpoint: str, tmp_path: Path) -> None:
    store = S3ObjectStore(BUCKET, prefix="in/", endpoint_url=endpoint, timeout_s=10)
    text = b"Sailplanes climb in thermals, columns of rising warm air. " * 40
    uri = await store.write(ACME, "thermals.txt", text)
    published: list[ChunksCreated] = []

    async def publish(ev: ChunksCreated) -> None:
        published.append(ev)

    registry = DocumentRegistry(tmp_path / "documents.sqlite")
    chunker = Chunker(bundled_model_dir(BGE_SMALL_EN) / "tokenizer.json", max_tokens=64, overlap_tokens=8)
    core = Ingestion(
        registry,
        chunker,
        InMemoryTenantDirectory([ACME]),
        publish,
        max_bytes=len(text),
        chunks_per_event=8,
        objects=store,
        max_inline_bytes=100,
    )
    try:
        await core.on_document_submitted(
            DocumentSubmitted(
                tenant_id=ACME, idempotency_key="k", document_id="thermals", filename="t.txt", content_uri=uri
            )
        )
        record = registry.get(ACME, "thermals")
        assert record is not None and record.status == Status.CHUNKED and record.size_bytes == len(text)
        assert published and "thermals" in published[0].chunks[0].text
    finally:
        registry.close()
