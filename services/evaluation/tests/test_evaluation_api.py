"""The evaluation servicer's RunEval / RunEvalUpload edges, on a runner whose platform clients are fakes:
RunEval reads only under the configured root; RunEvalUpload parses the streamed files in memory."""

from __future__ import annotations

import json
import re
import tempfile
from collections.abc import AsyncIterator, Iterable
from pathlib import Path
from typing import Any

import pytest

from isthmus.evaluation.v1 import evaluation_pb2 as pb
from isthmus_core.contracts.ids import TenantId
from isthmus_core.errors import (
    AlreadyExists,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
)
from isthmus_core.ports.eval_platform import DocumentHit, EvalPlatform, IndexProgress
from isthmus_core.ports.tenants import InMemoryTenantDirectory
from isthmus_core.store.port import SearchMode
from isthmus_core.testing.eval_platform_conformance import EvalPlatformConformance
from isthmus_evaluation.api import EvaluationServicer
from isthmus_evaluation.online_store import OnlineStore
from isthmus_evaluation.runner import EvalRunner

CORPUS = [
    {"_id": "d1", "title": "Pelicans", "text": "Pelicans scoop fish with their throat pouch."},
    {"_id": "d2", "title": "Marmots", "text": "Marmots hibernate in burrows through the winter."},
    {"_id": "d3", "title": "", "text": "Glaciers carve valleys."},
]
QUERIES = [{"_id": "q1", "text": "marmot winter"}, {"_id": "q2", "text": "pelican pouch"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td2\t1\nq2\td1\t1\n"


def dataset_bytes() -> dict[str, bytes]:
    return {
        "corpus": "".join(json.dumps(d) + "\n" for d in CORPUS).encode(),
        "queries": "".join(json.dumps(q) + "\n" for q in QUERIES).encode(),
        "qrels": QRELS.encode(),
    }


def write_dataset(d: Path) -> Path:
    (d / "qrels").mkdir(parents=True)
    files = dataset_bytes()
    (d / "corpus.jsonl").write_bytes(files["corpus"])
    (d / "queries.jsonl").write_bytes(files["queries"])
    (d / "qrels" / "test.tsv").write_bytes(files["qrels"])
    return d


class FakePlatform:
    """An :class:`EvalPlatform` in dicts (it passes the port's conformance suite): uploads are indexed at
        once, a search ranks the documents by the words they share with the query (BM25: only those sharing
    one; dense and hybrid: all), best first."""

    def __init__(self) -> None:
        self.tenants: dict[str, dict[str, str]] = {}
        self.calls: list[str] = []
        self.searches: list[tuple[SearchMode, bool]] = []

    def _tenant(self, tenant_id: str) -> dict[str, str]:
        if tenant_id not in self.tenants:
            raise NotFound(f"tenant {tenant_id!r} does not exist")
        return self.tenants[tenant_id]

    async def create_tenant(self, tenant_id: TenantId) -> None:
        self.calls.append("create")
        if tenant_id in self.tenants:
            raise AlreadyExists(f"tenant {tenant_id!r} already exists")
        self.tenants[tenant_id] = {}

    async def delete_tenant(self, tenant_id: TenantId) -> None:
        self.calls.append("delete")
        self._tenant(tenant_id)
        del self.tenants[tenant_id]

    async def upload(self, tenant_id: TenantId, document_id: str, filename: str, data: bytes) -> None:
        self._tenant(tenant_id)[document_id] = data.decode()

    async def progress(self, tenant_id: TenantId) -> IndexProgress:
        n = len(self._tenant(tenant_id))
        return IndexProgress(n, 0, n)

    async def search(
        self, tenant_id: TenantId, query: str, mode: SearchMode, top_k: int, *, rerank: bool = False
    ) -> list[DocumentHit]:
        self.searches.append((mode, rerank))
        words = _words(query)
        hits = [
            DocumentHit(doc_id, float(len(words & _words(text))))
            for doc_id, text in self._tenant(tenant_id).items()
        ]
        if mode is SearchMode.BM25:  # lexical: only documents sharing a word; "vector": every document
            hits = [h for h in hits if h.score > 0]
        return sorted(hits, key=lambda h: -h.score)[:top_k]


def _words(text: str) -> set[str]:
    return {w.rstrip("s") for w in re.findall(r"\w+", text.lower())}


class TestFakePlatform(EvalPlatformConformance):
    @pytest.fixture
    def eval_platform(self) -> EvalPlatform:
        return FakePlatform()


@pytest.fixture
def fake() -> FakePlatform:
    return FakePlatform()


def servicer(
    fake: FakePlatform, root: Path | None = None, max_upload_bytes: int = 1 << 20
) -> EvaluationServicer:
    runner = EvalRunner(fake, poll_interval_s=0.0)
    online = OnlineStore(Path(tempfile.mkdtemp()) / "online.sqlite")
    return EvaluationServicer(runner, online, InMemoryTenantDirectory(), root, max_upload_bytes)


async def events(stream: AsyncIterator[pb.EvalEvent]) -> list[pb.EvalEvent]:
    return [ev async for ev in stream]


def report_of(evs: list[pb.EvalEvent]) -> pb.EvalReport:
    [report] = [ev.report for ev in evs if ev.WhichOneof("event") == "report"]
    return report


async def requests(*parts: pb.RunEvalUploadRequest) -> AsyncIterator[pb.RunEvalUploadRequest]:
    for p in parts:
        yield p


def header(name: str = "tiny", modes: Iterable[str] = ("bm25",)) -> pb.RunEvalUploadRequest:
    return pb.RunEvalUploadRequest(header=pb.RunEvalUploadHeader(name=name, modes=list(modes)))


def pieces(size: int = 7) -> list[pb.RunEvalUploadRequest]:
    out = []
    for part, data in dataset_bytes().items():
        out += [pb.RunEvalUploadRequest(**{part: data[i : i + size]}) for i in range(0, len(data), size)]
    return out


# ------------------------------------------------------------------------------------------ RunEval


async def test_run_eval_reads_a_dataset_under_the_root(fake: FakePlatform, tmp_path: Path) -> None:
    write_dataset(tmp_path / "root" / "tiny")
    evs = await events(
        servicer(fake, tmp_path / "root").RunEval(pb.RunEvalRequest(dataset_path="tiny"), None)
    )
    report = report_of(evs)
    assert (report.dataset, report.documents, report.queries) == ("tiny", 3, 2)
    assert report.modes[0].ndcg_at_10 == pytest.approx(1.0)
    assert fake.calls == ["create", "delete"] and fake.tenants == {}


@pytest.mark.parametrize("path", ["../../etc", "../outside", "/etc", "tiny/../../outside"])
async def test_run_eval_refuses_paths_leaving_the_root(fake: FakePlatform, tmp_path: Path, path: str) -> None:
    write_dataset(tmp_path / "root" / "tiny")
    write_dataset(tmp_path / "outside")
    with pytest.raises(InvalidArgument, match="dataset_path"):
        await events(servicer(fake, tmp_path / "root").RunEval(pb.RunEvalRequest(dataset_path=path), None))
    assert fake.calls == []  # refused before any tenant is made


async def test_run_eval_without_a_root_is_a_failed_precondition(fake: FakePlatform, tmp_path: Path) -> None:
    ds = write_dataset(tmp_path / "tiny")
    with pytest.raises(FailedPrecondition, match="datasets_root"):
        await events(servicer(fake).RunEval(pb.RunEvalRequest(dataset_path=str(ds)), None))
    assert fake.calls == []


# ------------------------------------------------------------------------------------ RunEvalUpload


async def test_run_eval_upload_parses_the_streamed_files(fake: FakePlatform) -> None:
    evs = await events(servicer(fake).RunEvalUpload(requests(header("mini"), *pieces()), None))
    report = report_of(evs)
    assert (report.dataset, report.documents, report.queries) == ("mini", 3, 2)
    assert report.tenant_id.startswith("eval-mini-")
    assert report.modes[0].mode == "bm25" and report.modes[0].ndcg_at_10 == pytest.approx(1.0)
    assert fake.tenants == {}  # the throwaway tenant is gone


async def test_each_mode_searches_in_its_search_mode_and_says_whether_it_reranks(fake: FakePlatform) -> None:
    modes = ["bm25", "dense", "hybrid", "hybrid+rerank"]
    evs = await events(servicer(fake).RunEvalUpload(requests(header("mini", modes), *pieces()), None))
    assert [m.mode for m in report_of(evs).modes] == modes
    per_query = len(QUERIES)
    assert fake.searches == [
        *[(SearchMode.BM25, False)] * per_query,
        *[(SearchMode.DENSE, False)] * per_query,
        *[(SearchMode.HYBRID, False)] * per_query,
        *[(SearchMode.HYBRID, True)] * per_query,
    ]


async def test_run_eval_upload_keeps_the_tenant_when_asked(fake: FakePlatform) -> None:
    keep = pb.RunEvalUploadRequest(
        header=pb.RunEvalUploadHeader(name="mini", modes=["bm25"], keep_tenant=True)
    )
    report = report_of(await events(servicer(fake).RunEvalUpload(requests(keep, *pieces()), None)))
    assert set(fake.tenants) == {report.tenant_id} and len(fake.tenants[report.tenant_id]) == 3


@pytest.mark.parametrize(
    ("parts", "error", "message"),
    [
        (lambda: [], InvalidArgument, "empty RunEvalUpload stream"),
        (lambda: [*pieces(), header()], InvalidArgument, "first message of RunEvalUpload must be the header"),
        (lambda: [header(), header(), *pieces()], InvalidArgument, "two headers"),
        (lambda: [header(modes=["bm26"]), *pieces()], InvalidArgument, r"unknown mode\(s\) \['bm26'\]"),
        (lambda: [header(name="../etc"), *pieces()], InvalidArgument, "invalid dataset name"),
        (lambda: [header(), *pieces()[:3]], InvalidArgument, "no queries, qrels bytes"),
    ],
    ids=["empty", "no-header-first", "two-headers", "bad-mode", "bad-name", "missing-files"],
)
async def test_run_eval_upload_refuses_malformed_streams(
    fake: FakePlatform, parts: Any, error: type[Exception], message: str
) -> None:
    with pytest.raises(error, match=message):
        await events(servicer(fake).RunEvalUpload(requests(*parts()), None))
    assert fake.calls == []


async def test_run_eval_upload_over_the_cap_is_resource_exhausted(fake: FakePlatform) -> None:
    total = sum(len(b) for b in dataset_bytes().values())
    with pytest.raises(ResourceExhausted, match="max_upload_bytes"):
        await events(
            servicer(fake, max_upload_bytes=total - 1).RunEvalUpload(requests(header(), *pieces()), None)
        )
    assert fake.calls == []
    assert report_of(
        await events(
            servicer(fake, max_upload_bytes=total).RunEvalUpload(requests(header(), *pieces()), None)
        )
    )
