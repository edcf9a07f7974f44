"""Online evaluation as Prometheus metrics, read from the store at every scrape (no state to keep in
sync): the figures of the recent window (``online_window_s``, ending at the scrape) per tenant.

* ``isthmus_online_quality{tenant,metric}`` — mean of the metric over the window's scored samples;
* ``isthmus_online_quality_samples{tenant,metric}`` — the samples that mean is over;
* ``isthmus_online_samples{tenant}`` — answers sampled in the window (whatever their state);
* ``isthmus_online_judge_failures{tenant,reason}`` — samples of the window the judge failed on. A gauge,
  not a ``_total`` counter: it is a count over a sliding window, which goes down as well as up;
* ``isthmus_online_samples_pending`` — samples waiting for the judge (all tenants, all time).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import structlog
from prometheus_client import REGISTRY
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from isthmus_evaluation.online_store import OnlineStore, Window, micros

log = structlog.get_logger(__name__)


class OnlineCollector(Collector):
    def __init__(
        self, store: OnlineStore, window_s: int, clock: Callable[[], datetime] = lambda: datetime.now(UTC)
    ) -> None:
        self._store = store
        self._window_s = window_s
        self._clock = clock

    def describe(self) -> Iterator[Metric]:
        """The families, without reading the store (the registry asks at registration)."""
        yield from self._families()

    def collect(self) -> Iterator[Metric]:
        quality, quality_n, samples, failures, pending = self._families()
        now = self._clock()
        window = Window(micros(now - timedelta(seconds=self._window_s)), micros(now))
        try:
            by_metric = self._store.quality_by_tenant(window)
            by_tenant = self._store.samples_by_tenant(window)
            waiting = self._store.pending_count()
        except Exception:  # a scrape never fails for the store: the gauges are just absent
            log.exception("online metrics unreadable")
            return
        for (tenant, metric), v in sorted(by_metric.items()):
            quality.add_metric([tenant, metric], v.mean)
            quality_n.add_metric([tenant, metric], v.n)
        for tenant, (count, reasons) in sorted(by_tenant.items()):
            samples.add_metric([tenant], count)
            for reason, n in sorted(reasons.items()):
                failures.add_metric([tenant, reason], n)
        pending.add_metric([], waiting)
        yield from (quality, quality_n, samples, failures, pending)

    @staticmethod
    def _families() -> tuple[
        GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily, GaugeMetricFamily
    ]:
        quality = GaugeMetricFamily(
            "isthmus_online_quality",
            "mean answer quality of the tenant's sampled answers over the recent window",
            labels=["tenant", "metric"],
        )
        quality_n = GaugeMetricFamily(
            "isthmus_online_quality_samples",
            "scored samples the online quality mean is over",
            labels=["tenant", "metric"],
        )
        samples = GaugeMetricFamily(
            "isthmus_online_samples", "answers sampled for judging in the recent window", labels=["tenant"]
        )
        failures = GaugeMetricFamily(
            "isthmus_online_judge_failures",
            "sampled answers of the recent window the judge failed on, by reason",
            labels=["tenant", "reason"],
        )
        pending = GaugeMetricFamily("isthmus_online_samples_pending", "sampled answers waiting for the judge")
        return quality, quality_n, samples, failures, pending


_registered: OnlineCollector | None = None
_lock = threading.Lock()


def register_online_collector(collector: OnlineCollector) -> None:
    """Expose ``collector`` on the process registry, replacing the one registered before (a module
    built again, in tests)."""
    global _registered
    with _lock:
        if _registered is not None:
            REGISTRY.unregister(_registered)
        REGISTRY.register(collector)
        _registered = collector


def unregister_online_collector(collector: OnlineCollector) -> None:
    global _registered
    with _lock:
        if _registered is collector:
            REGISTRY.unregister(collector)
            _registered = None
