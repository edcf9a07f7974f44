"""Hit and miss counts of the in-process caches on the hot paths, as Prometheus metrics.

A cache is registered by name with a function returning ``(hits, misses, size, maxsize)``; every scrape
reads it, so the cache itself (often in a pure module, e.g. a ``functools.lru_cache``) needs no metrics
code. Exposed: ``isthmus_cache_hits_total``, ``isthmus_cache_misses_total``, ``isthmus_cache_entries``
and ``isthmus_cache_capacity``, labelled ``cache``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

from prometheus_client import REGISTRY
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

CacheInfo = Callable[[], tuple[int, int, int, int]]


class _CacheCollector(Collector):
    def __init__(self) -> None:
        self._caches: dict[str, CacheInfo] = {}
        self._lock = threading.Lock()

    def add(self, name: str, info: CacheInfo) -> None:
        with self._lock:
            self._caches[name] = info

    def collect(self) -> Iterator[Metric]:
        labels = ["cache"]
        hits = CounterMetricFamily("isthmus_cache_hits", "lookups answered from a cache", labels=labels)
        misses = CounterMetricFamily("isthmus_cache_misses", "lookups a cache missed", labels=labels)
        entries = GaugeMetricFamily("isthmus_cache_entries", "entries held by a cache", labels=labels)
        capacity = GaugeMetricFamily("isthmus_cache_capacity", "most entries a cache holds", labels=labels)
        with self._lock:
            caches = dict(self._caches)
        for name, info in sorted(caches.items()):
            h, m, size, maxsize = info()
            hits.add_metric([name], h)
            misses.add_metric([name], m)
            entries.add_metric([name], size)
            capacity.add_metric([name], maxsize)
        yield from (hits, misses, entries, capacity)


_collector: _CacheCollector | None = None
_collector_lock = threading.Lock()


def register_cache(name: str, info: CacheInfo) -> None:
    """Expose cache ``name`` (registering it again replaces the function: modules may be rebuilt)."""
    global _collector
    with _collector_lock:
        if _collector is None:
            _collector = _CacheCollector()
            REGISTRY.register(_collector)
        _collector.add(name, info)
