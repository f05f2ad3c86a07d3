"""Prometheus metrics: one function per event the code reports, and the /metrics exposition.

Counters and histograms live in prometheus_client's default registry. Under
gunicorn (several worker processes) set PROMETHEUS_MULTIPROC_DIR to an empty
directory before the app is imported (gunicorn.conf.py does it): every process
then writes its samples there and /metrics adds them up. Worker and clock
processes on the same host given the same directory are added up too.

Queue depth, oldest queued age, inbox backlog and dead letters are read from the
database at scrape time, so they are right whichever process serves /metrics.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)

WEBHOOKS = Counter(
    "deskpilot_webhooks_received", "Webhook deliveries received, by helpdesk and outcome",
    ["helpdesk", "outcome"],
)
DECISIONS = Counter(
    "deskpilot_decisions", "Tickets decided by the engine, by helpdesk and whether anything changed",
    ["helpdesk", "changed"],
)
WRITES = Counter(
    "deskpilot_writes", "Changes the bot wrote to tickets, by helpdesk and action type",
    ["helpdesk", "action"],
)
VENDOR_REQUESTS = Counter(
    "deskpilot_vendor_requests", "Helpdesk API requests, by helpdesk, method and HTTP status",
    ["helpdesk", "method", "status"],
)
RATE_LIMIT_WAITS = Counter(
    "deskpilot_rate_limit_waits", "Waits for a helpdesk rate limit (429 Retry-After)", ["helpdesk"],
)
RATE_LIMIT_SECONDS = Counter(
    "deskpilot_rate_limit_wait_seconds", "Seconds spent waiting for helpdesk rate limits", ["helpdesk"],
)
BREACHES = Counter(
    "deskpilot_breaches", "SLA targets that turned breached, by helpdesk and target", ["helpdesk", "target"],
)
SWEEP_SECONDS = Histogram(
    "deskpilot_sweep_duration_seconds", "Duration of one due-time sweep", ["helpdesk"],
    buckets=DURATION_BUCKETS,
)
RECONCILE_SECONDS = Histogram(
    "deskpilot_reconcile_duration_seconds", "Duration of one reconciliation run", ["helpdesk"],
    buckets=DURATION_BUCKETS,
)
LAST_SWEEP = Gauge(
    "deskpilot_last_sweep_timestamp_seconds", "When the last due-time sweep ended (Unix time)", ["helpdesk"],
    multiprocess_mode="max",
)
LAST_RECONCILE = Gauge(
    "deskpilot_last_reconcile_timestamp_seconds", "When the last reconciliation ended (Unix time)",
    ["helpdesk"], multiprocess_mode="max",
)
RULES_RELOADS = Counter(
    "deskpilot_rules_reloads", "Rule file (re)loads, by outcome (ok, error)", ["outcome"],
)


def _safe(fn: Callable[..., None]) -> Callable[..., None]:
    """Metrics must never break the code they observe."""

    def wrapper(*args: Any, **kwargs: Any) -> None:
        try:
            fn(*args, **kwargs)
        except Exception:  # pragma: no cover - defensive
            log.debug("metric %s failed", fn.__name__, exc_info=True)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_safe
def webhook(helpdesk: str, outcome: str) -> None:
    """A webhook answered: outcome is queued, duplicate, ignored, rejected, invalid or unavailable."""
    WEBHOOKS.labels(helpdesk, outcome).inc()


@_safe
def decision(helpdesk: str, changed: bool) -> None:
    DECISIONS.labels(helpdesk, "true" if changed else "false").inc()


@_safe
def decisions(helpdesk: str, changed: int, unchanged: int) -> None:
    """`decision` for a batch (a sweep's): so many decisions with actions, so many without."""
    for label, count in (("true", changed), ("false", unchanged)):
        if count:
            DECISIONS.labels(helpdesk, label).inc(count)


@_safe
def writes(helpdesk: str, actions: Any) -> None:
    """Count the written actions (engine Actions or dicts with "type") by type."""
    kinds: dict[str, int] = {}
    for action in actions:
        kind = action.get("type") if isinstance(action, dict) else getattr(action, "type", None)
        if kind:
            kinds[kind] = kinds.get(kind, 0) + 1
    for kind, count in kinds.items():  # one labelled child per type, not per action
        WRITES.labels(helpdesk, kind).inc(count)


@_safe
def vendor_request(helpdesk: str, method: str, status: int | str) -> None:
    """One helpdesk API response (status "error" when no response arrived)."""
    VENDOR_REQUESTS.labels(helpdesk, method.upper(), str(status)).inc()
    minute = int(time.time() // 60) * 60
    key = (helpdesk, minute, _status_class(status))
    with _calls_lock:
        _calls[key] = _calls.get(key, 0) + 1


def _status_class(status: int | str) -> str:
    try:
        code = int(status)
    except (TypeError, ValueError):
        return "error"
    return "429" if code == 429 else f"{code // 100}xx"


# Per-minute vendor call counts not yet in the database (see flush_vendor_calls).
_calls: dict[tuple[str, int, str], int] = {}
_calls_lock = threading.Lock()
_last_flush = [0.0]


def flush_vendor_calls(store: Any, every: float = 10.0) -> int:
    """Add this process's vendor call counts to the store (at most every `every` seconds).

    The worker loop and the clock call it; the console's health page sums the last hour.
    Returns how many (helpdesk, minute, status) counts were written.
    """
    if not _calls or time.monotonic() - _last_flush[0] < every:
        return 0
    _last_flush[0] = time.monotonic()
    with _calls_lock:
        pending = dict(_calls)
        _calls.clear()
    try:
        from console import data

        data.add_vendor_calls(store, pending)
    except Exception as err:  # keep the counts for the next flush
        log.warning("vendor call counts not stored: %s", type(err).__name__)
        with _calls_lock:
            for key, n in pending.items():
                _calls[key] = _calls.get(key, 0) + n
        return 0
    return len(pending)


@_safe
def rate_limit_wait(helpdesk: str, seconds: float) -> None:
    RATE_LIMIT_WAITS.labels(helpdesk).inc()
    RATE_LIMIT_SECONDS.labels(helpdesk).inc(max(0.0, float(seconds)))


@_safe
def breach(helpdesk: str, target: str) -> None:
    BREACHES.labels(helpdesk, target).inc()


@_safe
def sweep_duration(helpdesk: str, seconds: float) -> None:
    SWEEP_SECONDS.labels(helpdesk).observe(seconds)
    LAST_SWEEP.labels(helpdesk).set_to_current_time()


@_safe
def reconcile_duration(helpdesk: str, seconds: float) -> None:
    RECONCILE_SECONDS.labels(helpdesk).observe(seconds)
    LAST_RECONCILE.labels(helpdesk).set_to_current_time()


@_safe
def rules_reload(ok: bool) -> None:
    RULES_RELOADS.labels("ok" if ok else "error").inc()


class timed:  # noqa: N801 - used as `with metrics.timed(metrics.sweep_duration, source):`
    """Context manager reporting the block's duration to `report(label, seconds)`."""

    def __init__(self, report: Callable[[str, float], None], label: str) -> None:
        self.report, self.label = report, label

    def __enter__(self) -> timed:
        self.start = time.perf_counter()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.report(self.label, time.perf_counter() - self.start)


class QueueCollector(Collector):
    """Queue depth, oldest queued age, inbox backlog and dead letters, read at scrape time."""

    def __init__(self, store: Any, clock: Callable[[], Any]) -> None:
        self.store, self.clock = store, clock

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from console import data

        try:
            stats = data.queue_stats(self.store, self.clock())
        except Exception as err:
            log.warning("queue metrics unavailable: %s", type(err).__name__)
            return
        yield GaugeMetricFamily("deskpilot_queue_depth", "Tickets queued for the worker (not parked)",
                                value=stats["depth"])
        yield GaugeMetricFamily("deskpilot_queue_oldest_age_seconds",
                                "Age of the oldest queued ticket's work", value=stats["oldest_age"] or 0)
        yield GaugeMetricFamily("deskpilot_inbox_pending", "Webhook events stored, not yet processed",
                                value=stats["inbox_pending"])
        yield GaugeMetricFamily("deskpilot_dead_letters", "Parked tickets (dead letters)",
                                value=stats["dead"])


class _ThisProcess(Collector):
    """The default registry's metrics (this process, with its process_* and python_* ones)."""

    def collect(self) -> Iterator[Any]:
        from prometheus_client import REGISTRY

        yield from REGISTRY.collect()


def exposition(store: Any, clock: Callable[[], Any]) -> tuple[bytes, str]:
    """The Prometheus text for /metrics: this process's (or all processes') samples plus the queue."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        registry = CollectorRegistry()
        registry.register(_ThisProcess())
    registry.register(QueueCollector(store, clock))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def sample(name: str, labels: dict[str, str] | None = None, how: Callable[..., float] = sum) -> float:
    """The current value of a sample in this process (or all processes), 0 when absent; for the console."""
    if os.environ.get(MULTIPROC_ENV):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    else:
        from prometheus_client import REGISTRY as registry
    values = [
        s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in (labels or {}).items())
    ]
    return float(how(values)) if values else 0.0


def timing(report: Callable[[str, float], None], label: str, run: Callable[[], Any],
           store: Any = None) -> Callable[[], Any]:
    """`run` wrapped to report its duration; runs skipped (another process holds the job) are not timed.

    With `store`, this process's vendor call counts are flushed to it after each run.
    """

    def timed_run() -> Any:
        start = time.perf_counter()
        try:
            result = run()
        finally:
            if store is not None:
                flush_vendor_calls(store, every=0)
        if not getattr(result, "skipped", None):
            report(label, time.perf_counter() - start)
        return result

    timed_run.__name__ = getattr(run, "__name__", "run")
    return timed_run
