"""Corridor's own Prometheus metrics, counted where the work happens.

The registry is served by the worker's metrics endpoint (``corridor.observability``),
after the SDK's own metrics.
"""

from __future__ import annotations

from collections.abc import Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, ProcessCollector

REGISTRY = CollectorRegistry()
"""Corridor's own metrics (the SDK's are exported by its runtime, then appended)."""

ProcessCollector(registry=REGISTRY)

EVENTS_APPENDED = Counter(
    "corridor_events_appended",
    "Events newly stored in the event store by store_events",
    ["event_type"],
    registry=REGISTRY,
)
APPEND_SECONDS = Histogram(
    "corridor_append_seconds",
    "Latency of one store_events append, in seconds",
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)


def record_append(event_types: Iterable[str], appended: int, seconds: float) -> None:
    """Count one ``store_events`` append (called by the activity).

    Args:
        event_types: Types of the events of the batch, in version order.
        appended: How many of them were new (the last ``appended``; 0 on a retry).
        seconds: Wall time of the append.
    """
    APPEND_SECONDS.observe(seconds)
    types = list(event_types)
    for event_type in types[len(types) - appended :] if appended else []:
        EVENTS_APPENDED.labels(event_type=event_type).inc()
