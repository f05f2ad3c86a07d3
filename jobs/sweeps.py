"""Due-time sweeps: re-read tickets whose next check has come, decide, close in bulk, apply the rest."""

from __future__ import annotations

import dataclasses
import logging
import os
import socket
import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from connectors.base import (
    ConfigurationError,
    ConnectorError,
    Helpdesk,
    NotFoundError,
    RateLimitedError,
    RemoteTicket,
    TicketChanges,
    TransientError,
)
from console import metrics
from engine import ownership
from engine.actions import ActionType, exhaustive
from engine.decision import Action, Decision, iso_utc
from engine.evaluate import evaluate
from engine.rulefile import RuleFileError
from engine.ruleset import RuleSet
from engine.ticket import DONE_STATUSES, Event, to_epoch
from jobs.budget import WriteBudget
from jobs.outbox import OutboxWriter, changes_to_dict
from jobs.runtime import collector_held, record_config_error, resolve_helpdesk
from jobs.worker import CONFIG_RETRY_SECONDS, Worker, _action_log, changes_from, ticket_json, utc_now
from store import Claim, Store
from store.outbox import NewWrite

log = logging.getLogger(__name__)

# Zendesk's update_many takes at most 100 ids
# (https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#update-many-tickets);
# Freshdesk documents no bound, so the same size is used.
BULK_SIZE = 100
# Bulk jobs whose store writes share transactions: up to this many chunks of BULK_SIZE are
# recorded before their jobs, and finished and released after them, together (four commits
# for them all instead of four each).
GROUP_CHUNKS = 10
# Groups finished at once on PostgreSQL (their outcome stored, the post-close check, the
# claims released), each on a connection of its own, while the sweep sends the next group.
FINISH_THREADS = 2
# A group smaller than this is applied per ticket: for one or two tickets the
# bulk job costs as many calls, and a per-ticket update is a safe update.
MIN_BULK = 3
# After this many timeouts/5xx in one sweep the helpdesk is taken to be down: the
# remaining due tickets are not read (each read already retried with backoff).
MAX_TRANSIENT_ERRORS = 3
FAILED_READ_DELAY_SECONDS = 60
_CLOSE_ACTIONS = frozenset({ActionType.SET_STATUS, ActionType.ADD_TAGS, ActionType.REPLY, ActionType.NOTE})
# The status a ticket closed over a customer's reply is given back.
REOPEN_STATUS = "open"


@dataclass(frozen=True)
class PlannedAction:
    """One row of a sweep's plan: what happens to a ticket, by which rule, and why."""

    ticket_id: str
    rule: str
    action: str
    why: str
    path: str = ""  # "bulk", "per ticket", or "" when nothing is written
    due: datetime | None = None  # the stored next check that made the ticket due


@dataclass
class SweepReport:
    """What a sweep did (or, with dry_run, would do). Ticket ids in each list."""

    source: str
    dry_run: bool
    skipped: str | None = None
    due: int = 0
    plan: list[PlannedAction] = field(default_factory=list)
    closed: list[str] = field(default_factory=list)  # closed by bulk updates
    applied: list[str] = field(default_factory=list)  # written per ticket (worker code)
    unchanged: list[str] = field(default_factory=list)  # re-read; nothing to write now
    deferred: list[str] = field(default_factory=list)  # no write budget, or not read; still due
    reopened: list[str] = field(default_factory=list)  # closed over a customer reply, then reopened
    failed: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        if self.skipped:
            return f"{self.source} sweep skipped: {self.skipped}"
        verb = "would be" if self.dry_run else "were"
        writes = sum(1 for row in self.plan if row.path)
        if self.dry_run:
            return (f"{self.source} sweep (dry run, nothing changed): {self.due} due ticket(s), "
                    f"{writes} action(s) {verb} taken")
        return (f"{self.source} sweep: {self.due} due, {len(self.closed)} closed in bulk, "
                f"{len(self.applied)} written per ticket, {len(self.unchanged)} unchanged, "
                f"{len(self.deferred)} left due for the next sweep, {len(self.failed)} failed")


class _NotRead(Exception):
    """The sweep stopped reading (rate limit or helpdesk errors); the ticket stays due."""


@dataclass
class _Read:
    claim: Claim | None
    ticket_id: str
    remote: RemoteTicket | None = None
    error: Exception | None = None
    decision: Decision | None = None
    path: str = ""  # "bulk" or "per ticket" once routed
    stored: dict | None = None  # the ticket's stored snapshot, as _read found it
    holds: tuple = ()  # fields an agent set by hand (engine/ownership.py)


def bulk_charges(helpdesk: Any, chunk: list, *, reply: str | None, note: str | None) -> list[tuple[str, int]]:
    """(ticket id, updates) a bulk close of `chunk` costs, as the vendor counts its calls.

    The bulk job is one update call for the whole chunk (up to 100 tickets), carried by
    its first ticket. A separate note is one more bulk call where the connector notes in
    bulk (`notes_in_bulk`), else one call per ticket. A connector that closes and notes
    in one close_many is charged what it says per ticket (bulk_writes_per_ticket).
    """
    if not hasattr(helpdesk, "note_many"):
        units = helpdesk.bulk_writes_per_ticket(reply=reply, note=note)
        return [(r.ticket_id, units) for r in chunk]
    bulk_notes = helpdesk.notes_in_bulk
    out = []
    for n, read in enumerate(chunk):
        units = (1 + (1 if note and bulk_notes else 0)) if n == 0 else 0
        units += 1 if note and not bulk_notes else 0
        out.append((read.ticket_id, units))
    return out


class Sweeper:
    """Finds tickets whose time-based rules are due and acts on them, once, across processes.

    Each due ticket is taken into the work queue already leased to the sweep
    (store.claim_tickets), so no worker or other sweep handles it at the same
    time; a crash leaves leases that expire, and the worker then re-reads and
    re-decides those tickets, which is idempotent: a ticket already solved
    yields no action.

    Args:
        store: the shared database.
        helpdesk: a connector, or a factory building one for a rule set
            (jobs.runtime.ConnectorCache).
        rules: returns the current rules (raises RuleFileError when none are loaded).
        clock: returns the current aware instant.
        budget: the shared write budget; None writes without one.
        limit: most due tickets handled per sweep (the rest stay due for the next).
        fetch_threads: tickets re-read in parallel.
        min_bulk: smallest group of identical closes sent as bulk updates.
    """

    def __init__(
        self,
        store: Store,
        helpdesk: Helpdesk | Callable[[RuleSet], Helpdesk],
        rules: Callable[[], RuleSet],
        *,
        clock: Callable[[], datetime] = utc_now,
        budget: WriteBudget | None = None,
        limit: int = 500,
        fetch_threads: int = 4,
        min_bulk: int = MIN_BULK,
        lease_seconds: int = 600,
        job_wait_seconds: float = 60,
        lock_name: str | None = None,
        worker_id: str | None = None,
    ) -> None:
        self.store = store
        self._helpdesk = helpdesk
        self.rules = rules
        self.clock = clock
        self.budget = budget
        self.limit = limit
        self.fetch_threads = fetch_threads
        self.min_bulk = max(1, min_bulk)
        self.lease_seconds = lease_seconds
        self.job_wait_seconds = job_wait_seconds
        self.lock_name = lock_name
        self.worker_id = worker_id or f"sweep:{socket.gethostname()}:{os.getpid()}"

    def helpdesk(self, rules: RuleSet) -> Helpdesk:
        return resolve_helpdesk(self._helpdesk, rules)

    def sweep(self, *, dry_run: bool = False, limit: int | None = None) -> SweepReport:
        """One sweep. With dry_run, only the plan: no helpdesk writes, no store writes.

        Returns:
            A SweepReport; `plan` lists every due ticket's actions (or why there are none).
        """
        try:
            rules = self.rules()
        except RuleFileError as err:
            return SweepReport(source="?", dry_run=dry_run, skipped=f"no rules loaded ({err})")
        helpdesk = self.helpdesk(rules)
        limit = self.limit if limit is None else limit
        if dry_run:
            return self._plan(helpdesk, rules, limit)
        with self.store.exclusive(self.lock_name or f"sweep:{helpdesk.name}") as held:
            if not held:
                return SweepReport(source=helpdesk.name, dry_run=False,
                                   skipped="another sweep is running (lock held)")
            with collector_held():
                return self._sweep(helpdesk, rules, limit)

    # -- dry run ---------------------------------------------------------------------

    def _plan(self, helpdesk: Helpdesk, rules: RuleSet, limit: int) -> SweepReport:
        now = self.clock()
        source = helpdesk.name
        ids = [ticket_id for src, ticket_id in self.store.due_tickets(now, limit) if src == source]
        report = SweepReport(source=source, dry_run=True, due=len(ids))
        reads = [_Read(None, ticket_id) for ticket_id in ids]
        self._read(helpdesk, reads)
        self._route(reads, helpdesk, rules, now)
        for read in reads:
            snapshot = self.store.get_snapshot(source, read.ticket_id) or {}
            report.plan.extend(_rows(read, snapshot.get("next_check")))
        return report

    def _route(self, reads: list[_Read], helpdesk: Helpdesk, rules: RuleSet, now: datetime
               ) -> tuple[list[_Read], list[_Read], dict[tuple, list[_Read]]]:
        """Decide every ticket read; split into (nothing to do, per ticket, bulk close groups)."""
        quiet: list[_Read] = []
        singles: list[_Read] = []
        groups: dict[tuple, list[_Read]] = defaultdict(list)
        counted = {True: 0, False: 0}  # decisions counted here (with or without actions)
        for read in reads:
            if read.remote is None:
                continue
            # The agents' holds, seen against the snapshot the read resumed from.
            read.holds = ownership.observe(read.stored, read.remote.ticket, rules, to_epoch(now))
            read.decision = evaluate(read.remote.ticket, rules, to_epoch(now), read.holds)
            key = _close_key(read.decision, helpdesk)
            if key is not None or not read.decision.actions:  # singles are counted by the worker
                counted[bool(read.decision.actions)] += 1
            if not read.decision.actions:
                quiet.append(read)
            elif key is not None and not read.remote.read_only:  # a read-only ticket: the worker says why
                groups[key].append(read)
            else:
                singles.append(read)
        metrics.decisions(helpdesk.name, counted[True], counted[False])
        for key, members in list(groups.items()):
            if len(members) < self.min_bulk:
                singles.extend(groups.pop(key))
        for read in singles:
            read.path = "per ticket"
        for members in groups.values():
            for read in members:
                read.path = "bulk"
        return quiet, singles, groups

    # -- the sweep -------------------------------------------------------------------

    def _sweep(self, helpdesk: Helpdesk, rules: RuleSet, limit: int) -> SweepReport:
        now = self.clock()
        source = helpdesk.name
        ids = [ticket_id for src, ticket_id in self.store.due_tickets(now, limit) if src == source]
        report = SweepReport(source=source, dry_run=False, due=len(ids))
        if not ids:
            return report
        claims = self.store.claim_tickets(source, ids, self.worker_id, now,
                                          lease_seconds=self.lease_seconds, reason="sweep: due")
        reads = [_Read(claim, claim.ticket_id) for claim in claims]
        self._read(helpdesk, reads)
        for read in reads:
            if read.error is not None:
                self._read_failed(read, now, report)
        quiet, singles, groups = self._route(reads, helpdesk, rules, now)
        self._finish_quiet(quiet, rules, now, report)
        worker = self._worker(helpdesk, rules, {r.ticket_id: r.remote for r in singles})
        for read in singles:
            self._per_ticket(worker, read, rules, report)
        # A per-ticket close is a safe update on Zendesk; Freshdesk has none, so every close
        # written per ticket is checked afterwards like a bulk one.
        closes = [r for r in singles if r.ticket_id in report.applied and _closes(r.decision)
                  and not helpdesk.safe_updates]
        if closes:
            reopened = self._reopen_if_replied(helpdesk, rules, closes, now)
            report.reopened.extend(reopened)
            if reopened:
                self.store.request_sync(source, reopened, now, "sweep: customer replied during the close")
        finisher = _Finisher(threads=FINISH_THREADS if self.store.engine.dialect.name == "postgresql" else 0)
        try:
            for key, members in groups.items():
                for group in _chunks(members, BULK_SIZE * GROUP_CHUNKS):
                    self._close(helpdesk, rules, key, group, now, report, finisher)
            finisher.wait(report)
        finally:
            finisher.shutdown()
        for read in reads:
            report.plan.extend(_rows(read, None))
        log.info("%s", report.summary())
        return report

    def _read(self, helpdesk: Helpdesk, reads: list[_Read]) -> None:
        """Read the due tickets, BULK_SIZE to a fetch_tickets call (Zendesk: one show_many, then
        audits only for a ticket changed since its stored snapshot, from the newest audit it
        holds), `fetch_threads` calls at a time. A rate limit, or MAX_TRANSIENT_ERRORS failed
        calls, stop the reading: the tickets not read yet stay due."""
        stop = threading.Event()
        transient: list[Exception] = []
        lock = threading.Lock()
        stored = _stored_tickets(self.store, helpdesk.name, [r.ticket_id for r in reads])
        for read in reads:
            read.stored = stored.get(read.ticket_id)

        def fetch(chunk: list[_Read]) -> None:
            if stop.is_set():
                for read in chunk:
                    read.error = _NotRead(f"not read: {transient[-1] if transient else 'rate limited'}")
                return
            ids = [read.ticket_id for read in chunk]
            try:
                got: dict[str, Any] = helpdesk.fetch_tickets(
                    ids, known={tid: stored[tid] for tid in ids if stored.get(tid)})
            except Exception as err:  # kept per ticket; handled (or planned) by the caller
                got = {tid: err for tid in ids}
            failures = {id(err): err for err in got.values() if isinstance(err, Exception)}
            with lock:
                for err in failures.values():  # one failed call may fail many tickets: counted once
                    if isinstance(err, RateLimitedError):
                        stop.set()
                    elif isinstance(err, TransientError):
                        transient.append(err)
                        if len(transient) >= MAX_TRANSIENT_ERRORS:
                            stop.set()
            for read in chunk:
                answer = got.get(read.ticket_id)
                if isinstance(answer, Exception):
                    read.error = answer
                elif answer is None:
                    read.error = ConnectorError(f"ticket {read.ticket_id}: not in the batched read's answer")
                else:
                    read.remote = answer

        chunks = list(_chunks(reads, BULK_SIZE))
        if self.fetch_threads <= 1 or len(chunks) <= 1:
            for chunk in chunks:
                fetch(chunk)
            return
        with ThreadPoolExecutor(max_workers=self.fetch_threads, thread_name_prefix="sweep-read") as pool:
            list(pool.map(fetch, chunks))

    def _read_failed(self, read: _Read, now: datetime, report: SweepReport) -> None:
        claim, err = read.claim, read.error
        assert claim is not None and err is not None
        if isinstance(err, NotFoundError):
            log.warning("%s ticket %s: not found (%s); no longer swept", claim.source, claim.ticket_id, err)
            report.failed[read.ticket_id] = str(err)
            self.store.clear_next_check(claim.source, [claim.ticket_id])
            self.store.complete(claim, now)
        elif isinstance(err, _NotRead):
            report.deferred.append(read.ticket_id)
            self.store.complete(claim, now)  # released untouched: still due next sweep
        elif isinstance(err, RateLimitedError):
            report.failed[read.ticket_id] = str(err)
            self.store.retry(claim, now, str(err), err.retry_after, count_attempt=False)
        elif isinstance(err, ConfigurationError):
            # Not the ticket's fault: kept, shown in /healthz, tried again without counting.
            log.error("%s ticket %s: configuration error: %s", claim.source, claim.ticket_id, err)
            report.failed[read.ticket_id] = str(err)
            record_config_error(self.store, claim.source, str(err), now)
            self.store.retry(claim, now, str(err), CONFIG_RETRY_SECONDS, count_attempt=False)
        else:
            # A failed attempt: the worker takes the ticket after a pause, and its
            # policy (backoff, dead letters) handles it from there.
            report.failed[read.ticket_id] = str(err)
            self.store.retry(claim, now, str(err), FAILED_READ_DELAY_SECONDS)

    def _worker(self, helpdesk: Helpdesk, rules: RuleSet, remotes: dict[str, Any]) -> Worker:
        return Worker(self.store, _Prefetched(helpdesk, remotes), lambda: rules, clock=self.clock,
                      worker_id=self.worker_id, lease_seconds=self.lease_seconds, budget=self.budget)

    def _finish_quiet(self, quiet: list[_Read], rules: RuleSet, now: datetime,
                      report: SweepReport) -> None:
        if not quiet:
            return
        source = quiet[0].claim.source  # type: ignore[union-attr]
        snapshots = [_snapshot(r.remote, r.decision, r.decision, rules, r.holds) for r in quiet]
        with self.store.transaction() as tx:  # the new snapshots and the released claims, together
            tx.save_snapshots(source, snapshots, now)
            tx.complete_many([r.claim for r in quiet], now)  # type: ignore[misc]
        report.unchanged.extend(r.ticket_id for r in quiet)

    def _per_ticket(self, worker: Worker, read: _Read, rules: RuleSet, report: SweepReport) -> None:
        outcome = worker.process(read.claim, rules)  # type: ignore[arg-type]
        if outcome.decision is not None:
            read.decision = outcome.decision
        read.path = "per ticket"
        read.error = None if outcome.error is None else read.error
        if outcome.error and outcome.error.startswith("write budget"):
            report.deferred.append(read.ticket_id)
        elif outcome.error:
            report.failed[read.ticket_id] = outcome.error
        elif outcome.wrote:
            report.applied.append(read.ticket_id)
        else:
            report.unchanged.append(read.ticket_id)

    def _close(self, helpdesk: Any, rules: RuleSet, key: tuple, group: list[_Read], now: datetime,
               report: SweepReport, finisher: _Finisher) -> None:
        """Bulk closes of up to GROUP_CHUNKS chunks of BULK_SIZE tickets (one job each), with
        three commits around their vendor calls (four with a separate note job).

        Before the bulk jobs, one transaction reserves the budget (each job carried by its
        first ticket), releases the tickets it does not cover and records the outbox writes
        with their bulk part marked sent. After them, one transaction marks the parts done,
        finishes the writes with their audit rows and saves the snapshots; after the
        post-close check, one more completes the claims (and queues what has more to do). A
        separate note adds one in between. A crash between any two leaves the leases to
        expire and the outbox to resume from: the worker sends only what did not land.
        """
        status, tags, reply, note = key
        source = helpdesk.name
        # A connector without note_many closes and notes in one close_many: one part then.
        separate = hasattr(helpdesk, "note_many")
        # Recorded before the first call: the bulk job's share and the note, per ticket.
        parts: list[tuple[str, dict]] = [("bulk", changes_to_dict(TicketChanges(
            status=status, add_tags=tags, reply=reply, note=None if separate else note)))]
        if note and separate:
            parts.append(("note", changes_to_dict(TicketChanges(note=note))))
        # Built before the transaction, so that it holds the write lock only for the database work.
        new_writes = {r.ticket_id: NewWrite(r.ticket_id, _action_log(r.decision, r.remote), parts)  # type: ignore[arg-type]
                      for r in group}
        chunks = list(_chunks(group, BULK_SIZE))
        with self.store.transaction() as tx:
            if self.budget is not None:
                jobs = [bulk_charges(helpdesk, chunk, reply=reply, note=note) for chunk in chunks]
                # Each job's ticket carrying its calls first: without it, nothing rides on the job.
                allowed = set(self.budget.reserve_jobs(source, jobs, now, tx=tx).granted)
                waiting = [r for r in group if r.ticket_id not in allowed]
                if waiting:
                    # Released untouched: the snapshot still says due, so the next sweep takes them.
                    tx.complete_many([r.claim for r in waiting], now)  # type: ignore[misc]
                    report.deferred.extend(r.ticket_id for r in waiting)
                chunks = [kept for kept in ([r for r in chunk if r.ticket_id in allowed] for chunk in chunks)
                          if kept]
            if chunks:
                writes = {w.ticket_id: w for w in tx.outbox.record_many(
                    source, [new_writes[r.ticket_id] for chunk in chunks for r in chunk],
                    rules_version=rules.version, now=now, first_sent=True)}
        done: list[_Read] = []
        retry: list[tuple[_Read, str]] = []
        for chunk in chunks:
            ids = [r.ticket_id for r in chunk]
            try:
                results = helpdesk.close_many(ids, status=status, add_tags=tags, reply=reply,
                                              note=None if separate else note,
                                              wait_seconds=self.job_wait_seconds)
            except (TransientError, RateLimitedError) as err:
                # The outcome is unknown: the worker takes each ticket after a while and completes
                # its outbox write, sending only what did not land.
                delay = getattr(err, "retry_after", 5 * self.job_wait_seconds)
                log.warning("%s bulk close of %d tickets unconfirmed (%s); re-checking in %.0fs",
                            source, len(ids), err, delay)
                with self.store.transaction() as tx:
                    for read in chunk:
                        tx.retry(read.claim, now, str(err), delay, count_attempt=False)  # type: ignore[arg-type]
                for read in chunk:
                    report.failed[read.ticket_id] = str(err)
                continue
            except ConnectorError as err:
                log.warning("%s bulk close refused (%s); applying per ticket", source, err)
                results = {ticket_id: str(err) for ticket_id in ids}
            for read in chunk:
                why = results.get(read.ticket_id)
                if why is None:
                    done.append(read)
                else:
                    retry.append((read, str(why)))
        for read, why in retry:
            self.store.outbox.cancel(writes[read.ticket_id].id, now,
                                     f"bulk close failed for this ticket ({why}); decided again per ticket")
        if done:
            self._finish_closed(helpdesk, rules, key, done, writes, note if separate else None, now, report,
                                finisher)
        if retry:
            # One ticket's failure (closed meanwhile, validation) is handled on its own.
            worker = self._worker(helpdesk, rules, {})
            for read, why in retry:
                log.info("%s ticket %s: bulk close failed (%s); applying per ticket",
                         source, read.ticket_id, why)
                self._per_ticket(worker, read, rules, report)

    def _finish_closed(self, helpdesk: Any, rules: RuleSet, key: tuple, done: list[_Read],
                       writes: dict[str, Any], note: str | None, now: datetime, report: SweepReport,
                       finisher: _Finisher) -> None:
        """After confirmed bulk closes: the notes, then (by `finisher`) the outbox, snapshots, the
        post-close check and the claims."""
        source = helpdesk.name
        closed_parts = [writes[r.ticket_id].parts[0].id for r in done]
        owed, noted = self._bulk_notes(helpdesk, [writes[r.ticket_id] for r in done], note, now, closed_parts)
        if note:
            closed_parts = []  # marked done before the note job was sent
        complete = [r for r in done if r.ticket_id not in owed]
        closed = [_after_close(r.remote, key, now) for r in done]  # type: ignore[arg-type]
        metrics.writes(source, [a for r in done for a in r.decision.actions])  # type: ignore[union-attr]
        snapshots, again = [], []
        for read, remote in zip(done, closed, strict=True):
            after = evaluate(remote.ticket, rules, to_epoch(now), read.holds)
            snapshots.append(_snapshot(remote, read.decision, after, rules, read.holds))  # type: ignore[arg-type]
            if after.actions:
                again.append(read.ticket_id)
        def store_closed() -> Callable[[SweepReport], None]:
            # The parts done, the writes finished with their audit rows, the closed state saved: together.
            with self.store.transaction() as tx:
                tx.outbox.done(closed_parts + noted, now)
                tx.outbox.finish_many([writes[r.ticket_id] for r in complete], now)
                tx.save_snapshots(source, snapshots, now)
            reopened = self._reopen_if_replied(helpdesk, rules, done, now)
            more = sorted(set(again) | set(reopened))
            with self.store.transaction() as tx:
                tx.complete_many([r.claim for r in complete], now)  # type: ignore[misc]
                for read in done:
                    if read.ticket_id in owed:
                        # Closed, note not confirmed: the worker completes the write (the note only).
                        tx.retry(read.claim, now, "internal note not confirmed",  # type: ignore[arg-type]
                                 FAILED_READ_DELAY_SECONDS, count_attempt=False)
                if more:
                    tx.request_sync(source, more, now, "sweep: more to do after close")

            def told(report: SweepReport) -> None:
                report.reopened.extend(reopened)
                report.closed.extend(r.ticket_id for r in done)
            return told

        finisher.submit(store_closed, report)

    def _bulk_notes(self, helpdesk: Any, writes: list[Any], note: str | None, now: datetime,
                    closed_parts: list[int]) -> tuple[set[str], list[int]]:
        """Post the close's internal note on each closed ticket.

        The closes' parts (`closed_parts`) are marked done in the transaction that marks the
        notes sent, before the note job. Returns the tickets whose note is owed, and the note
        parts confirmed (for the caller to mark done with the rest of the close).
        """
        if not note:
            return set(), []
        ids = [w.ticket_id for w in writes]
        with self.store.transaction() as tx:
            tx.outbox.done(closed_parts, now)
            tx.outbox.sent([w.parts[1].id for w in writes], now)
        owed: set[str] = set()
        results: dict[str, Any] = {}
        for start in range(0, len(ids), BULK_SIZE):  # one note job per chunk
            chunk = ids[start : start + BULK_SIZE]
            try:
                results.update(helpdesk.note_many(chunk, note, wait_seconds=self.job_wait_seconds))
            except ConnectorError as err:
                log.warning("%s: internal notes on %d closed tickets not confirmed (%s); the worker "
                            "completes them", helpdesk.name, len(chunk), err)
                owed.update(chunk)
        refused = {tid for tid in ids if tid not in owed and results.get(tid) is not None}
        for tid in sorted(refused):
            log.warning("%s ticket %s: closed, internal note not added yet (%s); the worker completes it",
                        helpdesk.name, tid, results.get(tid))
        owed |= refused
        return owed, [w.parts[1].id for w in writes if w.ticket_id not in owed]

    def _reopen_if_replied(self, helpdesk: Any, rules: RuleSet, done: list[_Read], now: datetime
                           ) -> list[str]:
        """The post-close check: a ticket whose customer replied after the sweep read it is reopened.

        Bulk jobs have no safe update, so what each closed ticket got after the sweep's read is
        read: one fetch_tickets call for them all, resuming from the sweep's read (Zendesk: one
        show_many per 100, then each ticket's audits after the newest one the sweep saw;
        Freshdesk: each ticket and its conversations). A public customer comment the sweep did
        not see means the close went over it.
        """
        reopened = []
        writer = OutboxWriter(self.store, self.clock, self.budget)
        known = {r.ticket_id: ticket_json(r.remote.ticket, r.remote.stamp, r.holds, r.remote.resume)
                 for r in done if r.remote is not None}
        try:
            fresh_reads: dict[str, Any] = helpdesk.fetch_tickets([r.ticket_id for r in done], known=known)
        except ConnectorError as err:
            fresh_reads = {r.ticket_id: err for r in done}
        for read in done:
            fresh = fresh_reads.get(read.ticket_id)
            if not isinstance(fresh, RemoteTicket):
                log.warning("%s ticket %s: closed; could not check for a customer reply (%s); the worker "
                            "looks at it again", helpdesk.name, read.ticket_id, fresh)
                self.store.request_sync(helpdesk.name, [read.ticket_id], now, "sweep: post-close check")
                continue
            seen = _customer_replies(read.remote.ticket)  # type: ignore[union-attr]
            replies = _customer_replies(fresh.ticket)
            if len(replies) <= len(seen):
                continue
            at = iso_utc(replies[-1])
            rule = read.decision.actions[0].rule if read.decision and read.decision.actions else "auto-close"
            note = (f"Reopened by Deskpilot: the customer replied at {at}, while rule `{rule}` was closing "
                    "the ticket for want of a reply; their message needs an answer.")
            log.warning("%s ticket %s: customer replied at %s during the bulk close; reopening",
                        helpdesk.name, read.ticket_id, at)
            changes = TicketChanges(status=REOPEN_STATUS, note=note)
            audit = [{"rule": rule, "type": ActionType.SET_STATUS.value, "before": fresh.ticket.status,
                      "after": {"value": REOPEN_STATUS, "why": "customer replied during the close"}},
                     {"rule": rule, "type": ActionType.NOTE.value, "before": None, "after": {"body": note}}]
            try:
                write = writer.record(helpdesk.name, read.ticket_id, rules_version=rules.version,
                                      audit=audit, helpdesk=helpdesk, changes=changes)
                writer.complete(helpdesk, write, fresh)
            except Exception as err:  # the outbox keeps it: the worker completes the reopen
                log.warning("%s ticket %s: reopen not confirmed (%s); the worker completes it",
                            helpdesk.name, read.ticket_id, err)
            reopened.append(read.ticket_id)
        return reopened


def _stored_tickets(store: Store, source: str, ids: list[str]) -> dict[str, dict]:
    """The stored snapshot tickets of `ids` (what the agents' holds are read from)."""
    return store.get_snapshot_tickets(source, ids)


def _closes(decision: Decision | None) -> bool:
    return decision is not None and any(
        a.type == ActionType.SET_STATUS and a.value in DONE_STATUSES for a in decision.actions)


def _customer_replies(ticket: Any) -> list[int]:
    return [e.at for e in ticket.events if e.type == "comment" and e.author == "customer" and e.public]


def _rows(read: _Read, due: datetime | None) -> Iterator[PlannedAction]:
    if read.error is not None or read.decision is None:
        yield PlannedAction(read.ticket_id, "-", "error", str(read.error), due=due)
        return
    decision = read.decision
    if not decision.actions:
        nxt = iso_utc(decision.next_check)
        why = f"nothing due now; next check {nxt}" if nxt else "no time-based rule pending"
        yield PlannedAction(read.ticket_id, "-", "nothing", why, due=due)
        return
    for action in decision.actions:
        yield PlannedAction(read.ticket_id, action.rule, _describe(action), _why(decision, action),
                            read.path, due)


class _Finisher:
    """Runs each bulk group's finishing (its outcome stored, the post-close check, the claims
    released) once the group's vendor calls are done; outcomes are reported in group order.

    With `threads` (PostgreSQL: FINISH_THREADS), up to that many groups are finished at once,
    each on a thread (and connection) of its own, while the sweep decides and sends the next
    group: the database's work on a group (its snapshots, board rows, audit rows) overlaps the
    sweep's on the next. The groups' tickets are distinct, so their transactions lock no common
    row. SQLite has one writer, so they would only queue for it (and an in-memory database is
    one connection): with no threads the finishing runs in line.
    """

    def __init__(self, *, threads: int) -> None:
        self._threads = threads
        self._pool = ThreadPoolExecutor(threads, thread_name_prefix="sweep-finish") if threads else None
        self._pending: deque[Future] = deque()

    def submit(self, work: Callable[[], Callable[[SweepReport], None]], report: SweepReport) -> None:
        """Run `work` (at most `threads` at a time); what it returns tells the report its outcome."""
        if self._pool is None:
            work()(report)
            return
        while len(self._pending) >= self._threads:
            self._pending.popleft().result()(report)
        self._pending.append(self._pool.submit(work))

    def wait(self, report: SweepReport) -> None:
        """Wait for the groups being finished (raising what one raised) and report their outcomes."""
        while self._pending:
            self._pending.popleft().result()(report)

    def shutdown(self) -> None:
        """Wait for finishing still running (after a failure elsewhere): the sweep's lock covers it."""
        if self._pool is not None:
            self._pool.shutdown(wait=True)


class _Prefetched:
    """The helpdesk, except that a ticket's first read is the one the sweep just made."""

    def __init__(self, helpdesk: Helpdesk, remotes: dict[str, Any]) -> None:
        self._helpdesk = helpdesk
        self._remotes = dict(remotes)
        self.name = helpdesk.name

    def fetch_ticket(self, ticket_id: str, known: Mapping[str, Any] | None = None) -> RemoteTicket:
        remote = self._remotes.pop(str(ticket_id), None)
        return remote if remote is not None else self._helpdesk.fetch_ticket(ticket_id, known)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._helpdesk, name)


def _close_key(decision: Decision, helpdesk: Any) -> tuple | None:
    """(status, tags, reply, note) when the decision is one rule's close that bulk updates can send."""
    actions = decision.actions
    if not actions:
        return None
    types = {action.type for action in actions}
    if "set_status" not in types or not types <= _CLOSE_ACTIONS or len({a.rule for a in actions}) != 1:
        return None
    changes = changes_from(decision)
    if not helpdesk.can_close_in_bulk(changes.add_tags):
        return None
    return changes.status, tuple(sorted(changes.add_tags)), changes.reply, changes.note


def _after_close(remote: RemoteTicket, key: tuple, now: datetime) -> RemoteTicket:
    """The ticket as the bulk close left it (status, tags, the bot's comments), without a re-read."""
    status, tags, reply, note = key
    at = to_epoch(now)
    events = [Event(at=at, type="status", status=status)]
    if reply:
        events.append(Event(at=at, type="comment", author="agent", public=True, bot=True))
    if note:
        events.append(Event(at=at, type="comment", author="agent", public=False, bot=True))
    ticket = dataclasses.replace(remote.ticket, status=status, tags=remote.ticket.tags | set(tags),
                                 events=remote.ticket.events + tuple(events))
    return RemoteTicket(ticket=ticket, stamp=remote.stamp, raw=remote.raw, resume=remote.resume)


def _snapshot(remote: RemoteTicket | None, decision: Decision | None, after: Decision | None,
              rules: RuleSet, holds: tuple = ()) -> dict[str, Any]:
    assert remote is not None and decision is not None and after is not None
    next_check = None if after.next_check is None else datetime.fromtimestamp(after.next_check, UTC)
    return {"ticket_id": remote.ticket.id,
            "ticket": ticket_json(remote.ticket, remote.stamp, holds, remote.resume),
            "decision": decision.to_dict(),
            "next_check": next_check, "rules_version": rules.version}


# A plan line per action type (checked against the vocabulary at import).
DESCRIBE: dict[ActionType, Callable[[Action], str]] = {
    ActionType.SET_PRIORITY: lambda a: f"{a.type.value} {a.value}",
    ActionType.SET_STATUS: lambda a: f"{a.type.value} {a.value}",
    ActionType.ASSIGN_GROUP: lambda a: f"{a.type.value} {a.value}",
    ActionType.ADD_TAGS: lambda a: f"add_tags {', '.join(a.values)}",
    ActionType.SET_FIELDS: lambda a: f"set_fields {', '.join(sorted(a.values))}",
    ActionType.NOTE: lambda a: a.type.value,
    ActionType.REPLY: lambda a: a.type.value,
}
exhaustive(DESCRIBE, "jobs.sweeps.DESCRIBE")


def _describe(action: Action) -> str:
    return DESCRIBE[action.type](action)


def _why(decision: Decision, action: Action) -> str:
    """The engine's own explanation: the note of the same rule, else the text or rule id."""
    if action.type in ("note", "reply"):
        return _shorten(action.body or "")
    for other in decision.actions:
        if other.type == "note" and other.rule == action.rule and other.body:
            return _shorten(other.body)
    return f"rule {action.rule} applies now"


@lru_cache(maxsize=1024)  # a bulk close's tickets share their notes
def _shorten(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _chunks(items: Sequence[_Read], size: int) -> Iterator[list[_Read]]:
    for start in range(0, len(items), size):
        yield list(items[start : start + size])
