"""Online evaluation of live traffic, put together: answers and verdicts into the durable series, sampled
answers judged by the scoring worker, answers to evaluation-set questions scored nDCG@10, drops of a
tenant's quality raised as ``QualityDropped`` (once, until recovered), the retention applied.

The bus subscribers of the module call :meth:`OnlineEvaluation.observe_answer` /
:meth:`~OnlineEvaluation.observe_verdict`; a periodic task (``online_check_interval_s``) purges what is
past ``online_retention_days``, looks for drops over ``online_window_s`` against the
``online_baseline_window_s`` before it, and wakes the scoring worker.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import get_args

import structlog

from isthmus_core.contracts.events import AnswerProduced, GuardrailVerdict, QualityDropped, QualityMetric
from isthmus_core.errors import ConfigurationError, IsthmusError
from isthmus_evaluation.datasets import dataset_under_root, load_beir
from isthmus_evaluation.drops import DropKey, Summary, check_drops
from isthmus_evaluation.online import EvalSet, eval_set_scores
from isthmus_evaluation.online_scoring import SampleScorer
from isthmus_evaluation.online_store import MetricWindow, OnlineStore, Window, micros
from isthmus_evaluation.settings import EvaluationSettings

log = structlog.get_logger(__name__)

QUALITY_METRICS = frozenset(get_args(QualityMetric))

Clock = Callable[[], datetime]


def _utcnow() -> datetime:
    return datetime.now(UTC)


def check_watched_metrics(s: EvaluationSettings) -> None:
    """Every metric ``online_max_drop`` / ``online_tenant_max_drop`` names is one a drop can be raised
    for (``QualityDropped.metric``); else :class:`ConfigurationError` at start."""
    named = set(s.online_max_drop) | {m for own in s.online_tenant_max_drop.values() for m in own}
    unknown = sorted(named - QUALITY_METRICS)
    if unknown:
        raise ConfigurationError(
            f"[evaluation] online_max_drop / online_tenant_max_drop name metrics {unknown} that online "
            f"evaluation does not watch; the metrics are {sorted(QUALITY_METRICS)}"
        )


def load_eval_sets(root: Path | None, sets: Mapping[str, str]) -> dict[str, EvalSet]:
    """The evaluation sets of ``online_eval_sets`` (tenant -> dataset directory under ``datasets_root``),
    read at start: a missing or malformed set is a :class:`ConfigurationError` naming its tenant."""
    out: dict[str, EvalSet] = {}
    for tenant, relative in sorted(sets.items()):
        try:
            ds = load_beir(dataset_under_root(root, relative))
        except IsthmusError as exc:
            raise ConfigurationError(f"[evaluation] online_eval_sets[{tenant!r}]: {exc}") from exc
        out[tenant] = EvalSet.of(ds.name, ds.queries, ds.qrels)
    return out


class OnlineEvaluation:
    def __init__(
        self,
        store: OnlineStore,
        settings: EvaluationSettings,
        publish_drop: Callable[[QualityDropped], Awaitable[None]],
        *,
        scorer: SampleScorer | None = None,
        eval_sets: Mapping[str, EvalSet] | None = None,
        region: str = "",
        clock: Clock = _utcnow,
    ) -> None:
        check_watched_metrics(settings)
        self.store = store
        self._s = settings
        self._publish = publish_drop
        #: None: samples are recorded, not judged (``online_judge = "none"``)
        self.scorer = scorer
        self._sets = dict(eval_sets or {})
        self._region = region
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def observe_answer(self, ev: AnswerProduced) -> bool:
        """Count an answer (and keep its sample); False for a redelivery."""
        scores = eval_set_scores(ev, self._sets)
        added = await asyncio.to_thread(
            self.store.add_answer, ev, judged=self.scorer is not None, scores=scores
        )
        if added and ev.sample is not None and self.scorer is not None:
            self.scorer.wake()
        return added

    async def observe_verdict(self, ev: GuardrailVerdict) -> bool:
        return await asyncio.to_thread(self.store.add_verdict, ev)

    # -- periodic work --------------------------------------------------------------------------------

    def recent_window(self, now: datetime) -> Window:
        return Window(micros(now - timedelta(seconds=self._s.online_window_s)), micros(now))

    def baseline_window(self, now: datetime) -> Window:
        recent_start = now - timedelta(seconds=self._s.online_window_s)
        start = recent_start - timedelta(seconds=self._s.online_baseline_window_s)
        return Window(micros(start), micros(recent_start))

    async def check_drops(self) -> list[QualityDropped]:
        """Raise the drops of quality found now (and publish those raised but not yet published, e.g.
        before a crash); forget the recovered ones. The events published."""
        now = self._clock()
        recent_q, baseline_q, raised = await asyncio.gather(
            asyncio.to_thread(self.store.quality_by_tenant, self.recent_window(now)),
            asyncio.to_thread(self.store.quality_by_tenant, self.baseline_window(now)),
            asyncio.to_thread(self.store.raised_drops),
        )

        def summaries(q: Mapping[tuple[str, str], MetricWindow]) -> dict[DropKey, Summary]:
            return {
                (tenant, metric, ""): Summary(v.mean, v.n)
                for (tenant, metric), v in q.items()
                if metric in QUALITY_METRICS
            }

        found = check_drops(
            summaries(recent_q),
            summaries(baseline_q),
            set(raised),
            max_drop=self._s.online_max_drop,
            tenant_max_drop=self._s.online_tenant_max_drop,
            min_samples=self._s.online_min_samples,
        )
        for key in found.recovered:
            await asyncio.to_thread(self.store.drop_recovered, *key)
        to_publish = [ev for key, (ev, published) in sorted(raised.items()) if not published]
        since = (now - timedelta(seconds=self._s.online_window_s)).isoformat()  # the recent window's start
        for d in found.raised:
            tenant, metric, bundle = d.key
            ev = QualityDropped(
                tenant_id=tenant,
                idempotency_key=f"{tenant}/quality-dropped/{metric}/{bundle or '*'}/{since}",
                occurred_at=now,
                metric=metric,  # type: ignore[arg-type]  # checked: in QUALITY_METRICS
                baseline=d.baseline,
                current=d.current,
                drop=d.drop,
                threshold=d.threshold,
                window_seconds=self._s.online_window_s,
                samples=d.samples,
                baseline_samples=d.baseline_samples,
                model_bundle=bundle,
                region=self._region,
            )
            if await asyncio.to_thread(self.store.raise_drop, ev):
                to_publish.append(ev)
        for ev in to_publish:
            await self._publish(ev)
            await asyncio.to_thread(self.store.drop_published, ev.tenant_id, ev.metric, ev.model_bundle)
            log.warning(
                "online quality dropped",
                tenant=ev.tenant_id,
                metric=ev.metric,
                baseline=ev.baseline,
                current=ev.current,
                threshold=ev.threshold,
            )
        return to_publish

    async def purge(self) -> int:
        cutoff = self._clock() - timedelta(days=self._s.online_retention_days)
        return await asyncio.to_thread(self.store.purge_before, cutoff)

    async def tick(self) -> None:
        """One round of the periodic work: retention, drops, the scorer woken (samples left pending)."""
        await self.purge()
        await self.check_drops()
        if self.scorer is not None:
            self.scorer.wake()

    async def _run(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # a bus or store outage: the next round tries again
                log.exception("online evaluation round failed")
            await asyncio.sleep(self._s.online_check_interval_s)

    async def start(self) -> None:
        if self.scorer is not None:
            await self.scorer.start()
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="isthmus-online-evaluation")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self.scorer is not None:
            await self.scorer.stop()
