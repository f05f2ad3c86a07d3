"""The worker: claim queued tickets, read them from the helpdesk, decide, write the difference."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.base import (
    ConfigurationError,
    ConflictError,
    ConnectorError,
    Helpdesk,
    NotFoundError,
    RateLimitedError,
    RemoteTicket,
    TicketChanges,
    ValidationError,
)
from console import metrics
from engine import ownership
from engine.actions import COMMENT_TYPES, ActionType, UnknownAction, apply_actions, exhaustive
from engine.decision import Action, Decision
from engine.evaluate import evaluate
from engine.rulefile import RuleFileError
from engine.ruleset import RuleSet
from engine.ticket import to_epoch
from jobs.budget import OverBudget, WriteBudget
from jobs.outbox import OutboxWriter, split_parts
from jobs.quietlog import RateLimitedLog
from jobs.runtime import clear_config_error, record_config_error, resolve_helpdesk
from store import Claim, Store
from store.core import DEFAULT_LEASE_SECONDS

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 3
MAX_BACKOFF_SECONDS = 3600
# A configuration error (wrong API URL, missing rights) is not the ticket's fault:
# its work waits this long, without counting an attempt, and is tried again.
CONFIG_RETRY_SECONDS = 300


def utc_now() -> datetime:
    return datetime.now(UTC)


def _fold_value(name: str) -> Callable[[TicketChanges, Action, dict], None]:
    def fold(changes: TicketChanges, action: Action, acc: dict) -> None:
        setattr(changes, name, action.value)

    return fold


def _fold_tags(changes: TicketChanges, action: Action, acc: dict) -> None:
    acc["tags"].extend(t for t in action.values if t not in acc["tags"])


def _fold_fields(changes: TicketChanges, action: Action, acc: dict) -> None:
    changes.fields.update(action.values)


def _fold_text(key: str) -> Callable[[TicketChanges, Action, dict], None]:
    def fold(changes: TicketChanges, action: Action, acc: dict) -> None:
        acc[key].append(action.body)

    return fold


# How each action type goes into a ticket update (checked against the vocabulary at import).
FOLD: dict[ActionType, Callable[[TicketChanges, Action, dict], None]] = {
    ActionType.SET_PRIORITY: _fold_value("priority"),
    ActionType.SET_STATUS: _fold_value("status"),
    ActionType.ASSIGN_GROUP: _fold_value("group"),
    ActionType.ADD_TAGS: _fold_tags,
    ActionType.SET_FIELDS: _fold_fields,
    ActionType.NOTE: _fold_text("notes"),
    ActionType.REPLY: _fold_text("replies"),
}
exhaustive(FOLD, "jobs.worker.FOLD")

# The ticket's value before each action, for the audit trail.
BEFORE: dict[ActionType, Callable[[Any, Action], Any]] = {
    ActionType.SET_PRIORITY: lambda ticket, action: ticket.priority,
    ActionType.SET_STATUS: lambda ticket, action: ticket.status,
    ActionType.ASSIGN_GROUP: lambda ticket, action: ticket.group,
    ActionType.ADD_TAGS: lambda ticket, action: sorted(ticket.tags),
    ActionType.SET_FIELDS: lambda ticket, action: {name: ticket.fields.get(name) for name in action.values},
    ActionType.NOTE: lambda ticket, action: None,
    ActionType.REPLY: lambda ticket, action: None,
}
exhaustive(BEFORE, "jobs.worker.BEFORE")


def changes_from(decision: Decision) -> TicketChanges:
    """Fold the engine's actions into one ticket update; notes join into one internal note.

    An action outside the vocabulary raises UnknownAction: it is never dropped.
    """
    changes = TicketChanges()
    acc: dict[str, list] = {"notes": [], "replies": [], "tags": []}
    for action in decision.actions:
        fold = FOLD.get(action.type)
        if fold is None:
            raise UnknownAction(f"action {action.type!r} of rule {action.rule} has no ticket update")
        fold(changes, action, acc)
    changes.add_tags = tuple(acc["tags"])
    changes.note = "\n\n".join(acc["notes"]) or None
    changes.reply = "\n\n".join(acc["replies"]) or None
    return changes


def _action_log(decision: Decision, remote: RemoteTicket) -> list[dict[str, Any]]:
    ticket = remote.ticket
    out = []
    for action in decision.actions:
        after = action.to_dict()
        after.pop("rule")
        after.pop("type")
        prior = BEFORE[action.type](ticket, action)
        out.append({"rule": action.rule, "type": action.type.value, "before": prior, "after": after})
    return out


@dataclass
class Outcome:
    ticket_id: str
    wrote: bool = False
    decision: Decision | None = None
    error: str | None = None
    calls: dict[str, int] = field(default_factory=dict)
    read_only: str | None = None  # why nothing was written although the decision had actions
    echo: bool = False  # only the bot's own write came back: settled without a read
    incremental: bool = False  # decided on the stored ticket extended by the webhooks, no read


class Worker:
    """Processes claimed tickets. Safe to run as many processes as the database allows:
    a ticket is leased to one worker at a time, and an unfinished lease expires and is
    claimed again, so nothing is lost when a worker dies."""

    def __init__(
        self,
        store: Store,
        helpdesk: Helpdesk | Callable[[RuleSet], Helpdesk],
        rules: Callable[[], RuleSet],
        *,
        clock: Callable[[], datetime] = utc_now,
        worker_id: str | None = None,
        max_attempts: int = 8,
        lease_seconds: int = DEFAULT_LEASE_SECONDS,
        backoff_base: float = 30.0,
        budget: WriteBudget | None = None,
        economy: bool = True,
    ) -> None:
        self.store = store
        # Echoes settled without a read and the budget asked before reading; False is the
        # read-first behaviour, kept for benchmarks/api_economy.py's in-process baseline.
        self.economy = economy
        # A connector, or a factory that builds one for the rules in use (their
        # `helpdesk:` section holds the account's field and group ids).
        self._helpdesk = helpdesk
        self.rules = rules
        self.clock = clock
        self.worker_id = worker_id or f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.backoff_base = backoff_base
        # Shared with every process on this database; None writes without a budget.
        self.budget = budget
        self._config_error = False  # this worker recorded a configuration error
        # Claims taken and not yet finished, whose leases renew_leases() extends.
        self._held: dict[str, Claim] = {}
        self._held_lock = threading.Lock()
        # One line per kind of failure per minute (with a count): a database
        # outage fails every round and every ticket alike.
        self._quiet = RateLimitedLog(log, interval_seconds=60)
        # run_once's batched reads by claim token, and the update each one had reserved.
        self._batch_reads: dict[str, RemoteTicket | ConnectorError] = {}
        self._batch_held: dict[str, list[tuple[datetime, int]]] = {}

    def renew_leases(self) -> int:
        """Extend the leases of every claim still in hand (run_forever does it in a thread)."""
        with self._held_lock:
            claims = list(self._held.values())
        if not claims:
            return 0
        return self.store.renew(claims, self.clock(), self.lease_seconds)

    def _renew_while(self, stop: threading.Event) -> None:
        # Three renewals per lease: a slow database round trip or one failed
        # renewal still leaves the lease in force.
        interval = max(1.0, self.lease_seconds / 3)
        while not stop.wait(interval):
            try:
                self.renew_leases()
            except Exception as err:  # the database is down: the leases lapse, nothing is lost
                self._quiet.warning(f"renew:{type(err).__name__}", "could not renew %d lease(s): %s",
                                    len(self._held), type(err).__name__)

    def run_once(self, limit: int = 10) -> list[Outcome]:
        """Claim up to `limit` tickets and process each; returns what happened.

        Without loaded rules nothing is claimed: the queue waits, nothing is lost.
        """
        try:
            rules = self.rules()
        except RuleFileError as err:
            log.warning("no rules loaded, not processing: %s", err)
            return []
        claims = self.store.claim(self.worker_id, self.clock(), limit=limit, lease_seconds=self.lease_seconds)
        with self._held_lock:
            self._held.update((claim.token, claim) for claim in claims)
        outcomes = []
        try:
            self._prefetch(claims, rules)
            for claim in claims:
                outcomes.append(self.process(claim, rules))
                with self._held_lock:
                    self._held.pop(claim.token, None)
                self._drop_prefetched(claim)
        finally:
            for claim in claims:
                self._drop_prefetched(claim)
            # A failure that escaped process() (the database went away while
            # finishing a claim): hand back what is left, so that it does not
            # wait for its lease to run out.
            with self._held_lock:
                left = [self._held.pop(claim.token) for claim in claims if claim.token in self._held]
            for claim in left:
                try:
                    self.store.release(claim, self.clock())
                except Exception as err:
                    log.warning("%s ticket %s: not released (%s); its lease lapses in %ds",
                                claim.source, claim.ticket_id, type(err).__name__, self.lease_seconds)
        return outcomes

    def _prefetch(self, claims: list[Claim], rules: RuleSet) -> None:
        """Read in one fetch_tickets call the claimed tickets that need a full read.

        Not those with an unfinished write (completed on their own path first), nor those
        whose queued webhooks are the bot's echo or extend the stored ticket. Each one read
        has its update reserved first, as a single read has: a ticket the budget defers is
        not read. Each ticket keeps its own outcome: a 404 for one is that ticket's error.
        """
        if not self.economy or len(claims) < 2:
            return
        helpdesk = self.helpdesk(rules)
        wanted: dict[str, Claim] = {}
        known: dict[str, dict[str, Any]] = {}
        for claim in claims:
            try:
                if self.store.outbox.pending(claim.source, claim.ticket_id) or self._echo_only(
                        claim, rules, helpdesk) or self._extended(claim, helpdesk) is not None:
                    continue
                snapshot = self._stored(claim)
                held: list[tuple[datetime, int]] = []
                self._reserve(claim, 1, self.clock(), held)
            except OverBudget:
                continue  # process() defers it, without a read
            except Exception as err:  # its own process() meets the same trouble and records it
                log.debug("%s ticket %s: not read in the batch (%s)", claim.source, claim.ticket_id, err)
                continue
            self._batch_held[claim.token] = held
            wanted[claim.ticket_id] = claim
            if snapshot:
                known[claim.ticket_id] = snapshot
        if len(wanted) < 2:  # one ticket: its own read, in process()
            for claim in wanted.values():
                self._drop_prefetched(claim)
            return
        try:
            reads = helpdesk.fetch_tickets(list(wanted), known=known)
        except Exception as err:  # every ticket is read on its own instead
            log.info("batched read of %d tickets failed (%s); reading them one by one", len(wanted), err)
            return
        for ticket_id, claim in wanted.items():
            if ticket_id in reads:
                self._batch_reads[claim.token] = reads[ticket_id]

    def _drop_prefetched(self, claim: Claim) -> None:
        """Forget a claim's batched read; give back its reservation if process() did not take it."""
        self._batch_reads.pop(claim.token, None)
        for reservation in self._batch_held.pop(claim.token, []):
            try:
                self._refund(claim, reservation)
            except Exception as err:  # the window it was reserved in lapses on its own
                log.debug("%s ticket %s: reservation not given back (%s)", claim.source, claim.ticket_id, err)

    def _stored(self, claim: Claim) -> dict[str, Any] | None:
        """The ticket's stored snapshot ticket (what a read may resume from), or None."""
        snapshot = self.store.get_snapshot(claim.source, claim.ticket_id)
        return (snapshot or {}).get("ticket") or None

    def _read(self, claim: Claim, helpdesk: Helpdesk, *, first: bool) -> RemoteTicket:
        """The ticket read in full: the batched read of this run when there is one (first attempt),
        else one fetch_ticket that resumes from the stored snapshot (from the start without
        the economy: the read-first baseline)."""
        batched = self._batch_reads.pop(claim.token, None) if first else None
        if isinstance(batched, RemoteTicket):
            return batched
        if isinstance(batched, ConnectorError):
            raise batched
        return helpdesk.fetch_ticket(claim.ticket_id, known=self._stored(claim) if self.economy else None)

    def run_forever(self, stop: threading.Event, idle_seconds: float = 0.5, limit: int = 10) -> None:
        log.info("worker %s started (leases of %ds, renewed while working)", self.worker_id,
                 self.lease_seconds)
        renewing = threading.Event()
        threading.Thread(target=self._renew_while, args=(renewing,), name="lease-renewal",
                         daemon=True).start()
        try:
            self._loop(stop, idle_seconds, limit)
        finally:
            renewing.set()

    def _loop(self, stop: threading.Event, idle_seconds: float, limit: int) -> None:
        while not stop.is_set():
            try:
                busy = bool(self.run_once(limit))
            except Exception as err:
                # One line per kind of failure per minute: a database outage is not 400 tracebacks.
                self._quiet.warning(type(err).__name__, "worker loop error (%s: %s); retrying",
                                     type(err).__name__, _first_line(err))
                log.debug("worker loop error", exc_info=True)
                busy = False
            metrics.flush_vendor_calls(self.store)  # per-minute counts for the console's health page
            if not busy:
                stop.wait(idle_seconds if self._rules_ok() else 5 * idle_seconds)
        log.info("worker %s stopped", self.worker_id)

    def process(self, claim: Claim, rules: RuleSet | None = None) -> Outcome:
        outcome = Outcome(claim.ticket_id)
        try:
            self._decide_and_write(claim, outcome, rules or self.rules())
        except NotFoundError as err:
            log.warning(
                "%s ticket %s: not found (%s); dropping its events", claim.source, claim.ticket_id, err
            )
            outcome.error = str(err)
            owed = self.store.outbox.cancel_all(claim.source, claim.ticket_id, self.clock(),
                                                f"ticket not found in the helpdesk: {err}")
            if owed:
                log.warning("%s ticket %s: %d unfinished write(s) not applied: the ticket is gone",
                            claim.source, claim.ticket_id, owed)
            self.store.complete(claim, self.clock())
        except RateLimitedError as err:
            # Not a failure: the helpdesk asked us to wait. The attempt does not
            # count towards the dead-letter limit, nor reset the backoff.
            outcome.error = str(err)
            log.warning(
                "%s ticket %s: rate limited, retrying in %.0fs",
                claim.source,
                claim.ticket_id,
                err.retry_after,
            )
            self.store.retry(claim, self.clock(), str(err), err.retry_after, count_attempt=False)
        except ValidationError as err:
            # The same update would be refused again: dead-lettered at once, with the vendor's words.
            outcome.error = str(err)
            log.error("%s ticket %s: the helpdesk refused the update; dead-lettered without retrying: %s",
                      claim.source, claim.ticket_id, err)
            self.store.dead_letter(claim, self.clock(), str(err))
        except ConfigurationError as err:
            outcome.error = str(err)
            log.error("%s ticket %s: configuration error, kept and retried in %ds: %s",
                      claim.source, claim.ticket_id, CONFIG_RETRY_SECONDS, err)
            record_config_error(self.store, claim.source, str(err), self.clock())
            self._config_error = True
            self.store.retry(claim, self.clock(), str(err), CONFIG_RETRY_SECONDS, count_attempt=False)
        except OverBudget as err:
            # Deferred, not failed: the attempt does not count towards the dead-letter limit.
            outcome.error = str(err)
            log.info("%s ticket %s: %s", claim.source, claim.ticket_id, err)
            self.store.retry(claim, self.clock(), "write budget", err.retry_after, count_attempt=False)
        except ConnectorError as err:
            outcome.error = str(err)
            self._fail(claim, str(err))
        except Exception as err:  # a bug or bad data must not stop the worker: record it
            outcome.error = f"{type(err).__name__}: {err}"
            # One line per kind of error per minute (a database outage fails every
            # ticket alike); the traceback at debug level.
            self._quiet.error(f"ticket:{type(err).__name__}", "%s ticket %s: unexpected error: %s: %s",
                               claim.source, claim.ticket_id, type(err).__name__, _first_line(err))
            log.debug("%s ticket %s: unexpected error", claim.source, claim.ticket_id, exc_info=True)
            self._fail(claim, outcome.error)
        return outcome

    def _fail(self, claim: Claim, error: str) -> None:
        attempts = claim.attempts + 1
        now = self.clock()
        if attempts >= self.max_attempts:
            log.error(
                "%s ticket %s: dead-lettered after %d attempts: %s",
                claim.source,
                claim.ticket_id,
                attempts,
                error,
            )
            self.store.dead_letter(claim, now, error)
            return
        delay = min(self.backoff_base * 2 ** (attempts - 1), MAX_BACKOFF_SECONDS)
        log.warning(
            "%s ticket %s: attempt %d failed (%s); retrying in %.0fs",
            claim.source,
            claim.ticket_id,
            attempts,
            error,
            delay,
        )
        self.store.retry(claim, now, error, delay)

    def _rules_ok(self) -> bool:
        try:
            self.rules()
        except RuleFileError:
            return False
        return True

    def helpdesk(self, rules: RuleSet) -> Helpdesk:
        return resolve_helpdesk(self._helpdesk, rules)

    def _decide_and_write(self, claim: Claim, outcome: Outcome, rules: RuleSet) -> None:
        helpdesk = self.helpdesk(rules)
        writer = OutboxWriter(self.store, self.clock, self.budget)
        # What an earlier attempt (this worker, or one that crashed) decided and did not finish is
        # completed first, exactly the parts not done, as decided then.
        pending = self.store.outbox.pending(claim.source, claim.ticket_id)
        if pending:
            remote = helpdesk.fetch_ticket(claim.ticket_id)
            for write in pending:
                left = len(write.remaining())
                log.info("%s ticket %s: completing write %d decided under rules %s (%d of %d part(s) left)",
                         claim.source, claim.ticket_id, write.id, write.rules_version, left, len(write.parts))
                writer.complete(helpdesk, write, remote)
            outcome.wrote = True
        elif self.economy and self._echo_only(claim, rules, helpdesk):
            # Only the bot's own write came back: the stored snapshot already holds its result.
            log.info("%s ticket %s: %d event(s) of the bot's own write; settled without a read",
                     claim.source, claim.ticket_id, len(claim.payloads))
            outcome.echo = True
            self.store.complete(claim, self.clock())
            return
        decision: Decision | None = None
        written: Decision | None = None
        holds: tuple[ownership.Hold, ...] = ()
        # Budget before reads: one update is reserved before the ticket is read, so a
        # ticket the budget would defer costs no read; unused, it is given back.
        held: list[tuple[datetime, int]] = self._batch_held.pop(claim.token, [])
        if self.economy and not held:
            self._reserve(claim, 1, self.clock(), held)
        try:
            remote, decision, written, holds = self._decide_loop(claim, outcome, rules, helpdesk, held)
        finally:
            for reservation in held:  # reserved and not spent on a call
                self._refund(claim, reservation)
        self._finish(claim, rules, remote, decision, written, holds)

    def _reserve(self, claim: Claim, units: int, now: datetime, held: list[tuple[datetime, int]]) -> None:
        """Reserve `units` updates (OverBudget when there is no room), remembered in `held`."""
        if self.budget is None or units <= 0:
            return
        self.budget.spend(claim.source, claim.ticket_id, units, now)
        held.append((now, units))

    def _refund(self, claim: Claim, reservation: tuple[datetime, int]) -> None:
        if self.budget is not None:
            self.budget.refund(claim.source, claim.ticket_id, reservation[0], reservation[1])

    def _echo_only(self, claim: Claim, rules: RuleSet, helpdesk: Helpdesk) -> bool:
        """Every queued event is the bot's own write coming back, and nothing else is owed.

        An event is an echo when the ticket's updated_at it carries lies within the
        stamps of the bot's last write (after the stamp it read, at most the stamp
        the write returned): a safe update refuses any change in between. The
        ticket must not be due and its snapshot decided under the rules in force.
        """
        if not claim.payloads or not helpdesk.safe_updates:
            # Without conditional updates another change could land between the read and the
            # write with a stamp inside the write's: only a read tells them apart.
            return False
        snapshot = self.store.get_snapshot(claim.source, claim.ticket_id)
        if snapshot is None or snapshot.get("rules_version") != rules.version:
            return False
        due = snapshot.get("next_check")
        if due is not None and due <= self.clock():
            return False
        wrote = (snapshot.get("ticket") or {}).get("wrote")
        if not wrote or len(wrote) != 2:
            return False
        before, after = parse_instant(wrote[0]), parse_instant(wrote[1])
        if after is None:
            return False
        for payload in claim.payloads:
            at = payload_updated_at(payload)
            if at is None or at > after or (before is not None and at <= before):
                return False
        return True

    def _extended(self, claim: Claim, helpdesk: Helpdesk) -> RemoteTicket | None:
        extend = getattr(helpdesk, "extend", None)
        if not self.economy or extend is None or not claim.payloads:
            return None
        snapshot = self.store.get_snapshot(claim.source, claim.ticket_id)
        if snapshot is None or not snapshot.get("ticket"):
            return None
        try:
            return extend(snapshot["ticket"], claim.payloads)
        except (KeyError, TypeError, ValueError) as err:  # an odd payload: the full read decides
            log.info("%s ticket %s: webhooks not applied to the stored ticket (%r); reading it",
                     claim.source, claim.ticket_id, err)
            return None

    def _decide_loop(self, claim: Claim, outcome: Outcome, rules: RuleSet, helpdesk: Helpdesk,
                     held: list[tuple[datetime, int]]) -> tuple:
        """Read, decide and write (re-read on a conflict); `held` is the budget reserved and unspent."""
        writer = OutboxWriter(self.store, self.clock)
        decision: Decision | None = None
        written: Decision | None = None
        holds: tuple[ownership.Hold, ...] = ()
        read_stamp: str | None = None
        for attempt in range(1, CONFLICT_RETRIES + 1):
            # The stored timeline extended by the webhooks where they suffice; else (and after a
            # conflict, which says the webhooks did not tell everything) a full read.
            extended = self._extended(claim, helpdesk) if attempt == 1 else None
            remote = extended if extended is not None else self._read(claim, helpdesk, first=attempt == 1)
            outcome.incremental = extended is not None
            read_stamp = remote.stamp
            now = self.clock()
            holds = holds_for(self.store, claim.source, remote, rules, now)
            decision = evaluate(remote.ticket, rules, to_epoch(now), holds)
            _log_holds(claim.source, claim.ticket_id, holds, decision)
            outcome.decision = decision
            changes = helpdesk.prepare(remote, changes_from(decision))
            metrics.decision(claim.source, not changes.is_empty())
            if changes.is_empty():
                log.info(
                    "%s ticket %s: nothing to change (priority %s, policy %s)",
                    claim.source,
                    claim.ticket_id,
                    decision.priority,
                    decision.policy,
                )
                break
            if remote.read_only:
                # Recorded in the snapshot below, never sent: the helpdesk would refuse it.
                log.info("%s ticket %s: not written, the ticket is %s (decided: %s)", claim.source,
                         claim.ticket_id, remote.read_only,
                         "; ".join(f"{a.type} [{a.rule}]" for a in decision.actions))
                outcome.read_only = remote.read_only
                break
            parts = split_parts(helpdesk, changes)
            self._reserve(claim, len(parts) - sum(units for _, units in held), now, held)
            write = writer.record(claim.source, claim.ticket_id, rules_version=rules.version,
                                  audit=_action_log(decision, remote), helpdesk=helpdesk, changes=changes)
            held.clear()  # the calls are made: the reservation is spent
            try:
                writer.complete(helpdesk, write, remote, fresh=True)
            except ConflictError:
                self.store.outbox.cancel(write.id, self.clock(),
                                         "the ticket changed before the first call; decided again")
                if attempt == CONFLICT_RETRIES:
                    raise
                if self.economy:
                    self._reserve(claim, 1, self.clock(), held)
                log.info(
                    "%s ticket %s: changed while deciding; reading it again", claim.source, claim.ticket_id
                )
                continue
            outcome.wrote = True
            metrics.writes(claim.source, decision.actions)
            written = decision
            log.info(
                "%s ticket %s: wrote %s",
                claim.source,
                claim.ticket_id,
                "; ".join(
                    f"{a.type} {a.value or a.values or ''}".strip() + f" [{a.rule}]"
                    for a in decision.actions
                    if a.type not in COMMENT_TYPES
                )
                or "a comment",
            )
            break
        if written is not None:
            remote.raw = {**(remote.raw or {}), "_deskpilot_wrote": [read_stamp, remote.stamp]}
        return remote, decision, written, holds

    def _finish(self, claim: Claim, rules: RuleSet, remote: RemoteTicket, decision: Decision | None,
                written: Decision | None, holds: tuple[ownership.Hold, ...]) -> None:
        now = self.clock()
        next_check = None
        if decision is not None and decision.next_check is not None and not remote.read_only:
            next_check = datetime.fromtimestamp(decision.next_check, UTC)
        after = remote.ticket
        if written is not None:
            after = apply_actions(remote.ticket, written.actions, to_epoch(now))
            holds = ownership.announce(holds, [a.body for a in written.actions])
        stored = ticket_json(after, remote.stamp, holds, remote.resume)
        if written is not None:
            stored["wrote"] = (remote.raw or {}).get("_deskpilot_wrote")
        self.store.save_snapshot(
            claim.source,
            claim.ticket_id,
            ticket=stored,
            decision=decision.to_dict() if decision is not None else {},
            next_check=next_check,
            rules_version=rules.version,
            now=now,
        )
        self.store.complete(claim, now)
        if self._config_error:
            clear_config_error(self.store, claim.source, now)
            self._config_error = False


def parse_instant(value: Any) -> datetime | None:
    """An ISO-8601 instant (a vendor's updated_at) as an aware datetime, else None."""
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        moment = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def payload_updated_at(payload: Any) -> datetime | None:
    """The ticket's updated_at an inbox event carries (None when it carries none).

    Zendesk event subscriptions: detail.updated_at; Deskpilot trigger bodies:
    updated_at; Freshdesk automation webhooks: freshdesk_webhook.ticket_updated_at.
    """
    if not isinstance(payload, dict):
        return None
    body = payload.get("body")
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, dict) and detail.get("updated_at"):
            return parse_instant(detail.get("updated_at"))
        fresh = body.get("freshdesk_webhook")
        if isinstance(fresh, dict) and fresh.get("ticket_updated_at"):
            return parse_instant(fresh.get("ticket_updated_at"))
        if "deskpilot" in body and body.get("updated_at"):
            return parse_instant(body.get("updated_at"))
    return None


def _first_line(err: BaseException) -> str:
    return (str(err).strip().splitlines() or [""])[0][:300]



def holds_for(store: Store, source: str, remote: RemoteTicket, rules: RuleSet, now: datetime
              ) -> tuple[ownership.Hold, ...]:
    """Fields an agent set by hand on this ticket (seen against the stored snapshot): the rules stand back."""
    previous = store.get_snapshot(source, remote.ticket.id)
    return ownership.observe(previous["ticket"] if previous else None, remote.ticket, rules, to_epoch(now))


def _log_holds(source: str, ticket_id: str, holds: tuple[ownership.Hold, ...], decision: Decision) -> None:
    for hold in holds:
        log.info("%s ticket %s: an agent set the %s to %s by hand; the rules that set it stand back%s",
                 source, ticket_id, hold.field, hold.value,
                 "" if hold.announced else " (the note says so)")


def ticket_json(ticket: Any, stamp: str | None = None, holds: Any = (),
                resume: dict[str, Any] | None = None) -> dict[str, Any]:
    """The stored snapshot of a ticket: enough to decide it again without reading the helpdesk.

    `resume` is the read's RemoteTicket.resume: where the connector's next read of the ticket
    may start (Zendesk: after the newest audit read); kept only when there is one.
    """
    stored = {
        "id": ticket.id,
        "status": ticket.status,
        "priority": ticket.priority,
        "subject": ticket.subject,
        "description": ticket.description,
        "tags": sorted(ticket.tags),
        "fields": ticket.fields,
        "group": ticket.group,
        "created_at": ticket.created_at,
        "stamp": stamp,
        "events": [[e.at, e.type, e.author, e.public, e.status, e.bot] for e in ticket.events],
        "holds": [hold.to_dict() for hold in holds],
    }
    if resume:
        stored["resume"] = resume
    return stored


def main() -> int:
    """`python -m jobs.worker`: the Procfile's worker process."""
    import signal
    import sys

    from config import ConfigError
    from jobs.budget import BudgetLimits, WriteBudget
    from jobs.runtime import ConnectorCache, RulesHolder, build_store, check_connector, process_settings

    settings = process_settings()
    holder = RulesHolder(settings.rules_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        store = build_store(settings)
        budget = WriteBudget(store, BudgetLimits.from_settings(settings))
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    connectors = ConnectorCache(settings)
    try:  # configuration problems (wrong URL, rights, unmapped statuses) show at once, in /healthz too
        check_connector(connectors(holder.rules), store, utc_now())
    except (RuleFileError, ConnectorError) as err:
        log.error("connector not checked at start-up: %s", err)
    worker = Worker(store, connectors, lambda: holder.rules,
                    max_attempts=settings.worker_max_attempts, budget=budget,
                    lease_seconds=settings.worker_lease_seconds)

    def reload_rules() -> None:
        while not stop.wait(5):
            holder.reload(force=False)

    threading.Thread(target=reload_rules, name="rules-reload", daemon=True).start()
    worker.run_forever(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
