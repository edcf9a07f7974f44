"""Online metrics: live aggregation of ``answers.produced`` and ``guardrail.verdicts`` events.

Pure and in-memory: the bus subscribers feed events in, the service reads snapshots out. Observation is
idempotent on the event id (redeliveries count once) with a bounded memory of seen ids, and latency
percentiles are taken over a bounded window of the most recent answers.

``guardrail_redactions`` counts redactions that happened: REDACT verdicts of the stages whose verdicts
the platform applies (:data:`APPLIED_REDACTION_STAGES`). The orchestrator searches and generates with the
redacted question (stage ``input``) and returns each REDACTed answer sentence redacted (stage ``output``,
one verdict event per sentence of a streamed output check); ingestion indexes a REDACTed chunk's
redacted text (stage ``chunk``, one verdict event per chunk not allowed). A FLAG (chunks indexed with a
flag) is no redaction; it still counts in ``guardrail_verdicts``.
"""

from __future__ import annotations

from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field

from isthmus_core.contracts.events import AnswerProduced, GuardrailVerdict
from isthmus_core.errors import InvalidArgument
from isthmus_evaluation.metrics import percentile

DEFAULT_LATENCY_WINDOW = 10_000
DEFAULT_SEEN_IDS = 100_000
#: stages whose REDACT verdicts are applied to what the caller gets (see the module docstring)
APPLIED_REDACTION_STAGES = frozenset({"input", "output", "chunk"})


@dataclass(frozen=True)
class OnlineSnapshot:
    #: the tenant the figures are for, ``None`` for all tenants together
    tenant_id: str | None
    answers: int
    blocked_answers: int
    #: over the most recent answers (the latency window); ``None`` before the first answer
    latency_p50_ms: float | None
    latency_p95_ms: float | None
    #: mean number of citations per answer (0.0 before the first answer)
    citations_per_answer: float
    #: answers with at least one citation
    answers_with_citations: int
    guardrail_verdicts: int
    guardrail_blocks: int
    #: REDACT verdicts that were applied (stages in :data:`APPLIED_REDACTION_STAGES`)
    guardrail_redactions: int
    #: stage ("input" | "output" | "chunk") -> number of block verdicts at that stage
    blocks_by_stage: dict[str, int] = field(default_factory=dict)


class _Tally:
    """Counters for one scope (a tenant, or all tenants)."""

    def __init__(self, window: int) -> None:
        self.answers = 0
        self.blocked_answers = 0
        self.citations = 0
        self.answers_with_citations = 0
        self.latencies: deque[float] = deque(maxlen=window)
        self.verdicts = 0
        self.redactions = 0
        self.blocks_by_stage: Counter[str] = Counter()

    def add_answer(self, ev: AnswerProduced) -> None:
        self.answers += 1
        self.blocked_answers += int(ev.blocked)
        self.citations += len(ev.citations)
        self.answers_with_citations += int(bool(ev.citations))
        self.latencies.append(ev.latency_ms)

    def add_verdict(self, ev: GuardrailVerdict) -> None:
        self.verdicts += 1
        if ev.action == "block":
            self.blocks_by_stage[ev.stage] += 1
        elif ev.action == "redact" and ev.stage in APPLIED_REDACTION_STAGES:
            self.redactions += 1

    def snapshot(self, tenant_id: str | None) -> OnlineSnapshot:
        latencies = list(self.latencies)
        return OnlineSnapshot(
            tenant_id=tenant_id,
            answers=self.answers,
            blocked_answers=self.blocked_answers,
            latency_p50_ms=percentile(latencies, 50) if latencies else None,
            latency_p95_ms=percentile(latencies, 95) if latencies else None,
            citations_per_answer=self.citations / self.answers if self.answers else 0.0,
            answers_with_citations=self.answers_with_citations,
            guardrail_verdicts=self.verdicts,
            guardrail_blocks=sum(self.blocks_by_stage.values()),
            guardrail_redactions=self.redactions,
            blocks_by_stage=dict(self.blocks_by_stage),
        )


class OnlineMetrics:
    """Aggregates live answer and guardrail events, overall and per tenant.

    ``latency_window`` bounds the number of recent latencies kept per scope; ``seen_ids`` bounds the memory
    of event ids used to ignore redeliveries (the oldest ids are forgotten first).
    """

    def __init__(
        self, latency_window: int = DEFAULT_LATENCY_WINDOW, seen_ids: int = DEFAULT_SEEN_IDS
    ) -> None:
        if latency_window < 1:
            raise InvalidArgument(f"latency_window must be at least 1, got {latency_window}")
        if seen_ids < 1:
            raise InvalidArgument(f"seen_ids must be at least 1, got {seen_ids}")
        self._window = latency_window
        self._seen_capacity = seen_ids
        self._seen: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._all = _Tally(latency_window)
        self._tenants: dict[str, _Tally] = {}

    def observe_answer(self, ev: AnswerProduced) -> bool:
        """Count an answer; ``False`` (and nothing counted) if this event id was already observed."""
        if not self._first_sighting("answer", ev.event_id):
            return False
        self._all.add_answer(ev)
        self._tenant(ev.tenant_id).add_answer(ev)
        return True

    def observe_verdict(self, ev: GuardrailVerdict) -> bool:
        """Count a guardrail verdict; ``False`` (nothing counted) if this event id was already observed."""
        if not self._first_sighting("verdict", ev.event_id):
            return False
        self._all.add_verdict(ev)
        self._tenant(ev.tenant_id).add_verdict(ev)
        return True

    def snapshot(self, tenant_id: str | None = None) -> OnlineSnapshot:
        """Figures for one tenant (zeros for a tenant never seen), or for all tenants when ``None``."""
        if tenant_id is None:
            return self._all.snapshot(None)
        tally = self._tenants.get(tenant_id)
        return (tally or _Tally(1)).snapshot(tenant_id)

    def tenants(self) -> list[str]:
        """The tenants seen so far, sorted."""
        return sorted(self._tenants)

    def drop_tenant(self, tenant_id: str) -> bool:
        """Forget a deleted tenant's figures (True if it had any); the all-tenants figures keep them,
        as traffic the platform served."""
        return self._tenants.pop(tenant_id, None) is not None

    def _tenant(self, tenant_id: str) -> _Tally:
        tally = self._tenants.get(tenant_id)
        if tally is None:
            tally = self._tenants[tenant_id] = _Tally(self._window)
        return tally

    def _first_sighting(self, kind: str, event_id: str) -> bool:
        key = (kind, event_id)
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        if len(self._seen) > self._seen_capacity:
            self._seen.popitem(last=False)
        return True
