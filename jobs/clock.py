"""The clock process: periodic due-time sweeps, reconciliation and rule reloads (APScheduler)."""

from __future__ import annotations

import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger

from config import ConfigError, Settings, positive_int
from connectors.base import Helpdesk
from console import metrics
from engine.rulefile import RuleFileError
from jobs.budget import BudgetLimits, WriteBudget
from jobs.quietlog import RateLimitedLog
from jobs.reconcile import Reconciler
from jobs.replan import Replanner
from jobs.runtime import ConnectorCache, RulesHolder, build_connector
from jobs.sweeps import Sweeper
from store import Store

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClockConfig:
    """Intervals and sizes of the clock's jobs, from the environment."""

    sweep_interval: int = 30
    reconcile_interval: int = 180
    rules_reload_interval: int = 10
    reconcile_lookback: int = 3600
    sweep_limit: int = 500
    inbox_retention_days: int = 14
    audit_retention_days: int = 180
    timer_interval: int = 1  # seconds between probes for a next_check that has come

    @classmethod
    def from_settings(cls, settings: Settings) -> ClockConfig:
        """The intervals and sizes as read into the process's Settings (the same variables)."""
        return cls(
            sweep_interval=settings.sweep_interval_seconds,
            reconcile_interval=settings.reconcile_interval_seconds,
            rules_reload_interval=settings.rules_reload_seconds,
            reconcile_lookback=settings.reconcile_lookback_seconds,
            sweep_limit=settings.sweep_limit,
            inbox_retention_days=settings.inbox_retention_days,
            audit_retention_days=settings.audit_retention_days,
        )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> ClockConfig:
        """SWEEP_INTERVAL_SECONDS, RECONCILE_INTERVAL_SECONDS, RULES_RELOAD_SECONDS,
        RECONCILE_LOOKBACK_SECONDS (the first reconciliation's reach) and SWEEP_LIMIT
        (most due tickets per sweep), INBOX_RETENTION_DAYS (processed webhooks
        kept), AUDIT_RETENTION_DAYS (the bot's action log, snapshots and outbox rows of
        finished tickets kept); each a whole number >= 1."""
        defaults = cls()

        def read(name: str, default: int) -> int:
            return positive_int(environ, name, default)

        return cls(
            sweep_interval=read("SWEEP_INTERVAL_SECONDS", defaults.sweep_interval),
            reconcile_interval=read("RECONCILE_INTERVAL_SECONDS", defaults.reconcile_interval),
            rules_reload_interval=read("RULES_RELOAD_SECONDS", defaults.rules_reload_interval),
            reconcile_lookback=read("RECONCILE_LOOKBACK_SECONDS", defaults.reconcile_lookback),
            sweep_limit=read("SWEEP_LIMIT", defaults.sweep_limit),
            inbox_retention_days=read("INBOX_RETENTION_DAYS", defaults.inbox_retention_days),
            audit_retention_days=read("AUDIT_RETENTION_DAYS", defaults.audit_retention_days),
        )


def build_scheduler(
    settings: Settings,
    store: Store,
    rules_holder: RulesHolder,
    *,
    environ: Mapping[str, str] | None = None,
    clock: Callable[[], datetime] | None = None,
) -> BackgroundScheduler:
    """An unstarted scheduler with the sweep, reconciliation and rules-reload jobs.

    Each job runs at most once at a time and missed runs coalesce into one
    (a slow sweep is not followed by a burst of catch-up sweeps). Across
    processes, sweeps and reconciliations also take a database lock, so
    several clocks may run safely. Call `.start()` and `.shutdown()`.
    Intervals and the budget come from `settings` (or, given, from `environ`).
    """
    if environ is None:
        config, limits = ClockConfig.from_settings(settings), BudgetLimits.from_settings(settings)
    else:
        config, limits = ClockConfig.from_env(environ), BudgetLimits.from_env(environ)
    now = clock or (lambda: datetime.now(UTC))
    connectors = ConnectorCache(settings)
    sweeper = Sweeper(store, connectors, lambda: rules_holder.rules, clock=now,
                      budget=WriteBudget(store, limits), limit=config.sweep_limit)
    reconciler = Reconciler(store, _helpdesk(settings, connectors, rules_holder), clock=now,
                            lookback_seconds=config.reconcile_lookback)
    scheduler = BackgroundScheduler(timezone=UTC)
    once = {"max_instances": 1, "coalesce": True, "misfire_grace_time": None}
    started = datetime.now(UTC)
    scheduler.add_job(_logged("sweep",
                              metrics.timing(metrics.sweep_duration, settings.helpdesk, sweeper.sweep,
                                             store)),
                      IntervalTrigger(seconds=config.sweep_interval),
                      id="sweep", name="due-time sweep", next_run_time=started, **once)
    # The timer: every second, one indexed probe for a next_check that came since the last
    # probe (set by any process, through the store); a sweep then runs at once, so a time
    # action lands within about a second of its moment instead of waiting for the next
    # sweep interval. The interval sweep stays, for what the budget deferred.
    timer = DueTimer(store, sweeper.sweep, now)
    scheduler.add_job(_logged("timer", timer.tick), IntervalTrigger(seconds=config.timer_interval),
                      id="timer", name="due-time timer", **once)
    scheduler.add_job(_logged("reconciliation",
                              metrics.timing(metrics.reconcile_duration, settings.helpdesk, reconciler.run,
                                             store)),
                      IntervalTrigger(seconds=config.reconcile_interval),
                      id="reconcile", name="reconciliation", next_run_time=started, **once)
    # RulesHolder switches atomically and keeps the last good rules on an invalid
    # edit, recording the error that /healthz reports.
    scheduler.add_job(rules_holder.reload, IntervalTrigger(seconds=config.rules_reload_interval),
                      kwargs={"force": False}, id="rules-reload", name="rules reload", **once)
    # A new rules version (a reload here or elsewhere, or a restart) re-plans every stored
    # ticket from its snapshot; unchanged rules cost one cursor read.
    replanner = Replanner(store, lambda: rules_holder.rules, clock=now)
    scheduler.add_job(_logged("re-plan", replanner.run),
                      IntervalTrigger(seconds=config.rules_reload_interval),
                      id="replan", name="re-plan on rules change", next_run_time=started, **once)

    def purge_inbox() -> int:
        deleted = store.purge(now() - timedelta(days=config.inbox_retention_days))
        if deleted:
            log.info("purged %d processed webhook events older than %d days", deleted,
                     config.inbox_retention_days)
        return deleted

    scheduler.add_job(purge_inbox, IntervalTrigger(hours=1), id="purge", name="inbox purge", **once)
    scheduler.add_job(audit_retention(store, now, config.audit_retention_days), IntervalTrigger(hours=6),
                      id="audit-retention", name="audit retention", **once)
    scheduler.add_job(resume_owed_writes(store, now), IntervalTrigger(minutes=5), id="outbox-resume",
                      name="owed writes handed back to the worker", **once)
    log.info("clock: sweep every %ds, reconciliation every %ds, rules reload every %ds",
             config.sweep_interval, config.reconcile_interval, config.rules_reload_interval)
    return scheduler


class DueTimer:
    """Runs `sweep` when some ticket's next_check has come since the last tick."""

    def __init__(self, store: Store, sweep: Callable[[], object], now: Callable[[], datetime]) -> None:
        self.store = store
        self.sweep = sweep
        self.now = now
        self.last: datetime | None = None

    def tick(self) -> bool:
        """True when a sweep ran. The first tick only sets the mark: the interval sweep
        that starts with the clock takes what was due before."""
        moment = self.now()
        last, self.last = self.last, moment
        if last is None or not self.store.fell_due(last, moment):
            return False
        self.sweep()
        return True


def audit_retention(store: Store, now: Callable[[], datetime], days: int) -> Callable[[], int]:
    """The clock's job deleting audit rows, snapshots and outbox rows of finished tickets older
    than `days` (open tickets are never purged)."""

    def purge_audit() -> int:
        purged = store.purge_audit(now() - timedelta(days=days))
        if purged.total():
            log.info("audit retention: purged %d action(s), %d snapshot(s), %d outbox write(s) of finished "
                     "tickets older than %d days", purged.actions, purged.snapshots, purged.outbox, days)
        return purged.total()

    return purge_audit


def resume_owed_writes(store: Store, now: Callable[[], datetime], after_seconds: int = 600
                       ) -> Callable[[], int]:
    """The clock's safety net: an outbox write unfinished for `after_seconds` whose ticket has no
    work queued is handed back to the worker, which completes the parts not done."""

    def resume() -> int:
        moment = now()
        owed = store.outbox.orphans(moment - timedelta(seconds=after_seconds))
        by_source: dict[str, list[str]] = {}
        for source, ticket_id in owed:
            by_source.setdefault(source, []).append(ticket_id)
        for source, ids in by_source.items():
            log.warning("%s: %d ticket(s) with an unfinished write and no work queued; handing them back "
                        "to the worker: %s", source, len(ids), ", ".join(ids[:20]))
            store.request_sync(source, ids, moment, "outbox: unfinished write")
        return len(owed)

    return resume


def _helpdesk(settings: Settings, connectors: ConnectorCache, holder: RulesHolder
              ) -> Callable[[], Helpdesk]:
    """The rules' connector; without loaded rules, one without field ids (listing needs none)."""
    fallback: list[Helpdesk] = []

    def get() -> Helpdesk:
        try:
            return connectors(holder.rules)
        except RuleFileError:
            if not fallback:
                fallback.append(build_connector(settings))
            return fallback[0]

    return get


# One line per job and kind of failure per interval (with a count), not a
# traceback every sweep while the database or the helpdesk is down.
_FAILURES = RateLimitedLog(log, interval_seconds=300)


def _logged(name: str, run: Callable[[], object]) -> Callable[[], None]:
    def job() -> None:
        try:
            report = run()
        except Exception as err:  # keep the schedule alive; the next run tries again
            first = (str(err).strip().splitlines() or [""])[0][:300]
            _FAILURES.error(f"{name}:{type(err).__name__}", "%s failed: %s: %s", name,
                            type(err).__name__, first)
            log.debug("%s failed", name, exc_info=True)
            return
        skipped = getattr(report, "skipped", None)
        if skipped:
            log.info("%s skipped: %s", name, skipped)

    job.__name__ = f"{name.replace(' ', '_')}_job"
    return job


def main() -> int:
    """`python -m jobs.clock`: the Procfile's clock process; runs until SIGTERM or SIGINT."""
    from jobs.runtime import build_store, process_settings

    settings = process_settings()
    config = ClockConfig.from_settings(settings)
    store = build_store(settings)
    try:
        scheduler = build_scheduler(settings, store, RulesHolder(settings.rules_path))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    scheduler.start()
    log.info("clock started (sweep every %ds)", config.sweep_interval)
    while not stop.wait(1):
        pass
    log.info("clock stopping: waiting for running jobs")
    scheduler.shutdown(wait=True)
    store.engine.dispose()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
