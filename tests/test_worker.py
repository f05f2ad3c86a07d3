"""The worker against the Zendesk sandbox over HTTP, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.zendesk import ZendeskConnector
from engine.rulefile import load_rules
from jobs.worker import Worker, changes_from
from sandbox import serve_in_thread
from sandbox.zendesk import SANDBOX_TOKEN, create_sandbox
from sandbox.zendesk_state import CUSTOMER_ID, SANDBOX_EMAIL

RULES = load_rules(Path(__file__).resolve().parent.parent / "rules" / "deskpilot.yaml")
FIELDS = {name: int(i) for name, i in RULES.helpdesk["zendesk"].fields.items()}
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Mon 09:00 in Bratislava


@pytest.fixture
def sandbox():
    app = create_sandbox(clock=lambda: NOW)
    base, stop = serve_in_thread(app)
    yield app, base
    stop()


def connector(base: str, **options) -> ZendeskConnector:
    return ZendeskConnector("sandbox", SANDBOX_EMAIL, SANDBOX_TOKEN, api_url=base, field_ids=FIELDS,
                            sleep=lambda s: None, backoff_base=0, **options)


def create(app, subject="How do I record calls?", priority="urgent", plan="professional") -> str:
    client = app.test_client()
    response = client.post(
        "/api/v2/tickets.json",
        json={"ticket": {"subject": subject, "priority": priority, "requester_id": CUSTOMER_ID,
                         "comment": {"body": "help", "author_id": CUSTOMER_ID},
                         "custom_fields": [{"id": FIELDS["plan"], "value": plan}]}},
        auth=(f"{SANDBOX_EMAIL}/token", SANDBOX_TOKEN),
    )
    assert response.status_code == 201, response.json
    return str(response.json["ticket"]["id"])


def enqueue(store, ticket_id: str, key: str) -> None:
    store.enqueue(source="zendesk", dedupe_key=key, ticket_id=ticket_id, event_type="ticket.updated",
                  payload={"event_type": "ticket.updated"}, received_at=NOW)


def writes(app, ticket_id: str | None = None) -> list[dict]:
    return [r for r in app.state.requests if r["method"] == "PUT"
            and (ticket_id is None or f"/tickets/{ticket_id}.json" in r["path"])]


def make_worker(store, base, **kw) -> Worker:
    return Worker(store, connector(base), lambda: RULES, clock=lambda: NOW, **kw)


def test_decides_writes_once_and_converges(store, sandbox):
    app, base = sandbox
    ticket_id = create(app)
    enqueue(store, ticket_id, "e1")
    [outcome] = make_worker(store, base).run_once()
    assert outcome.wrote and outcome.error is None
    ticket = app.state.tickets[int(ticket_id)]
    assert ticket["priority"] == "normal"
    fields = {f["id"]: f["value"] for f in ticket["custom_fields"]}
    # P3, 9 office hours from Monday 09:00 CET -> Tuesday 10:00 CET.
    assert fields[FIELDS["sla_first_response_due"]] == "2026-11-24T09:00:00Z"
    assert fields[FIELDS["sla_first_response_state"]] == "running"
    [put] = writes(app, ticket_id)
    comment = put["body"]["ticket"]["comment"]
    assert comment["public"] is False and "downgrade-how-to" in comment["body"]
    assert put["body"]["ticket"]["safe_update"] is True
    reads = [r for r in app.state.requests if r["method"] == "GET"]
    assert len(reads) <= 3  # ticket, audits (and the API user once)
    # The bot's own update comes back as a webhook: it converges to no write.
    enqueue(store, ticket_id, "e2")
    [again] = make_worker(store, base).run_once()
    assert not again.wrote and len(writes(app, ticket_id)) == 1
    assert store.get_snapshot("zendesk", ticket_id)["decision"]["priority"] == "normal"
    logged = store.actions_for("zendesk", ticket_id)
    assert {a["type"] for a in logged} == {"set_priority", "note", "set_fields"}
    assert next(a for a in logged if a["type"] == "set_priority")["before"] == "urgent"


def test_nothing_to_change_means_no_write(store, sandbox):
    app, base = sandbox
    ticket_id = create(app, subject="Calls drop", priority="high", plan="basic")
    enqueue(store, ticket_id, "e1")
    [outcome] = make_worker(store, base).run_once()
    assert not outcome.wrote and writes(app) == []


def test_events_of_one_ticket_coalesce(store, sandbox):
    app, base = sandbox
    ticket_id = create(app)
    for n in range(5):
        enqueue(store, ticket_id, f"burst-{n}")
    outcomes = make_worker(store, base).run_once(limit=10)
    assert len(outcomes) == 1 and len(writes(app)) == 1


def test_conflict_rereads_and_retries(store, sandbox):
    app, base = sandbox
    ticket_id = create(app)
    enqueue(store, ticket_id, "e1")
    real = connector(base)
    calls = {"fetch": 0}

    class Racing:
        name = "zendesk"
        safe_updates = notes_in_bulk = True

        def fetch_ticket(self, tid, known=None):
            calls["fetch"] += 1
            remote = real.fetch_ticket(tid)
            if calls["fetch"] == 1:  # an agent edits the ticket between our read and our write
                app.test_client().post(f"/_sandbox/tickets/{tid}/comments",
                                       json={"author": "agent", "body": "Looking", "public": False})
            return remote

        def apply(self, remote, changes):
            return real.apply(remote, changes)

        def prepare(self, remote, changes):
            return real.prepare(remote, changes)

        def write_parts(self, changes):
            return real.write_parts(changes)

    [outcome] = Worker(store, Racing(), lambda: RULES, clock=lambda: NOW).run_once()
    assert outcome.wrote and calls["fetch"] == 2
    statuses = [r["status"] for r in writes(app, ticket_id)]
    assert statuses == [409, 200]


def test_transient_errors_retry_then_dead_letter(store, sandbox):
    app, base = sandbox
    ticket_id = create(app)
    enqueue(store, ticket_id, "e1")
    client = app.test_client()
    client.post("/_sandbox/failures", json={"status": 503, "count": 100})
    clock = {"now": NOW}
    worker = Worker(store, connector(base, max_attempts=1), lambda: RULES, clock=lambda: clock["now"],
                    max_attempts=3, backoff_base=1)
    for _ in range(3):
        [outcome] = worker.run_once()
        assert outcome.error
        clock["now"] += timedelta(hours=2)
    assert worker.run_once() == []
    health = store.health()
    assert health["dead_letters"] == 1 and health["last_dead_letter"]["ticket_id"] == ticket_id
    # A new event for the ticket starts over once the helpdesk is back.
    client.post("/_sandbox/failures", json={"status": 503, "count": 0})
    app.state.failures.clear()
    store.enqueue(source="zendesk", dedupe_key="e2", ticket_id=ticket_id, event_type="ticket.updated",
                  payload={}, received_at=clock["now"])
    [outcome] = worker.run_once()
    assert outcome.wrote


def test_killed_worker_loses_nothing(store, sandbox):
    app, base = sandbox
    ticket_id = create(app)
    enqueue(store, ticket_id, "e1")
    # A worker claims and dies before finishing: nothing completes the claim.
    assert len(store.claim("dead-worker", NOW, lease_seconds=60)) == 1
    worker = Worker(store, connector(base), lambda: RULES, clock=lambda: NOW + timedelta(seconds=61))
    [outcome] = worker.run_once()
    assert outcome.wrote and app.state.tickets[int(ticket_id)]["priority"] == "normal"


def test_two_workers_racing_write_each_ticket_once(store, sandbox):
    app, base = sandbox
    ids = [create(app, subject=f"How to set up line {n}") for n in range(12)]
    for n, ticket_id in enumerate(ids):
        for k in range(3):
            enqueue(store, ticket_id, f"{n}-{k}")
    done = threading.Barrier(2)

    def drain(name):
        worker = Worker(store, connector(base), lambda: RULES, clock=lambda: NOW, worker_id=name)
        done.wait()
        while worker.run_once(limit=2):
            pass

    threads = [threading.Thread(target=drain, args=(f"w{n}",)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for ticket_id in ids:
        assert len([w for w in writes(app, ticket_id) if w["status"] == 200]) == 1, ticket_id
        assert app.state.tickets[int(ticket_id)]["priority"] == "normal"
    assert store.health()["backlog"] == 0


def test_changes_from_folds_actions():
    from engine.decision import Action, Decision

    decision = Decision("1", "normal", "r", None, {}, actions=[
        Action("set_priority", "r", value="normal"), Action("note", "r", body="a"),
        Action("add_tags", "e", values=("x", "y")), Action("add_tags", "f", values=("y", "z")),
        Action("note", "e", body="b"), Action("set_fields", "sla-fields", values={"f": "1"}),
    ])
    changes = changes_from(decision)
    assert changes.priority == "normal" and changes.add_tags == ("x", "y", "z")
    assert changes.note == "a\n\nb" and changes.fields == {"f": "1"} and changes.reply is None

