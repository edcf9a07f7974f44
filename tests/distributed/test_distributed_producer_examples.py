"""The producer examples of docs/events.md, run as a producer would run them, against the all-in-one
platform on a real Kafka with authentication on: each submits a document with its token in the
``authorization`` header, and the document is indexed (found by Search); a record without its token is
dead-lettered with the reason, as docs/events.md describes.

* ``examples/producers/produce_document.py`` (aiokafka and the standard library only);
* ``examples/producers/console-producer.sh`` (Kafka's own console producer). The Kafka tier installs
  the broker's jars from Maven, not the distribution tarball, so its ``bin/kafka-console-producer.sh``
  is recreated here as the distribution's script runs it:
  ``java -cp libs/* org.apache.kafka.tools.ConsoleProducer``.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
import pytest_asyncio

from isthmus.ingestion.v1 import ingestion_pb2 as ing
from isthmus.ingestion.v1 import ingestion_pb2_grpc as ing_grpc
from isthmus.retrieval.v1 import retrieval_pb2, retrieval_pb2_grpc
from isthmus_core.auth.local_issuer import LocalIssuer
from isthmus_core.bus.kafka_tools import read_topic
from isthmus_core.contracts.topics import DOCUMENTS_SUBMITTED
from isthmus_core.testing.client import bearer_channel, wait_indexed
from isthmus_core.testing.cluster import Cluster
from isthmus_core.testing.infra import missing_tool

from .conftest import ROOT

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.asyncio(loop_scope="module")]

TENANT = "producers"
ACCESS = f"""
[platform]
bindings = [{{ principal = "root", role = "platform-admin" }}]

[tenants.{TENANT}]
bindings = [{{ principal = "feeder", role = "writer" }}]
"""
EXAMPLES = ROOT / "examples" / "producers"
KAFKA_VERSION = "4.1.1"  # tests/infra/kafka.sh


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def platform(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[dict[str, Any]]:
    base: Path = tmp_path_factory.mktemp("producers")
    access = base / "access.toml"
    access.write_text(ACCESS)
    key = base / "issuer" / "local-issuer.pem"
    issuer = LocalIssuer(key)
    tokens = {who: issuer.mint(who, groups=[], ttl_s=3600, audience="isthmus") for who in ("root", "feeder")}
    token_file = base / "feeder.jwt"
    token_file.write_text(tokens["feeder"] + "\n")
    env = {
        "ISTHMUS_AUTH": "local",
        "ISTHMUS_AUTH_LOCAL_KEY_FILE": str(key),
        "ISTHMUS_ACCESS_FILE": str(access),
    }
    (base / "platform").mkdir()
    cluster = Cluster(base / "platform", kafka_bootstrap, env, targets=("all",))
    try:
        cluster.start("all")
        await cluster.wait_healthy("all")
        address = cluster.endpoints["all"]
        async with bearer_channel(address, tokens["root"]) as ch:
            await retrieval_pb2_grpc.RetrievalServiceStub(ch).CreateTenant(
                retrieval_pb2.CreateTenantRequest(tenant_id=TENANT), timeout=30
            )
        yield {
            "cluster": cluster,
            "address": address,
            "tokens": tokens,
            "token_file": token_file,
            "base": base,
        }
    finally:
        cluster.stop_all()


async def run(*argv: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        *argv,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env={**os.environ, **(env or {})},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=180)
    return proc.returncode or 0, out.decode(errors="replace"), err.decode(errors="replace")


async def indexed_and_found(p: dict[str, Any], document_id: str, question: str) -> None:
    async with bearer_channel(p["address"], p["tokens"]["feeder"]) as ch:
        await wait_indexed(ch, TENANT, [document_id], within_s=180)
        doc = await ing_grpc.IngestionServiceStub(ch).GetDocument(
            ing.GetDocumentRequest(tenant_id=TENANT, document_id=document_id), timeout=30
        )
        assert doc.chunk_count >= 1
        hits = await retrieval_pb2_grpc.RetrievalServiceStub(ch).Search(
            retrieval_pb2.SearchRequest(tenant_id=TENANT, query=question, top_k=3), timeout=60
        )
    assert any(h.context.document_id == document_id for h in hits.hits), [
        h.context.document_id for h in hits.hits
    ]


async def test_the_python_example_submits_a_document_that_is_indexed(platform: dict[str, Any]) -> None:
    doc = platform["base"] / "gliders.txt"
    doc.write_text("Gliders are aircraft without engines. They stay aloft by soaring in rising thermals.")
    code, out, err = await run(
        sys.executable,
        str(EXAMPLES / "produce_document.py"),
        "--bootstrap",
        platform["cluster"].bootstrap,
        "--tenant",
        TENANT,
        "--file",
        str(doc),
        "--document-id",
        "from-python",
        "--metadata",
        "source=python-example",
        "--token-file",
        str(platform["token_file"]),
    )
    assert code == 0, err
    assert "submitted producers/from-python to isthmus.documents.submitted.v1" in out
    await indexed_and_found(platform, "from-python", "How do gliders stay aloft?")


@pytest.fixture(scope="module")
def console_producer_bin(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bin/ with kafka-console-producer.sh as Apache Kafka's distribution has it, on the cached jars."""
    if shutil.which("java") is None:
        missing_tool("Java is not installed: Kafka's console producer needs it")
    cache = Path(os.environ.get("ISTHMUS_TOOLS_CACHE", Path.home() / ".cache" / "isthmus-tools"))
    libs = cache / f"kafka-{KAFKA_VERSION}" / "libs"
    if not (libs / ".complete").exists():
        missing_tool(f"the Kafka jars are not in {libs} (run `bash tests/infra/kafka.sh jars` or make setup)")
    bin_dir = tmp_path_factory.mktemp("kafka-bin")
    script = bin_dir / "kafka-console-producer.sh"
    script.write_text(
        "#!/usr/bin/env bash\n"
        f'exec java -Xmx512M -cp "{libs}/*" org.apache.kafka.tools.ConsoleProducer "$@"\n'
    )
    script.chmod(0o755)
    return bin_dir


async def test_the_console_producer_example_submits_a_document_that_is_indexed(
    platform: dict[str, Any], console_producer_bin: Path
) -> None:
    doc = platform["base"] / "ridge lift.md"  # a space in the name: the JSON is built by the shell
    doc.write_text(
        '# Ridge lift\n\nRidge lift happens where the wind meets a slope and is "deflected" upward.\n'
    )
    code, out, err = await run(
        "bash",
        str(EXAMPLES / "console-producer.sh"),
        "--bootstrap",
        platform["cluster"].bootstrap,
        "--tenant",
        TENANT,
        "--file",
        str(doc),
        "--document-id",
        "from-console",
        env={
            "KAFKA_HOME": "",
            "PATH": f"{console_producer_bin}:{os.environ.get('PATH', '')}",
            "PRODUCER_TOKEN": platform["tokens"]["feeder"],
        },
    )
    assert code == 0, err
    assert "submitted producers/from-console" in out
    await indexed_and_found(platform, "from-console", "Where does ridge lift happen?")


async def test_a_record_without_a_token_is_dead_lettered_as_docs_events_md_describes(
    platform: dict[str, Any],
) -> None:
    doc = platform["base"] / "unsigned.txt"
    doc.write_text("A record whose producer forgot its token.")
    code, _, err = await run(
        sys.executable,
        str(EXAMPLES / "produce_document.py"),
        "--bootstrap",
        platform["cluster"].bootstrap,
        "--tenant",
        TENANT,
        "--file",
        str(doc),
        "--document-id",
        "unsigned",
        env={"PRODUCER_TOKEN": ""},
    )
    assert code == 0, err  # the broker accepts it: the consumer decides
    dead: list[Any] = []
    for _ in range(240):  # bounded: up to 120 s
        messages, _ = await read_topic(
            platform["cluster"].bootstrap, DOCUMENTS_SUBMITTED.dlq, key_prefix=f"{TENANT}/unsigned"
        )
        dead = list(messages)
        if dead:
            break
        await asyncio.sleep(0.5)
    assert len(dead) == 1
    headers = dead[0].headers
    assert headers["isthmus-error-class"] == "Unauthenticated"
    assert "without a producer token" in headers["isthmus-error-message"]
    assert headers["isthmus-source-topic"] == DOCUMENTS_SUBMITTED.name
    assert headers["isthmus-consumer-group"] == "ingestion"
    assert headers["content-type"] == "application/json"  # the original headers are kept
    assert json.loads(dead[0].value)["document_id"] == "unsigned"  # the original value, unchanged
    async with bearer_channel(platform["address"], platform["tokens"]["feeder"]) as ch:
        with pytest.raises(grpc.aio.AioRpcError) as refused:
            await ing_grpc.IngestionServiceStub(ch).GetDocument(
                ing.GetDocumentRequest(tenant_id=TENANT, document_id="unsigned"), timeout=30
            )
    assert refused.value.code() == grpc.StatusCode.NOT_FOUND
