"""API economy of the worker: echoes of its own writes cost no read, the budget is asked before reading."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from connectors.zendesk import ZendeskConnector
from engine.rulefile import load_rules
from jobs.budget import BudgetLimits, WriteBudget
from jobs.worker import Worker, payload_updated_at
from sandbox import serve_in_thread
from sandbox.zendesk import SANDBOX_TOKEN, create_sandbox
from sandbox.zendesk_state import CUSTOMER_ID, SANDBOX_EMAIL
from store.models import write_log

RULES = load_rules(Path(__file__).resolve().parent.parent / "rules" / "deskpilot.yaml")
FIELDS = {name: int(i) for name, i in RULES.helpdesk["zendesk"].fields.items()}
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Mon 09:00 in Bratislava


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now

    def tick(self, seconds: float = 5) -> None:
        self.now += timedelta(seconds=seconds)


@pytest.fixture
def clock():
    return Clock()


@pytest.fixture
def sandbox(clock):
    app = create_sandbox(clock=clock)
    base, stop = serve_in_thread(app)
    yield app, base
    stop()


def connector(base: str) -> ZendeskConnector:
    return ZendeskConnector("sandbox", SANDBOX_EMAIL, SANDBOX_TOKEN, api_url=base, field_ids=FIELDS,
                            sleep=lambda s: None, backoff_base=0)


def create(app, subject="How do I record calls?", priority="urgent") -> str:
    response = app.test_client().post(
        "/api/v2/tickets.json",
        json={"ticket": {"subject": subject, "priority": priority, "requester_id": CUSTOMER_ID,
                         "comment": {"body": "help", "author_id": CUSTOMER_ID},
                         "custom_fields": [{"id": FIELDS["plan"], "value": "professional"}]}},
        auth=(f"{SANDBOX_EMAIL}/token", SANDBOX_TOKEN),
    )
    assert response.status_code == 201, response.json
    return str(response.json["ticket"]["id"])


def event(store, clock, ticket_id: str, key: str, updated_at: str | None, actor: str = "1") -> None:
    """An event-subscription webhook as Zendesk sends it (detail carries the ticket's updated_at)."""
    body = {"type": "zen:event-type:ticket.priority_changed", "id": key,
            "subject": f"zen:ticket:{ticket_id}", "time": updated_at,
            "detail": {"id": ticket_id, "actor_id": actor, "updated_at": updated_at}}
    store.enqueue(source="zendesk", dedupe_key=key, ticket_id=ticket_id, event_type="ticket.priority_changed",
                  payload={"event_type": "ticket.priority_changed", "body": body}, received_at=clock())


def calls(app) -> int:
    return len(app.state.requests)


def worker(store, base, clock, **kw) -> Worker:
    return Worker(store, connector(base), lambda: RULES, clock=clock, **kw)


def test_payload_updated_at_reads_each_vendor_shape():
    assert payload_updated_at({"body": {"detail": {"updated_at": "2026-11-23T08:00:05Z"}}}) == \
        datetime(2026, 11, 23, 8, 0, 5, tzinfo=UTC)
    freshdesk = {"body": {"freshdesk_webhook": {"ticket_updated_at": "2026-11-23T08:00:05Z"}}}
    assert payload_updated_at(freshdesk) == datetime(2026, 11, 23, 8, 0, 5, tzinfo=UTC)
    assert payload_updated_at({"body": {"deskpilot": 1, "updated_at": "2026-11-23T08:00:05+00:00"}}) == \
        datetime(2026, 11, 23, 8, 0, 5, tzinfo=UTC)
    assert payload_updated_at({"body": {"detail": {"updated_at": "{{ticket.updated_at}}"}}}) is None
    assert payload_updated_at({"event_type": "ticket.updated"}) is None


def test_echo_of_the_bots_write_costs_no_call(store, sandbox, clock):
    app, base = sandbox
    ticket_id = create(app)
    clock.tick()
    event(store, clock, ticket_id, "e1", app.state.tickets[int(ticket_id)]["updated_at"], actor="9")
    clock.tick()
    [first] = worker(store, base, clock).run_once()
    assert first.wrote
    echo_stamp = app.state.tickets[int(ticket_id)]["updated_at"]
    before = calls(app)
    clock.tick()
    event(store, clock, ticket_id, "echo-1", echo_stamp)
    event(store, clock, ticket_id, "echo-2", echo_stamp)
    [echo] = worker(store, base, clock).run_once()
    assert echo.echo and echo.error is None and not echo.wrote
    assert calls(app) == before  # no read, no write
    assert store.claim("w", clock(), limit=10, lease_seconds=60) == []  # settled, nothing left queued


def test_a_change_after_the_bots_write_is_read(store, sandbox, clock):
    app, base = sandbox
    ticket_id = create(app)
    clock.tick()
    event(store, clock, ticket_id, "e1", app.state.tickets[int(ticket_id)]["updated_at"], actor="9")
    clock.tick()
    worker(store, base, clock).run_once()
    echo_stamp = app.state.tickets[int(ticket_id)]["updated_at"]
    clock.tick()
    # An agent edits the ticket: its updated_at moves past the stamp the bot's write returned.
    later = (datetime.fromisoformat(echo_stamp.replace("Z", "+00:00")) + timedelta(seconds=5))
    event(store, clock, ticket_id, "echo", echo_stamp)
    event(store, clock, ticket_id, "agent", later.strftime("%Y-%m-%dT%H:%M:%SZ"), actor="9")
    before = calls(app)
    [outcome] = worker(store, base, clock).run_once()
    assert not outcome.echo and calls(app) > before


def test_an_event_without_a_stamp_is_read(store, sandbox, clock):
    app, base = sandbox
    ticket_id = create(app)
    clock.tick()
    event(store, clock, ticket_id, "e1", None)
    clock.tick()
    worker(store, base, clock).run_once()
    clock.tick()
    event(store, clock, ticket_id, "e2", None)
    before = calls(app)
    [outcome] = worker(store, base, clock).run_once()
    assert not outcome.echo and calls(app) > before


def test_budget_is_asked_before_the_read(store, sandbox, clock):
    app, base = sandbox
    budget = WriteBudget(store, BudgetLimits(per_minute=1))
    budget.spend("zendesk", "other", 1, clock())  # the minute's one update is taken
    ticket_id = create(app)
    clock.tick(10)
    event(store, clock, ticket_id, "e1", app.state.tickets[int(ticket_id)]["updated_at"])
    before = calls(app)
    [outcome] = worker(store, base, clock, budget=budget).run_once()
    assert outcome.error and "write budget" in outcome.error
    assert calls(app) == before  # deferred without reading the ticket
    # It waits for the window to free (the reservation 10 s ago leaves after 51 s), not a second.
    assert store.claim("w", clock() + timedelta(seconds=45), limit=10, lease_seconds=60) == []
    clock.tick(52)
    [done] = worker(store, base, clock, budget=budget).run_once()
    assert done.wrote


def test_a_read_with_nothing_to_write_gives_the_budget_back(store, sandbox, clock):
    app, base = sandbox
    budget = WriteBudget(store, BudgetLimits(per_minute=5))
    ticket_id = create(app)
    clock.tick()
    event(store, clock, ticket_id, "e1", None)
    [first] = worker(store, base, clock, budget=budget).run_once()
    assert first.wrote
    clock.tick()
    event(store, clock, ticket_id, "e2", None)
    [second] = worker(store, base, clock, budget=budget).run_once()
    assert not second.wrote and second.error is None
    with store.engine.connect() as conn:
        units = conn.execute(sa.select(sa.func.sum(write_log.c.units))).scalar()
    assert units == 1  # the first write's update only; the second read's reservation went back


class Export:
    """A connector stand-in whose export lists three tickets with their updated_at."""

    name = "zendesk"

    def fetch_ticket(self, ticket_id):  # pragma: no cover - reconciliation never reads a ticket
        raise AssertionError("not expected")

    def changed_since(self, cursor, since):
        from connectors.base import ChangePage

        return ChangePage(["1", "2", "3", "4"], "c1", True,
                          updated_at={"1": "2026-11-23T08:00:00Z", "2": "2026-11-23T08:05:00Z",
                                      "3": "2026-11-23T08:00:00Z"})


def test_reconciliation_queues_only_tickets_newer_than_their_snapshot(store, clock):
    from jobs.reconcile import Reconciler

    def snap(ticket_id, stamp):
        store.save_snapshot("zendesk", ticket_id, ticket={"id": ticket_id, "stamp": stamp, "events": []},
                            decision={}, next_check=None, rules_version="v", now=clock())

    snap("1", "2026-11-23T08:00:00Z")  # already current: the export's updated_at is the one stored
    snap("2", "2026-11-23T08:00:00Z")  # changed since
    # 3 was never stored; 4 was listed without an updated_at
    clock.tick(3600)
    report = Reconciler(store, Export(), clock=clock).run()
    assert (report.seen, report.queued, report.current) == (4, 3, 1)
    queued = sorted(c.ticket_id for c in store.claim("w", clock(), limit=10, lease_seconds=60))
    assert queued == ["2", "3", "4"]


# -- the incremental timeline gives the decision a full read gives ---------------------------------

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "zendesk"


class Hooks:
    """The sandbox's webhook sender replaced by a list of delivered bodies."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def send(self, body: bytes) -> None:
        self.bodies.append(body)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return True

    def take(self) -> list[dict]:
        import json

        out = [{"body": json.loads(raw)} for raw in self.bodies]
        self.bodies.clear()
        return out


def _state(ticket) -> tuple:
    return (ticket.status, ticket.priority, sorted(ticket.tags), ticket.group, dict(ticket.fields),
            [(e.type, e.author, e.public, e.status, e.bot) for e in ticket.events])


STEPS = [
    ("customer reply", "comment", {"author": "customer", "body": "Still broken"}),
    ("agent public reply", "comment", {"author": "agent", "body": "Looking into it", "public": True}),
    ("agent internal note", "comment", {"author": "agent", "body": "Escalating", "public": False}),
    ("priority change", "put", {"priority": "high"}),
    ("tags change", "put", {"tags": ["vip", "voice"]}),
    ("custom field change", "put", {"custom_fields": [{"id": FIELDS["plan"], "value": "enterprise"}]}),
    ("set pending with a reply", "comment", {"author": "agent", "body": "Could you send logs?",
                                             "status": "pending"}),
    ("customer answers", "comment", {"author": "customer", "body": "Here they are"}),
    ("solved", "comment", {"author": "agent", "body": "Fixed", "status": "solved"}),
]


def test_webhooks_extend_the_timeline_to_the_decision_a_full_read_gives(store, clock):
    from engine.evaluate import evaluate
    from engine.ticket import to_epoch
    from jobs.worker import holds_for

    app = create_sandbox(clock=clock)
    hooks = Hooks()
    app.webhooks = hooks  # type: ignore[assignment]
    base, stop = serve_in_thread(app)
    try:
        helpdesk = connector(base)
        bot = worker(store, base, clock)
        ticket_id = create(app)
        clock.tick()
        event(store, clock, ticket_id, "created", None)
        bot.run_once()  # the first sight of a ticket is a full read
        hooks.take()  # its own write's echoes
        client = app.test_client()
        auth = (f"{SANDBOX_EMAIL}/token", SANDBOX_TOKEN)
        for name, how, data in STEPS:
            clock.tick(600)
            if how == "comment":
                assert client.post(f"/_sandbox/tickets/{ticket_id}/comments", json=data).status_code == 201
            else:
                assert client.put(f"/api/v2/tickets/{ticket_id}.json", json={"ticket": data},
                                  auth=auth).status_code == 200
            payloads = hooks.take()
            assert payloads, name
            snapshot = store.get_snapshot("zendesk", ticket_id)
            extended = helpdesk.extend(snapshot["ticket"], payloads)
            assert extended is not None, name
            full = helpdesk.fetch_ticket(ticket_id)
            assert _state(extended.ticket) == _state(full.ticket), name
            assert extended.stamp == full.stamp, name
            now = to_epoch(clock())
            decided = [evaluate(remote.ticket, RULES, now,
                                holds_for(store, "zendesk", remote, RULES, clock()))
                       for remote in (full, extended)]
            assert decided[0].to_dict() == decided[1].to_dict(), name
            # The worker takes the same webhooks: decided without a read, then its echoes settle free.
            for n, payload in enumerate(payloads):
                store.enqueue(source="zendesk", dedupe_key=f"{name}-{n}", ticket_id=ticket_id,
                              event_type="ticket.updated", payload=payload, received_at=clock())
            before = len(app.state.requests)
            [outcome] = bot.run_once()
            assert outcome.incremental and outcome.error is None, name
            assert all(r["method"] == "PUT" for r in app.state.requests[before:]), name
            echoes = hooks.take()
            if echoes:
                for n, payload in enumerate(echoes):
                    store.enqueue(source="zendesk", dedupe_key=f"{name}-echo-{n}", ticket_id=ticket_id,
                                  event_type="ticket.updated", payload=payload, received_at=clock())
                before = len(app.state.requests)
                [echo] = bot.run_once()
                assert echo.echo and len(app.state.requests) == before, name
    finally:
        stop()


def _recorded(name: str) -> dict:
    import json

    return json.loads((FIXTURES / name).read_text())


def _snapshot_before(body: dict) -> dict:
    """A stored ticket one minute older than the fixture's update, in the state before it."""
    detail = body["detail"]
    return {"id": detail["id"], "status": "open", "priority": "normal", "subject": detail["subject"],
            "description": detail["description"], "tags": [], "fields": {}, "group": None,
            "created_at": 1795703400, "stamp": "2026-11-20T14:59:00Z",
            "events": [[1795703400, "comment", "customer", True, None, False]], "holds": []}


@pytest.mark.parametrize("name", sorted(p.name for p in FIXTURES.glob("ticket_*.json")))
def test_each_recorded_webhook_extends_the_timeline_or_asks_for_a_read(name):
    from connectors.zendesk.timeline import extend_ticket

    body = _recorded(name)
    if not isinstance(body.get("detail"), dict) or not body["detail"].get("updated_at") \
            or not isinstance((body.get("event") or {}).get("meta"), dict):
        pytest.skip("not a ticket event body with updated_at and a sequence")
    kind = body["type"].removeprefix("zen:event-type:ticket.")
    out = extend_ticket(_snapshot_before(body), [{"body": body}], field_names={}, group_names={},
                        field_types={})
    suffices = kind in {"status_changed", "priority_changed", "comment_added", "custom_field_changed",
                        "tags_changed", "group_assignment_changed", "agent_assignment_changed",
                        "subject_changed", "description_changed", "custom_status_changed"}
    if not suffices:
        assert out is None, kind  # a merge, a deletion, a comment made private...: a full read
        return
    assert out is not None, kind
    ticket, stamp = out
    detail = body["detail"]
    assert stamp == detail["updated_at"]
    assert ticket.status == detail["status"].lower().replace("hold", "on_hold")
    assert ticket.priority == (detail["priority"] or "").lower() or None
    assert sorted(ticket.tags) == sorted(detail["tags"])
    if kind == "comment_added":
        comment = body["event"]["comment"]
        added = ticket.events[-1]
        assert (added.type, added.public) == ("comment", comment["is_public"])
        assert added.author == ("agent" if comment["author"]["is_staff"] else "customer")
    # An update whose other webhooks have not arrived is read in full.
    partial = dict(body, event=dict(body["event"], meta={"sequence": {"id": "x", "position": 1, "total": 2}}))
    assert extend_ticket(_snapshot_before(body), [{"body": partial}], field_names={}, group_names={},
                         field_types={}) is None


def test_the_timer_sweeps_when_a_next_check_comes_not_every_second(store, clock):
    from jobs.clock import DueTimer

    store.save_snapshot("zendesk", "7", ticket={"id": "7", "stamp": None, "events": []}, decision={},
                        next_check=START + timedelta(seconds=5), rules_version="v", now=START)
    sweeps = []
    timer = DueTimer(store, lambda: sweeps.append(clock()), clock)
    ticks = []
    for _ in range(9):
        ticks.append(timer.tick())
        clock.tick(1)
    # Ticks at +0 (the mark) .. +8: the sweep runs on the first tick at or after +5, once.
    assert ticks == [False, False, False, False, False, True, False, False, False]
    assert sweeps == [START + timedelta(seconds=5)]


def test_bulk_charges_count_vendor_calls():
    from types import SimpleNamespace

    from jobs.sweeps import bulk_charges

    chunk = [SimpleNamespace(ticket_id=str(n)) for n in range(100)]

    class BulkNotes:
        notes_in_bulk = True

        def note_many(self, *args, **kwargs):  # pragma: no cover - not called
            raise AssertionError

    class NotePerTicket:
        safe_updates = notes_in_bulk = False

        def note_many(self, *args, **kwargs):  # pragma: no cover - not called
            raise AssertionError

    class NoteInTheJob:
        def bulk_writes_per_ticket(self, *, reply, note):
            return 2 if note else 1

    # Zendesk: the close job and the note job, one call each for 100 tickets.
    zendesk = bulk_charges(BulkNotes(), chunk, reply="r", note="n")
    assert sum(u for _, u in zendesk) == 2 and zendesk[0] == ("0", 2)
    assert sum(u for _, u in bulk_charges(BulkNotes(), chunk, reply="r", note=None)) == 1
    # Freshdesk: one bulk job, then a note per ticket.
    freshdesk = bulk_charges(NotePerTicket(), chunk, reply=None, note="n")
    assert freshdesk[0] == ("0", 2) and all(u == 1 for _, u in freshdesk[1:])
    # A connector that notes inside close_many says what it costs per ticket.
    assert {u for _, u in bulk_charges(NoteInTheJob(), chunk, reply=None, note="n")} == {2}
