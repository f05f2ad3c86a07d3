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
    ConflictError,
    ConnectorError,
    Helpdesk,
    NotFoundError,
    RateLimitedError,
    RemoteTicket,
    TicketChanges,
)
from console import metrics
from engine.decision import Decision
from engine.evaluate import evaluate
from engine.rulefile import RuleFileError
from engine.ruleset import RuleSet
from engine.ticket import to_epoch
from jobs.budget import OverBudget, WriteBudget
from jobs.runtime import resolve_helpdesk
from store import Claim, Store

log = logging.getLogger(__name__)

CONFLICT_RETRIES = 3
MAX_BACKOFF_SECONDS = 3600


def utc_now() -> datetime:
    return datetime.now(UTC)


def changes_from(decision: Decision) -> TicketChanges:
    """Fold the engine's actions into one ticket update; notes join into one internal note."""
    changes = TicketChanges()
    notes: list[str] = []
    replies: list[str] = []
    tags: list[str] = []
    for action in decision.actions:
        if action.type == "set_priority":
            changes.priority = action.value
        elif action.type == "set_status":
            changes.status = action.value
        elif action.type == "assign_group":
            changes.group = action.value
        elif action.type == "add_tags":
            tags.extend(t for t in action.values if t not in tags)
        elif action.type == "set_fields":
            changes.fields.update(action.values)
        elif action.type == "note":
            notes.append(action.body)
        elif action.type == "reply":
            replies.append(action.body)
    changes.add_tags = tuple(tags)
    changes.note = "\n\n".join(notes) or None
    changes.reply = "\n\n".join(replies) or None
    return changes


def _action_log(decision: Decision, remote: RemoteTicket) -> list[dict[str, Any]]:
    ticket = remote.ticket
    before = {
        "set_priority": ticket.priority,
        "set_status": ticket.status,
        "assign_group": ticket.group,
        "add_tags": sorted(ticket.tags),
    }
    out = []
    for action in decision.actions:
        after = action.to_dict()
        after.pop("rule")
        after.pop("type")
        prior: Any = before.get(action.type)
        if action.type == "set_fields":
            prior = {name: ticket.fields.get(name) for name in action.values}
        out.append({"rule": action.rule, "type": action.type, "before": prior, "after": after})
    return out


@dataclass
class Outcome:
    ticket_id: str
    wrote: bool = False
    decision: Decision | None = None
    error: str | None = None
    calls: dict[str, int] = field(default_factory=dict)


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
        lease_seconds: int = 300,
        backoff_base: float = 30.0,
        budget: WriteBudget | None = None,
    ) -> None:
        self.store = store
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
        return [self.process(claim, rules) for claim in claims]

    def run_forever(self, stop: threading.Event, idle_seconds: float = 0.5, limit: int = 10) -> None:
        log.info("worker %s started", self.worker_id)
        while not stop.is_set():
            try:
                busy = bool(self.run_once(limit))
            except Exception:
                log.exception("worker loop error; retrying")
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
            self.store.complete(claim, self.clock())
        except RateLimitedError as err:
            outcome.error = str(err)
            log.warning(
                "%s ticket %s: rate limited, retrying in %.0fs",
                claim.source,
                claim.ticket_id,
                err.retry_after,
            )
            self.store.retry(claim, self.clock(), str(err), err.retry_after)
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
            log.exception("%s ticket %s: unexpected error", claim.source, claim.ticket_id)
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
        for attempt in range(1, CONFLICT_RETRIES + 1):
            remote = helpdesk.fetch_ticket(claim.ticket_id)
            now = self.clock()
            decision = evaluate(remote.ticket, rules, to_epoch(now))
            outcome.decision = decision
            changes = changes_from(decision)
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
            if self.budget is not None:
                self.budget.spend(claim.source, claim.ticket_id, _writes(helpdesk, changes), now)
            try:
                helpdesk.apply(remote, changes)
            except ConflictError:
                if attempt == CONFLICT_RETRIES:
                    raise
                log.info(
                    "%s ticket %s: changed while deciding; reading it again", claim.source, claim.ticket_id
                )
                continue
            outcome.wrote = True
            metrics.writes(claim.source, decision.actions)
            self.store.record_actions(
                claim.source,
                claim.ticket_id,
                rules_version=rules.version,
                actions=_action_log(decision, remote),
                now=now,
            )
            log.info(
                "%s ticket %s: wrote %s",
                claim.source,
                claim.ticket_id,
                "; ".join(
                    f"{a.type} {a.value or a.values or ''}".strip() + f" [{a.rule}]"
                    for a in decision.actions
                    if a.type not in ("note", "reply")
                )
                or "a comment",
            )
            break
        now = self.clock()
        next_check = None
        if outcome.decision is not None and outcome.decision.next_check is not None:
            next_check = datetime.fromtimestamp(outcome.decision.next_check, UTC)
        self.store.save_snapshot(
            claim.source,
            claim.ticket_id,
            ticket=_ticket_json(remote),
            decision=outcome.decision.to_dict(),
            next_check=next_check,
            rules_version=rules.version,
            now=now,
        )
        self.store.complete(claim, now)


def _writes(helpdesk: Helpdesk, changes: TicketChanges) -> int:
    """Ticket updates `apply` will make (the connector knows; one if it does not say)."""
    count = getattr(helpdesk, "writes_for", None)
    return count(changes) if count is not None else 1


def _ticket_json(remote: RemoteTicket) -> dict[str, Any]:
    ticket = remote.ticket
    return {
        "id": ticket.id,
        "status": ticket.status,
        "priority": ticket.priority,
        "subject": ticket.subject,
        "tags": sorted(ticket.tags),
        "fields": ticket.fields,
        "group": ticket.group,
        "created_at": ticket.created_at,
        "stamp": remote.stamp,
        "events": [[e.at, e.type, e.author, e.public, e.status] for e in ticket.events],
    }


def main() -> int:
    """`python -m jobs.worker`: the Procfile's worker process."""
    import signal
    import sys

    from config import ConfigError
    from jobs.budget import WriteBudget
    from jobs.runtime import ConnectorCache, RulesHolder, build_store, process_settings

    settings = process_settings()
    holder = RulesHolder(settings.rules_path)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        store = build_store(settings)
        budget = WriteBudget.from_env(store)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    worker = Worker(store, ConnectorCache(settings), lambda: holder.rules,
                    max_attempts=settings.worker_max_attempts, budget=budget)

    def reload_rules() -> None:
        while not stop.wait(5):
            holder.reload(force=False)

    threading.Thread(target=reload_rules, name="rules-reload", daemon=True).start()
    worker.run_forever(stop)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
