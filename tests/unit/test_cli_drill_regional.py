"""The regional client against two real platforms (two `isthmus run --target all` processes, one per
region): reads fail over when the primary is killed and fail back when it serves again; writes follow
the primary."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from isthmus.ingestion.v1 import ingestion_pb2
from isthmus.retrieval.v1 import retrieval_pb2
from isthmus_cli.regional import HealthChange, RegionalClient
from isthmus_core.regions import parse_regions
from isthmus_core.testing.client import run_cli, upload, wait_indexed
from isthmus_core.testing.cluster import Cluster

pytestmark = pytest.mark.slow

TENANT = "travel"


async def until(condition: object, within_s: float = 60) -> None:
    """Poll ``condition()`` (a bounded wait for a state, not a sleep standing in for one)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within_s
    while not condition():  # type: ignore[operator]
        if loop.time() > deadline:
            raise AssertionError(f"not true within {within_s}s")
        await asyncio.sleep(0.1)


async def parts(text: str, doc: str) -> AsyncIterator[ingestion_pb2.UploadRequest]:
    yield ingestion_pb2.UploadRequest(
        header=ingestion_pb2.UploadHeader(tenant_id=TENANT, filename=f"{doc}.txt", document_id=doc)
    )
    yield ingestion_pb2.UploadRequest(data=text.encode())


async def test_reads_fail_over_and_back_writes_follow_the_primary(tmp_path: Path) -> None:
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
    regions = {name: Cluster(tmp_path / name, "", targets=("all",)) for name in ("a", "b")}
    try:
        for c in regions.values():
            c.start("all")
        for c in regions.values():
            await c.wait_healthy("all")
        for name, c in regions.items():
            async with grpc.aio.insecure_channel(c.endpoints["all"]) as ch:
                from isthmus.retrieval.v1 import retrieval_pb2_grpc

                await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
                    retrieval_pb2.CreateTenantRequest(tenant_id=TENANT)
                )
                # the same document id in both regions, each with its own text: who answered is visible
                await upload(
                    ch,
                    TENANT,
                    "harbour.txt",
                    f"The harbour of region {name} is zephyrine.".encode(),
                    document_id="harbour",
                )
                await wait_indexed(ch, TENANT, ["harbour"])
        config = parse_regions(
            {
                "regions": {n: {"endpoint": c.endpoints["all"]} for n, c in regions.items()},
                "primaries": {TENANT: "a"},
            }
        )
        changes: list[HealthChange] = []
        search = retrieval_pb2.SearchRequest(tenant_id=TENANT, query="zephyrine harbour", top_k=1)

        async with RegionalClient(config, TENANT, probe_interval_s=0.2, on_change=changes.append) as rc:
            assert rc.primary == "a" and rc.read_order() == ["a", "b"]
            got = await rc.search(search)
            assert got.region == "a" and "region a" in got.value.hits[0].context.text

            regions["a"].kill("all", signal.SIGKILL)
            got = await rc.search(search)  # the call to a fails (UNAVAILABLE): retried on b
            assert got.region == "b" and "region b" in got.value.hits[0].context.text
            assert not rc.healthy("a") and rc.read_order() == ["b", "a"]
            assert changes[0].region == "a" and not changes[0].healthy
            doc = await rc.get_document(
                ingestion_pb2.GetDocumentRequest(tenant_id=TENANT, document_id="harbour")
            )
            assert doc.region == "b"

            # writes go to the primary only: a is down, so the upload fails rather than landing in b
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await rc.upload(parts("Written while a is down.", "while-down"), deadline_s=5)
            assert refused.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
            # the CLI with --regions: the answer comes from b while a is down
            regions_toml = tmp_path / "regions.toml"
            regions_toml.write_text(
                "".join(f'[regions.{n}]\nendpoint = "{c.endpoints["all"]}"\n' for n, c in regions.items())
            )
            code, out, err = await run_cli(
                "ask",
                "Which harbour is zephyrine?",
                "--tenant",
                TENANT,
                "--regions",
                str(regions_toml),
                "--json",
            )
            assert code == 0, err
            assert "region b" in json.loads(out)["answer"]

            rc.move_primary("b")
            moved = await rc.upload(parts("Written after the move to b.", "after-move"))
            assert moved.region == "b" and moved.value.document_id == "after-move"

            regions["a"].start("all")
            await regions["a"].wait_healthy("all")
            rc.move_primary("a")
            await until(lambda: rc.healthy("a"))  # the background probe saw a SERVING again
            assert changes[-1].region == "a" and changes[-1].healthy
            got = await rc.search(search)
            assert got.region == "a" and "region a" in got.value.hits[0].context.text
            listed = await rc.list_documents(ingestion_pb2.ListDocumentsRequest(tenant_id=TENANT))
            assert listed.region == "a" and {d.document_id for d in listed.value.documents} == {"harbour"}

            # `isthmus ingest --regions` writes to the tenant's primary (a: the first region by name)
            doc = tmp_path / "docs" / "quay.txt"
            doc.parent.mkdir()
            doc.write_text("The quay of the harbour is bright.")
            code, out, err = await run_cli(
                "ingest", str(doc), "--tenant", TENANT, "--regions", str(regions_toml), "--json"
            )
            assert code == 0, err
            [row] = json.loads(out)
            listed = await rc.list_documents(ingestion_pb2.ListDocumentsRequest(tenant_id=TENANT))
            assert listed.region == "a" and row["document_id"] in {
                d.document_id for d in listed.value.documents
            }
    finally:
        for c in regions.values():
            c.stop_all()
