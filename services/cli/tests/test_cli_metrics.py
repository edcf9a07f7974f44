"""``isthmus metrics`` against the real evaluation servicer over a real gRPC server: the figures of a
window and a model bundle, the answer quality of the sampled answers, bad windows refused before any
call."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner, Result

from isthmus.evaluation.v1 import evaluation_pb2_grpc as pb_grpc
from isthmus_cli import client
from isthmus_cli.commands.metrics import parse_window
from isthmus_cli.main import app
from isthmus_core.contracts.events import AnswerProduced, AnswerSample, Provenance
from isthmus_core.contracts.ids import TenantId
from isthmus_core.grpc.server import GrpcServer
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_evaluation.api import EvaluationServicer
from isthmus_evaluation.online_store import OnlineStore
from isthmus_evaluation.rag_metrics import SampleScores

runner = CliRunner()


@pytest.fixture(autouse=True)
def _no_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for var in (
        "ISTHMUS_TOKEN",
        "ISTHMUS_TOKEN_FILE",
        "ISTHMUS_CONFIG",
        "ISTHMUS_TENANT",
        "ISTHMUS_ENDPOINT",
    ):
        monkeypatch.delenv(var, raising=False)
    yield
    client._BEARER.token, client._BEARER.given = None, False


def answer(answer_id: str, ago: timedelta, bundle: str, latency: float) -> AnswerProduced:
    return AnswerProduced(
        tenant_id="acme",
        idempotency_key=f"acme/{answer_id}",
        question_id=answer_id,
        occurred_at=datetime.now(UTC) - ago,
        latency_ms=latency,
        provenance=Provenance(model_bundle=bundle),
        sample=AnswerSample(question="q", answer="a"),
    )


@pytest.fixture
async def address(tmp_path: Path) -> AsyncIterator[str]:
    store = OnlineStore(tmp_path / "online.sqlite")
    store.add_answer(answer("old", timedelta(days=3), "emb@1", 900.0))
    store.add_answer(answer("new", timedelta(minutes=5), "emb@1", 30.0))
    store.add_answer(answer("other", timedelta(minutes=5), "emb@2", 70.0))
    store.record_scores("acme", "old", SampleScores({"faithfulness": 0.0}))
    store.record_scores("acme", "new", SampleScores({"faithfulness": 0.9}))
    store.record_scores("acme", "other", SampleScores(failure="timeout"))
    runner_: Any = None
    servicer = EvaluationServicer(runner_, store, InMemoryTenantDirectory([TenantId("acme")]))
    server = GrpcServer("127.0.0.1", 0)
    server.add(
        [lambda s: pb_grpc.add_EvaluationServiceServicer_to_server(servicer, s)],
        ["isthmus.evaluation.v1.EvaluationService"],
    )
    await server.start()
    try:
        yield server.address
    finally:
        await server.stop(0)
        store.close()


async def cli(address: str, *args: str) -> Result:
    return await asyncio.to_thread(
        runner.invoke, app, ["metrics", *args, "--endpoint", address], env={"COLUMNS": "200"}
    )


async def test_a_window_and_a_bundle_as_json(address: str) -> None:
    r = await cli(address, "-t", "acme", "--window", "1h", "--bundle", "emb@1", "--json")
    assert r.exit_code == 0, r.output
    out = json.loads(r.stdout)
    assert (out["answers"], out["samples"], out["judge_failures"], out["model_bundle"]) == (1, 1, 0, "emb@1")
    assert out["latency_p50_ms"] == 30.0
    assert out["quality"] == {"faithfulness": {"mean": 0.9, "n": 1, "failures": 0}}
    start = datetime.fromisoformat(out["window_start"])
    assert datetime.fromisoformat(out["window_end"]) - start == timedelta(hours=1)


async def test_everything_kept_as_a_table(address: str) -> None:
    r = await cli(address, "-t", "acme")
    assert r.exit_code == 0, r.output
    text = " ".join(r.stdout.replace("│", " ").split())
    assert "tenant acme, the oldest kept to" in text
    assert "answers 3" in text and "judge_failures 1" in text
    assert "faithfulness 0.450 2 1" in text and "judge failures: timeout 1" in text


async def test_since_and_until(address: str) -> None:
    r = await cli(address, "--since", "-4d", "--until", "-1d", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["answers"] == 1


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--window", "soon"), "is not a window"),
        (("--window", "0h"), "is not a window"),
        (("--window", "1h", "--since", "-2h"), "not both"),
        (("--since", "yesterday"), "is not a time"),
    ],
)
async def test_bad_windows_are_refused(address: str, args: tuple[str, ...], message: str) -> None:
    r = await cli(address, *args)
    assert r.exit_code == 2 and message in " ".join(r.output.replace("│", " ").split())


def test_windows() -> None:
    assert [parse_window(w) for w in ("45s", "30m", "1h", "7d", "2w")] == [45, 1800, 3600, 604800, 1209600]
