"""Sample tickets decided by the real engine and stored as the worker stores them.

For the console's tests, the board benchmark and a demo database: each ticket is
evaluated with the given rules at `now`, its snapshot saved through
Store.save_snapshots (so the board index is filled the same way) and the bot's
would-be changes recorded as actions. Deterministic for a given seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from engine.decision import CHANGE_ACTIONS
from engine.evaluate import evaluate
from engine.ruleset import RuleSet
from engine.ticket import Event, Ticket, to_epoch

SUBJECTS = (
    "All outbound calls fail in production", "Call recordings are late", "Invoice address",
    "How do I forward calls to my mobile?", "IVR menu plays the wrong greeting", "Number porting status",
    "Voicemail to email stopped", "Agents cannot log in to the app", "Staging webhook returns 500",
    "Add two seats to our plan", "Call quality is poor in the afternoon", "Export of call logs",
)
PLANS = ("basic", "professional", "advanced")
PRIORITIES = (None, "low", "normal", "high", "urgent")
GROUPS = ("Tier 1", "Tier 2", "Billing")


def sample_ticket(rng: random.Random, number: int, now: int, sample_tag: bool = False) -> Ticket:
    created = now - rng.randint(5 * 60, 30 * 24 * 3600 if rng.random() < 0.5 else 2 * 24 * 3600)
    events = [Event(created, "comment", "customer", True)]
    status = "open"
    roll = rng.random()
    if roll < 0.25:  # answered
        events.append(Event(created + rng.randint(600, 8 * 3600), "comment", "agent", True))
    elif roll < 0.35:  # waiting on the customer
        at = created + rng.randint(600, 4 * 3600)
        events.append(Event(at, "comment", "agent", True))
        events.append(Event(at + 1, "status", status="pending"))
        status = "pending"
    elif roll < 0.45:  # solved
        at = created + rng.randint(3600, 20 * 3600)
        events.append(Event(at, "comment", "agent", True))
        events.append(Event(at + 60, "status", status="solved"))
        status = "solved"
    events = [e for e in events if e.at <= now]
    if status != "open" and not any(e.type == "status" for e in events):
        status = "open"
    return Ticket(
        id=str(number),
        status=status,
        created_at=created,
        priority=rng.choice(PRIORITIES),
        subject=SUBJECTS[number % len(SUBJECTS)],
        description="",
        tags=frozenset((["vip"] if rng.random() < 0.1 else []) + (["sample"] if sample_tag else [])),
        fields={"plan": rng.choice(PLANS)},
        events=tuple(events),
        group=rng.choice(GROUPS),
    )


def ticket_json(ticket: Ticket) -> dict[str, Any]:
    """The worker's snapshot form of a ticket (jobs/worker.py `_ticket_json`)."""
    return {
        "id": ticket.id, "status": ticket.status, "priority": ticket.priority, "subject": ticket.subject,
        "tags": sorted(ticket.tags), "fields": ticket.fields, "group": ticket.group,
        "created_at": ticket.created_at, "stamp": None,
        "events": [[e.at, e.type, e.author, e.public, e.status] for e in ticket.events],
    }


def action_log(ticket: Ticket, decision: Any) -> list[dict]:
    before = {"set_priority": ticket.priority, "set_status": ticket.status, "assign_group": ticket.group,
              "add_tags": sorted(ticket.tags)}
    out = []
    for action in decision.actions:
        if action.type not in CHANGE_ACTIONS and action.type != "note":
            continue
        after = action.to_dict()
        after.pop("rule"), after.pop("type")
        prior = before.get(action.type)
        if action.type == "set_fields":
            prior = {name: ticket.fields.get(name) for name in action.values}
        out.append({"rule": action.rule, "type": action.type, "before": prior, "after": after})
    return out


def generate(rules: RuleSet, now: datetime, count: int, *, seed: int = 7, start: int = 1
             ) -> Iterator[tuple[Ticket, Any]]:
    rng = random.Random(seed)
    epoch = to_epoch(now)
    for number in range(start, start + count):
        ticket = sample_ticket(rng, number, epoch, sample_tag=start >= DEMO_FIRST_ID)
        yield ticket, evaluate(ticket, rules, epoch)


def seed(store: Any, rules: RuleSet, now: datetime, count: int, *, source: str = "zendesk", seed: int = 7,
         start: int = 1, batch: int = 1000, actions: bool = True, schedule: bool = True) -> int:
    """Store `count` sample tickets' snapshots (and their actions); returns how many.

    schedule=False leaves next_check empty, so sweeps never look these tickets up
    in the helpdesk (the demo's history tickets exist only in the database).
    """
    from datetime import UTC

    pending: list[dict] = []
    logs: list[tuple[str, list[dict]]] = []
    stored = 0
    for ticket, decision in generate(rules, now, count, seed=seed, start=start):
        next_check = None
        if schedule and decision.next_check is not None:
            next_check = datetime.fromtimestamp(decision.next_check, UTC)
        pending.append({"ticket_id": ticket.id, "ticket": ticket_json(ticket), "decision": decision.to_dict(),
                        "next_check": next_check, "rules_version": rules.version})
        if actions:
            log = action_log(ticket, decision)
            if log:
                logs.append((ticket.id, log))
        if len(pending) >= batch:
            stored += _flush(store, source, pending, logs, rules.version, now)
    stored += _flush(store, source, pending, logs, rules.version, now)
    return stored


def _flush(store: Any, source: str, pending: list[dict], logs: list, version: str, now: datetime) -> int:
    count = len(pending)
    if pending:
        store.save_snapshots(source, pending, now)
    if logs:
        store.record_actions_many(source, logs, rules_version=version, now=now)
    pending.clear()
    logs.clear()
    return count


DEMO_ADMIN = "admin@deskpilot.invalid"
# Like the sandbox's webhook secret, public by design: --demo only runs against the
# local sandbox, where there is nothing to protect. Set ADMIN_EMAIL to choose your own.
DEMO_PASSWORD = "deskpilot-demo"  # noqa: S105
DEMO_FIRST_ID = 90001


def seed_demo_console(service: Any, count: int = 150) -> None:
    """`--demo`: history for the console and a way in.

    Stores `count` sample tickets (ids from 90001, tagged `sample`, decided by the
    rules in force over the last 30 days) so the board's compliance and chart have
    data, parks one of them as a dead letter, and, when ADMIN_EMAIL is unset,
    creates the admin admin@deskpilot.invalid with the public demo password.
    """
    import logging
    from datetime import UTC

    from console import data

    log = logging.getLogger("deskpilot.run")
    store, settings = service.store, service.settings
    now = datetime.now(UTC)
    try:
        rules = service.rules.rules
    except Exception as err:
        log.warning("demo: no sample history for the console (rules not loaded: %s)", err)
        rules = None
    if rules is not None and store.get_snapshot(settings.helpdesk, str(DEMO_FIRST_ID)) is None:
        seed(store, rules, now, count, source=settings.helpdesk, seed=20261124, start=DEMO_FIRST_ID,
             schedule=False)
        parked = str(DEMO_FIRST_ID + count - 1)
        for claim in store.claim_tickets(settings.helpdesk, [parked], "demo", now):
            store.dead_letter(claim, now, "demo: ConnectorError: GET ticket returned 500 (replay me)")
        log.info("demo: stored %d sample tickets (ids %d+) for the console's history", count, DEMO_FIRST_ID)
    if not settings.admin_email:
        data.create_user(store, DEMO_ADMIN, DEMO_PASSWORD, now, replace=True)
        log.info("demo: console at %s/console/ - sign in as %s, password %s (the public demo login)",
                 service.base_url, DEMO_ADMIN, DEMO_PASSWORD)
    else:
        log.info("demo: console at %s/console/ - sign in as %s", service.base_url, settings.admin_email)
