"""The local drill runner: steady traffic through the regional client while a scenario's steps run.

1. Once both regions serve (gRPC health), the drill tenant is created in both (AlreadyExists is fine)
   and each region gets a *seed* document written directly to it (``drill-<run>-seed-<region>``),
   indexed before traffic starts.
2. A **writer** uploads small unique text documents (``drill-<run>-<n>``, each carrying a unique token) at
   a fixed rate through the regional client — to the tenant's primary of the moment; each attempt lands
   on the timeline (acknowledged or not, which region, latency).
3. A **reader** at a fixed rate searches (or asks, with ``ask``) for the unique token of a document the
   region it is about to read from acknowledged at least ``settle_s`` ago (its seed until there is
   one); success = the call succeeded and found that document. Reads measure availability; what the
   survivor lacks is the RPO's business.
4. The steps run in order (:mod:`isthmus_cli.drill.executor` for faults and heals); each one lands on the
   timeline as a marker. At the first move of the primary to the secondary, the runner lists what the
   secondary holds (INDEXED) — the RPO's "available at failover". AWAIT_RECOVERY waits for a successful
   read served by the region; AWAIT_CATCH_UP waits until both regions hold every document acknowledged
   so far, INDEXED with the same version, content hash and chunk count.
5. Traffic stops; for scenarios that check convergence the runner waits (bounded) for both regions to
   agree on every document, snapshots them, and :func:`isthmus_core.drills.measure.measure` does the
   maths.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from typing import Any

import grpc

from isthmus.agent_orchestrator.v1 import agent_orchestrator_pb2
from isthmus.ingestion.v1 import ingestion_pb2
from isthmus.retrieval.v1 import retrieval_pb2
from isthmus_cli.client import rpc_error_text
from isthmus_cli.drill.executor import HOOKS, DrillFailed, Executor
from isthmus_cli.regional import HealthChange, RegionalClient
from isthmus_core.drills.measure import (
    DocumentRow,
    Mark,
    Marker,
    Measures,
    Read,
    RegionSnapshot,
    Timeline,
    Write,
    measure,
    objectives_missed,
)
from isthmus_core.drills.scenarios import FAULTS, HEALS, Action, Scenario, Step, bind
from isthmus_core.regions import RegionsConfig

INDEXED = ingestion_pb2.DOCUMENT_STATUS_INDEXED


@dataclass(frozen=True, slots=True)
class DrillOptions:
    scenario: Scenario
    tenant: str
    primary: str
    secondary: str
    write_rate: float = 2.0  # uploads per second
    read_rate: float = 5.0  # searches (or asks) per second
    ask: bool = False
    settle_s: float = 2.0  # a document is read only this long after its acknowledgement
    call_deadline_s: float = 5.0  # per write and read
    catch_up_s: float = 120.0  # the final convergence wait
    setup_s: float = 120.0  # tenants and seeds
    rpo_max_s: float | None = None
    rto_max_s: float | None = None
    run_id: str = ""


@dataclass
class DrillResult:
    options: DrillOptions
    run_id: str
    started_at: str
    timeline: Timeline
    measures: Measures
    failure: str = ""  # the step that could not be carried out
    problems: list[str] = field(default_factory=list)  # objectives missed
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failure and not self.problems

    def to_dict(self) -> dict[str, Any]:
        o = self.options
        return {
            "run_id": self.run_id,
            "scenario": o.scenario.name,
            "summary": o.scenario.summary,
            "tenant": o.tenant,
            "primary": o.primary,
            "secondary": o.secondary,
            "started_at": self.started_at,
            "duration_s": round(self.timeline.end, 3),
            "rates": {"writes_per_s": o.write_rate, "reads_per_s": o.read_rate, "ask": o.ask},
            "objectives": {"rpo_max_s": o.rpo_max_s, "rto_max_s": o.rto_max_s},
            "ok": self.ok,
            "failure": self.failure,
            "problems": self.problems,
            "notes": self.notes,
            "measures": self.measures.to_dict(),
            "timeline": {
                "writes": [_plain(w) for w in self.timeline.writes],
                "reads": [_plain(r) for r in self.timeline.reads],
                "markers": [_plain(m) for m in self.timeline.markers],
            },
        }


def _plain(event: Write | Read | Marker) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in event.__slots__:
        value = getattr(event, name)
        out[name] = round(value, 4) if isinstance(value, float) else str(value)
        if isinstance(value, bool):
            out[name] = value
    return out


def token_of(document_id: str) -> str:
    """The word only this document contains (letters and digits: one token for BM25)."""
    return "tok" + "".join(ch for ch in document_id if ch.isalnum())


class Drill:
    def __init__(self, config: RegionsConfig, options: DrillOptions, executor: Executor) -> None:
        self.config = config
        self.o = options
        self.executor = executor
        self.run_id = options.run_id or secrets.token_hex(3)
        self.timeline = Timeline()
        self.seeds: dict[str, str] = {}
        self.acked: dict[str, list[Write]] = {r: [] for r in config.names}
        self.available: set[str] = set()
        self.failed_over = False
        self.notes: list[str] = []
        self._stop = asyncio.Event()
        self._t0 = 0.0
        self._live = False

    # --- time and the timeline -------------------------------------------------------------------------

    def now(self) -> float:
        return asyncio.get_running_loop().time() - self._t0

    def mark(self, kind: Mark, region: str = "", note: str = "") -> None:
        self.timeline.markers.append(Marker(self.now(), kind, region, note))

    def _health(self, change: HealthChange) -> None:
        if not self._live:  # regions coming up during the setup are not part of the drill
            return
        if not change.healthy:
            self.mark(Mark.DETECTION, change.region, f"unhealthy ({change.reason})")
        else:
            self.mark(Mark.STEP, change.region, f"healthy again ({change.reason})")

    # --- the drill -------------------------------------------------------------------------------------

    async def run(self) -> DrillResult:
        self._t0 = asyncio.get_running_loop().time()
        started = datetime.now(UTC).isoformat(timespec="seconds")
        o = self.o
        failure = ""
        snapshots: list[RegionSnapshot] = []
        async with RegionalClient(
            self.config,
            o.tenant,
            primary=o.primary,
            probe_timeout_s=1.0,
            probe_interval_s=0.5,
            on_change=self._health,
        ) as rc:
            try:
                await self._prepare(rc)
            except DrillFailed as exc:
                failure = f"setup: {exc}"
            else:
                failure = await self._steps(rc)
            if not failure and o.scenario.checks_convergence:
                try:
                    snapshots = await self._converged(rc)
                except DrillFailed as exc:
                    failure = str(exc)
        survivor = o.secondary if self._moves_to_secondary() else o.primary
        measures = measure(self.timeline, o.primary, survivor, self.available, snapshots)
        return DrillResult(
            options=o,
            run_id=self.run_id,
            started_at=started,
            timeline=self.timeline,
            measures=measures,
            failure=failure,
            problems=objectives_missed(measures, o.rpo_max_s, o.rto_max_s),
            notes=self.notes,
        )

    async def _steps(self, rc: RegionalClient) -> str:
        """Traffic on while the steps run; the failure ('' when every step was carried out)."""
        traffic = [
            asyncio.create_task(self._writer(rc), name="drill-writer"),
            asyncio.create_task(self._reader(rc), name="drill-reader"),
        ]
        try:
            for step in self.o.scenario.steps:
                await self._step(rc, step)
        except DrillFailed as exc:
            self.mark(Mark.STEP, note=f"drill failed: {exc}")
            return str(exc)
        finally:
            self._stop.set()
            await asyncio.gather(*traffic)
        return ""

    def _moves_to_secondary(self) -> bool:
        return any(
            s.action == Action.MOVE_PRIMARY and bind(s, self.o.primary, self.o.secondary) == self.o.secondary
            for s in self.o.scenario.steps
        )

    async def _prepare(self, rc: RegionalClient) -> None:
        """Both regions serving, the tenant in both, and one indexed seed document per region."""
        o = self.o
        for region in (o.primary, o.secondary):
            await self._until(f"region {region!r} serves (gRPC health)", o.setup_s, partial(rc.probe, region))
        for region in (o.primary, o.secondary):
            stubs = rc.stubs(region)
            try:
                await stubs.retrieval.CreateTenant(
                    retrieval_pb2.CreateTenantRequest(tenant_id=o.tenant), timeout=o.call_deadline_s * 6
                )
            except grpc.aio.AioRpcError as exc:
                if exc.code() != grpc.StatusCode.ALREADY_EXISTS:
                    raise DrillFailed(
                        f"cannot create tenant {o.tenant!r} in region {region!r}: {rpc_error_text(exc)}"
                    ) from None
            seed = f"drill-{self.run_id}-seed-{region}"
            try:
                await stubs.ingestion.Upload(self._parts(seed), timeout=o.call_deadline_s * 6)
            except grpc.aio.AioRpcError as exc:
                raise DrillFailed(
                    f"cannot upload the seed document to region {region!r}: {rpc_error_text(exc)}"
                ) from None
            self.seeds[region] = seed
        await self._until(
            "the seed documents are indexed",
            o.setup_s,
            lambda: self._indexed_everywhere(rc, {r: [s] for r, s in self.seeds.items()}),
        )
        self._t0 = asyncio.get_running_loop().time()  # the timeline starts with the traffic
        self._live = True
        self.mark(Mark.STEP, note="tenant and seeds ready; traffic starts")

    def _parts(self, document_id: str) -> AsyncIterator[ingestion_pb2.UploadRequest]:
        async def parts() -> AsyncIterator[ingestion_pb2.UploadRequest]:
            yield ingestion_pb2.UploadRequest(
                header=ingestion_pb2.UploadHeader(
                    tenant_id=self.o.tenant,
                    filename=f"{document_id}.txt",
                    document_id=document_id,
                    metadata={"drill": self.run_id},
                )
            )
            text = (
                f"Failover drill {self.run_id}, document {document_id}. "
                f"Its unique token is {token_of(document_id)}.\n"
            )
            yield ingestion_pb2.UploadRequest(data=text.encode())

        return parts()

    async def _pace(self, rate: float, last: float) -> float:
        """Wait for the next tick of a fixed-rate loop (no burst to catch up); the tick's loop time."""
        loop = asyncio.get_running_loop()
        nxt = max(last + 1.0 / rate, loop.time())
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stop.wait(), nxt - loop.time())
        return nxt

    async def _writer(self, rc: RegionalClient) -> None:
        tick = asyncio.get_running_loop().time()
        n = 0
        while not self._stop.is_set():
            n += 1
            doc = f"drill-{self.run_id}-{n}"
            region, start = rc.primary, self.now()
            try:
                r = await rc.upload(self._parts(doc), deadline_s=self.o.call_deadline_s)
                w = Write(start, doc, r.region, True, self.now() - start)
                self.acked[r.region].append(w)
            except grpc.aio.AioRpcError as exc:
                w = Write(start, doc, region, False, self.now() - start, rpc_error_text(exc)[:200])
            self.timeline.writes.append(w)
            tick = await self._pace(self.o.write_rate, tick)

    def _target(self, region: str) -> str:
        """The newest document ``region`` acknowledged at least ``settle_s`` ago, else its seed."""
        horizon = self.now() - self.o.settle_s
        for w in reversed(self.acked[region]):
            if w.done <= horizon:
                return w.document_id
        return self.seeds[region]

    async def _reader(self, rc: RegionalClient) -> None:
        tick = asyncio.get_running_loop().time()
        deadline = self.o.call_deadline_s
        while not self._stop.is_set():
            region = rc.read_order()[0]
            target = self._target(region)
            token = token_of(target)
            start = self.now()
            try:
                if self.o.ask:
                    asked = await rc.ask(
                        agent_orchestrator_pb2.AskRequest(
                            tenant_id=self.o.tenant, question=f"Which document carries the token {token}?"
                        ),
                        deadline_s=deadline,
                    )
                    region, found = asked.region, {c.document_id for c in asked.value.citations}
                else:
                    searched = await rc.search(
                        retrieval_pb2.SearchRequest(
                            tenant_id=self.o.tenant, query=token, mode=retrieval_pb2.SEARCH_MODE_BM25, top_k=5
                        ),
                        deadline_s=deadline,
                    )
                    region, found = searched.region, {h.context.document_id for h in searched.value.hits}
                ok = target in found
                r = Read(start, region, ok, self.now() - start, target, "" if ok else "document not found")
            except grpc.aio.AioRpcError as exc:
                r = Read(start, region, False, self.now() - start, target, rpc_error_text(exc)[:200])
            self.timeline.reads.append(r)
            tick = await self._pace(self.o.read_rate, tick)

    # --- steps -----------------------------------------------------------------------------------------

    async def _step(self, rc: RegionalClient, step: Step) -> None:
        o = self.o
        region = bind(step, o.primary, o.secondary)
        action = step.action
        if action in FAULTS:
            self.mark(Mark.FAULT, region, str(action))
            await self.executor.run(action, region)
        elif action in HEALS:
            await self.executor.run(action, region)
            self.mark(Mark.HEAL, region, str(action))
        elif action in HOOKS:  # pragma: no cover - every hook action is a fault or a heal
            await self.executor.run(action, region)
        elif action == Action.MOVE_PRIMARY:
            await self._move_primary(rc, region)
        elif action == Action.OBSERVE:
            self.mark(Mark.STEP, note=f"observe {step.seconds:g} s")
            await asyncio.sleep(step.seconds)
        elif action == Action.AWAIT_RECOVERY:
            since = max((m.t for m in self.timeline.markers if m.kind == Mark.FAULT), default=0.0)
            await self._until(
                f"region {region!r} answers the tenant",
                step.seconds,
                lambda: self._answered(region, since),
            )
            self.mark(Mark.RECOVERY, region, "answered")
        elif action == Action.AWAIT_CATCH_UP:
            wanted = self._acknowledged_so_far()
            await self._until(
                "both regions hold every acknowledged document",
                step.seconds,
                lambda: self._indexed_everywhere(rc, {r: wanted for r in (o.primary, o.secondary)}),
            )
            self.mark(Mark.CATCH_UP, note=f"{len(wanted)} documents in both regions")
        else:  # pragma: no cover - a new Action needs a branch here
            raise DrillFailed(f"step {action} is not known to the local runner")

    async def _move_primary(self, rc: RegionalClient, region: str) -> None:
        o = self.o
        if region == o.secondary and not self.failed_over:
            # the RPO's reference: what the survivor holds at failover (listed just before the move)
            self.available = await self._held(rc, region, within_s=30)
            rc.move_primary(region)
            self.failed_over = True
            self.mark(Mark.FAILOVER, region, "writes move to the secondary")
        else:
            rc.move_primary(region)
            kind = Mark.FAILBACK if region == o.primary else Mark.FAILOVER
            self.mark(kind, region, "writes move")

    async def _answered(self, region: str, since: float) -> bool:
        """A read *started* after ``since`` (the last fault) was answered by ``region``."""
        return any(r.ok and r.region == region and r.t >= since for r in self.timeline.reads)

    def _acknowledged_so_far(self) -> list[str]:
        return [*self.seeds.values(), *(w.document_id for ws in self.acked.values() for w in ws)]

    async def _until(self, what: str, within_s: float, check: Callable[[], Awaitable[bool]]) -> None:
        """Poll ``check()`` every 0.5 s until it is true; DrillFailed past the bound."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        while not await check():
            if loop.time() > deadline:
                raise DrillFailed(f"{what}: not within {within_s:g} s")
            await asyncio.sleep(0.5)

    async def _list(self, rc: RegionalClient, region: str) -> list[ingestion_pb2.Document]:
        resp = await rc.stubs(region).ingestion.ListDocuments(
            ingestion_pb2.ListDocumentsRequest(tenant_id=self.o.tenant), timeout=self.o.call_deadline_s * 2
        )
        return list(resp.documents)

    async def _held(self, rc: RegionalClient, region: str, within_s: float) -> set[str]:
        """The documents ``region`` holds INDEXED (retried while it does not answer, up to ``within_s``)."""
        held: set[str] = set()

        async def listed() -> bool:
            try:
                docs = await self._list(rc, region)
            except grpc.aio.AioRpcError:
                return False
            held.update(d.document_id for d in docs if d.status == INDEXED)
            return True

        await self._until(f"listing the documents of region {region!r}", within_s, listed)
        return held

    async def _indexed_everywhere(self, rc: RegionalClient, wanted: dict[str, list[str]]) -> bool:
        """Every wanted document INDEXED in every region of ``wanted``, the same (version, hash, chunks)."""
        keys: dict[str, set[tuple[int, str, int]]] = {}
        for region, ids in wanted.items():
            try:
                docs = {d.document_id: d for d in await self._list(rc, region)}
            except grpc.aio.AioRpcError:
                return False
            for doc in ids:
                d = docs.get(doc)
                if d is None or d.status != INDEXED:
                    return False
                keys.setdefault(doc, set()).add((d.version, d.content_hash, d.chunk_count))
        return all(len(k) == 1 for k in keys.values())

    async def _converged(self, rc: RegionalClient) -> list[RegionSnapshot]:
        """Wait (bounded) until both regions hold every acknowledged document the same way, then snapshot
        them; past the bound the snapshot is taken anyway and the differences are reported."""
        o = self.o
        wanted = self._acknowledged_so_far()
        try:
            await self._until(
                "final catch-up",
                o.catch_up_s,
                lambda: self._indexed_everywhere(rc, {r: wanted for r in (o.primary, o.secondary)}),
            )
            self.mark(Mark.CATCH_UP, note=f"converged: {len(wanted)} documents")
        except DrillFailed as exc:
            self.notes.append(f"{exc}: the regions are compared as they are")
        snapshots = []
        for region in (o.primary, o.secondary):
            try:
                docs = await self._list(rc, region)
                tenant = await rc.stubs(region).retrieval.GetTenant(
                    retrieval_pb2.GetTenantRequest(tenant_id=o.tenant), timeout=o.call_deadline_s * 2
                )
            except grpc.aio.AioRpcError as exc:
                raise DrillFailed(f"cannot snapshot region {region!r}: {rpc_error_text(exc)}") from None
            rows = tuple(
                DocumentRow(d.document_id, d.version, d.content_hash, d.chunk_count, d.status == INDEXED)
                for d in docs
            )
            snapshots.append(RegionSnapshot(region, rows, tenant.chunk_count))
        return snapshots
