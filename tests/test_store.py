"""Store behaviour on SQLite and PostgreSQL: inbox, leases, races, records, health, migrations."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from store import DEFAULT_DATABASE_URL, Claim, Store
from store.core import due_tickets_query
from store.migrate import downgrade
from store.models import inbox_events, metadata, ticket_work

T0 = datetime(2025, 3, 3, 9, 0, tzinfo=UTC)
ZD = "zendesk"


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def event(store: Store, key: str, ticket: str = "1", *, when: float = 0, **payload) -> bool:
    return store.enqueue(
        source=ZD,
        dedupe_key=key,
        ticket_id=ticket,
        event_type="ticket.updated",
        payload={"key": key, **payload},
        received_at=at(when),
    )


def inbox_statuses(store: Store) -> dict[str, str]:
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(inbox_events.c.payload, inbox_events.c.status))
        return {row.payload["key"]: row.status for row in rows}


def only(claims: list[Claim]) -> Claim:
    assert len(claims) == 1, claims
    return claims[0]


# -- inbox and coalescing ------------------------------------------------------------


def test_enqueue_dedupes_per_source(store):
    assert event(store, "evt-1") is True
    assert event(store, "evt-1", payload_changed=True) is False
    assert store.enqueue(
        source="freshdesk", dedupe_key="evt-1", ticket_id="1", event_type="x",
        payload={"key": "fd"}, received_at=T0,
    ) is True
    assert store.health()["inbox_pending"] == 2
    claims = store.claim("w", at(1))
    assert sorted((c.source, c.payloads) for c in claims) == [
        ("freshdesk", [{"key": "fd"}]),
        (ZD, [{"key": "evt-1"}]),
    ]


def test_claim_coalesces_a_tickets_events_in_arrival_order(store):
    event(store, "b", "7", when=2)
    event(store, "a", "7", when=1)  # stored later, but arrived first
    event(store, "c", "7", when=3, text="héllo ✓")
    event(store, "x", "8", when=4)
    claims = {c.ticket_id: c for c in store.claim("w", at(10))}
    assert set(claims) == {"7", "8"}
    assert [p["key"] for p in claims["7"].payloads] == ["a", "b", "c"]
    assert claims["7"].payloads[2]["text"] == "héllo ✓"
    assert len(claims["7"].event_ids) == 3 and claims["7"].attempts == 0
    assert claims["7"].token != claims["8"].token


def test_claim_takes_oldest_available_first_and_respects_limit(store):
    for ticket, when in (("late", 30), ("early", 10), ("middle", 20), ("future", 100)):
        event(store, ticket, ticket, when=when)
    assert [c.ticket_id for c in store.claim("w", at(50), limit=2)] == ["early", "middle"]
    assert [c.ticket_id for c in store.claim("w", at(50), limit=5)] == ["late"]
    assert store.claim("w", at(50)) == []
    assert store.claim("w", at(50), limit=0) == []


def test_complete_marks_events_done_and_empties_the_queue(store):
    event(store, "a")
    store.complete(only(store.claim("w", at(1))), at(2))
    assert inbox_statuses(store) == {"a": "done"}
    assert store.health()["backlog"] == 0
    assert store.claim("w", at(3)) == []


# -- leases ----------------------------------------------------------------------------


def test_expired_lease_is_reclaimed_and_the_old_holder_is_ignored(store, caplog):
    event(store, "a")
    first = only(store.claim("w1", at(1), lease_seconds=60))
    assert store.claim("w2", at(30)) == []  # still leased
    second = only(store.claim("w2", at(62)))  # w1 died: nothing is lost
    assert second.event_ids == first.event_ids and second.token != first.token
    assert second.attempts == 1  # the lost lease counts as a failed attempt

    with caplog.at_level(logging.WARNING, logger="store"):
        store.complete(first, at(63))
        store.retry(first, at(63), "late", 5)
        store.dead_letter(first, at(63), "late")
    assert caplog.text.count("no longer held") == 3
    assert inbox_statuses(store) == {"a": "pending"}

    store.complete(second, at(64))
    assert inbox_statuses(store) == {"a": "done"}
    assert store.health()["backlog"] == 0


def test_event_arriving_during_processing_is_not_lost(store):
    event(store, "a")
    held = only(store.claim("w", at(1)))
    event(store, "b", when=2)  # arrives while "a" is being processed
    store.complete(held, at(3))
    assert inbox_statuses(store) == {"a": "done", "b": "pending"}
    again = only(store.claim("w", at(4)))
    assert [p["key"] for p in again.payloads] == ["b"]
    store.complete(again, at(5))
    assert store.health()["backlog"] == 0


def test_sync_requested_during_processing_runs_once_more(store):
    event(store, "a")
    held = only(store.claim("w", at(1)))
    assert store.request_sync(ZD, ["1"], at(2), "sweep") == 0  # already queued
    store.complete(held, at(3))
    again = only(store.claim("w", at(4)))
    assert again.event_ids == [] and again.payloads == []
    store.complete(again, at(5))
    assert store.claim("w", at(6)) == []


# -- request_sync ----------------------------------------------------------------------


def test_request_sync_counts_only_newly_queued_tickets(store):
    event(store, "a", "1")
    assert store.request_sync(ZD, ["1", "2", "3", "3", 4], at(1), "reconcile") == 3
    assert store.request_sync(ZD, ["2", "5"], at(1), "reconcile") == 1
    assert store.request_sync(ZD, [], at(1), "reconcile") == 0
    claims = {c.ticket_id: c for c in store.claim("w", at(2), limit=10)}
    assert set(claims) == {"1", "2", "3", "4", "5"}
    assert claims["1"].payloads == [{"key": "a"}] and claims["2"].payloads == []


def test_request_sync_handles_large_batches(store):
    ids = [str(n) for n in range(1, 1301)]
    assert store.request_sync(ZD, ids, T0, "reconcile") == 1300
    assert store.request_sync(ZD, ids, T0, "reconcile") == 0
    assert store.health()["backlog"] == 1300


def test_retry_backs_off_and_only_a_new_event_cuts_it_short(store):
    event(store, "a")
    held = only(store.claim("w", at(1)))
    store.retry(held, at(2), "HTTP 503 from Zendesk", delay_seconds=60)
    assert store.claim("w", at(61)) == []
    store.request_sync(ZD, ["1"], at(30), "sweep")  # a sweep does not defeat back-off
    assert store.claim("w", at(61)) == []
    retried = only(store.claim("w", at(62)))
    assert retried.attempts == 1 and retried.event_ids == held.event_ids

    store.retry(retried, at(63), "again", delay_seconds=600)
    event(store, "b", when=64)  # new information: worth trying now
    fresh = only(store.claim("w", at(65)))
    assert fresh.attempts == 2 and [p["key"] for p in fresh.payloads] == ["a", "b"]


# -- dead letters ------------------------------------------------------------------------


def test_dead_letter_parks_the_ticket_until_a_new_event(store):
    event(store, "a", "9")
    event(store, "ok", "10")
    claims = {c.ticket_id: c for c in store.claim("w", at(1))}
    store.dead_letter(claims["9"], at(2), "rule file rules/sla.yaml: bad field")
    store.complete(claims["10"], at(2))

    health = store.health()
    assert health["database"] == "ok"
    assert (health["backlog"], health["inbox_pending"], health["dead_letters"]) == (0, 0, 1)
    assert health["last_dead_letter"] == {
        "ticket_id": "9",
        "error": "rule file rules/sla.yaml: bad field",
        "at": at(2).isoformat(),
    }
    [parked] = store.dead_letters()
    assert (parked["source"], parked["ticket_id"], parked["at"], parked["attempts"]) == (
        ZD, "9", at(2), 1,
    )
    assert inbox_statuses(store)["a"] == "dead"
    assert store.claim("w", at(3)) == []
    assert store.request_sync(ZD, ["9"], at(3), "sweep") == 0  # sweeps leave it parked
    assert store.claim("w", at(4)) == []

    event(store, "b", "9", when=5)  # a new event starts fresh work
    fresh = only(store.claim("w", at(6)))
    assert fresh.attempts == 0 and [p["key"] for p in fresh.payloads] == ["b"]
    assert store.health()["dead_letters"] == 0 and store.dead_letters() == []


def test_dead_letter_with_newer_work_queued_requeues_the_ticket(store):
    event(store, "a")
    held = only(store.claim("w", at(1)))
    event(store, "b", when=2)
    store.dead_letter(held, at(3), "poison")
    assert inbox_statuses(store) == {"a": "dead", "b": "pending"}
    fresh = only(store.claim("w", at(4)))
    assert fresh.attempts == 0 and [p["key"] for p in fresh.payloads] == ["b"]


def test_dead_letters_are_listed_newest_first_with_a_limit(store):
    for n in range(3):
        event(store, f"e{n}", str(n), when=n)
    for n, held in enumerate(sorted(store.claim("w", at(5)), key=lambda c: c.ticket_id)):
        store.dead_letter(held, at(10 + n), f"error {n}")
    assert [d["ticket_id"] for d in store.dead_letters(limit=2)] == ["2", "1"]
    assert store.health()["last_dead_letter"]["error"] == "error 2"


def test_nul_characters_in_payloads_and_errors_are_stored(store):
    # jsonb and text refuse NUL on PostgreSQL; SQLite keeps it as is.
    event(store, "a", text="before\x00after", literal="\\u0000")
    held = only(store.claim("w", at(1)))
    kept = "\x00" if store.engine.dialect.name == "sqlite" else "\ufffd"
    assert held.payloads[0]["text"] == f"before{kept}after"
    assert held.payloads[0]["literal"] == "\\u0000"
    store.dead_letter(held, at(2), "bad byte \x00" + "x" * 5000)
    [parked] = store.dead_letters()
    assert parked["error"].startswith("bad byte \ufffd") and len(parked["error"]) == 4000


# -- instants --------------------------------------------------------------------------


def test_naive_datetimes_are_rejected(store):
    naive = datetime(2025, 3, 3, 9, 0)  # noqa: DTZ001 - the point of the test
    with pytest.raises(ValueError, match="received_at"):
        event_at = {"source": ZD, "dedupe_key": "k", "ticket_id": "1", "event_type": "x"}
        store.enqueue(**event_at, payload={}, received_at=naive)
    with pytest.raises(ValueError, match="now"):
        store.claim("w", naive)
    with pytest.raises(ValueError, match="next_check"):
        store.save_snapshot(ZD, "1", ticket={}, decision={}, next_check=naive,
                            rules_version="v1", now=T0)
    assert store.health()["inbox_pending"] == 0


def test_instants_read_back_as_aware_utc(store):
    paris = timezone(timedelta(hours=1))
    store.save_snapshot(ZD, "1", ticket={"id": 1}, decision={"breach": False},
                        next_check=datetime(2025, 3, 3, 11, 0, tzinfo=paris),
                        rules_version="v1", now=T0)
    snapshot = store.get_snapshot(ZD, "1")
    assert snapshot["next_check"] == datetime(2025, 3, 3, 10, 0, tzinfo=UTC)
    assert snapshot["next_check"].tzinfo is UTC and snapshot["updated_at"].tzinfo is UTC


# -- snapshots, due tickets, actions, cursors --------------------------------------------


def test_snapshot_round_trip_and_overwrite(store):
    assert store.get_snapshot(ZD, "1") is None
    store.save_snapshot(ZD, "1", ticket={"status": "open", "tags": ["vip"]},
                        decision={"actions": []}, next_check=at(60), rules_version="v1",
                        now=T0)
    store.save_snapshot(ZD, "1", ticket={"status": "solved"}, decision={"done": True},
                        next_check=None, rules_version="v2", now=at(5))
    assert store.get_snapshot(ZD, "1") == {
        "ticket": {"status": "solved"},
        "decision": {"done": True},
        "next_check": None,
        "rules_version": "v2",
        "updated_at": at(5),
    }
    assert store.get_snapshot("freshdesk", "1") is None


def test_due_tickets_are_overdue_first_and_skip_queued_ones(store):
    for ticket, next_check in (("a", at(30)), ("b", at(10)), ("c", at(20)), ("d", at(99))):
        store.save_snapshot(ZD, ticket, ticket={}, decision={}, next_check=next_check,
                            rules_version="v1", now=T0)
    store.save_snapshot(ZD, "never", ticket={}, decision={}, next_check=None,
                        rules_version="v1", now=T0)
    assert store.due_tickets(at(30)) == [(ZD, "b"), (ZD, "c"), (ZD, "a")]
    assert store.due_tickets(at(30), limit=1) == [(ZD, "b")]
    store.request_sync(ZD, ["b"], at(30), "sweep")  # queued already: not due again
    assert store.due_tickets(at(30)) == [(ZD, "c"), (ZD, "a")]


def test_due_tickets_query_uses_the_next_check_index(store):
    query = due_tickets_query(T0, 1000)
    with store.engine.connect() as conn:
        compiled = query.compile(conn, compile_kwargs={"literal_binds": False})
        if conn.dialect.name == "postgresql":
            # Tables are tiny here, so ask the planner what it would do at scale.
            conn.exec_driver_sql("SET enable_seqscan = off")
            plan = conn.exec_driver_sql(f"EXPLAIN {compiled}", compiled.params).all()
        else:
            params = tuple(compiled.params[name] for name in compiled.positiontup)
            plan = conn.exec_driver_sql(f"EXPLAIN QUERY PLAN {compiled}", params).all()
    assert "ix_ticket_snapshots_next_check" in " ".join(str(row) for row in plan)


def test_actions_are_appended_and_read_back_in_order(store):
    store.record_actions(ZD, "1", rules_version="v1", now=T0, actions=[
        {"rule": "vip-priority", "type": "set_priority", "before": "normal", "after": "high"},
        {"rule": "sla-tag", "type": "add_tags", "before": None, "after": ["sla:breach"]},
    ])
    store.record_actions(ZD, "1", rules_version="v2", now=at(1), actions=[])
    store.record_actions(ZD, "1", rules_version="v2", now=at(2), actions=[
        {"rule": "escalate", "type": "set_group", "before": {"id": 1}, "after": {"id": 2}},
    ])
    actions = store.actions_for(ZD, "1")
    assert [(a["rule"], a["type"], a["rules_version"]) for a in actions] == [
        ("vip-priority", "set_priority", "v1"),
        ("sla-tag", "add_tags", "v1"),
        ("escalate", "set_group", "v2"),
    ]
    assert actions[1]["before"] is None and actions[1]["after"] == ["sla:breach"]
    assert actions[2]["after"] == {"id": 2} and actions[2]["created_at"] == at(2)
    assert store.actions_for(ZD, "2") == []
    with pytest.raises(ValueError, match=r"actions\[0\] has no rule"):
        store.record_actions(ZD, "1", rules_version="v1", now=T0, actions=[{"type": "x"}])


def test_cursors(store):
    assert store.get_cursor(ZD, "incremental") is None
    store.set_cursor(ZD, "incremental", "1700000000", T0)
    store.set_cursor(ZD, "incremental", "1700000600", at(1))
    store.set_cursor("freshdesk", "incremental", "abc", T0)
    assert store.get_cursor(ZD, "incremental") == "1700000600"
    assert store.get_cursor("freshdesk", "incremental") == "abc"


# -- concurrency ---------------------------------------------------------------------------


def _in_threads(count: int, target) -> None:
    start = threading.Barrier(count)
    errors: list[BaseException] = []

    def run(index: int) -> None:
        try:
            start.wait()
            target(index)
        except BaseException as err:  # surfaced below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads), "a thread hung"
    assert not errors, errors


def test_racing_workers_claim_each_ticket_exactly_once(store):
    tickets = [str(n) for n in range(60)]
    store.request_sync(ZD, tickets, T0, "race")
    claimed: list[str] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        while batch := store.claim(f"w{index}", at(1), limit=3):
            with lock:
                claimed.extend(c.ticket_id for c in batch)

    _in_threads(6, worker)
    # With SKIP LOCKED a worker may stop early while others still hold row locks.
    claimed.extend(c.ticket_id for c in store.claim("late", at(1), limit=100))
    assert sorted(claimed, key=int) == tickets


def test_events_racing_workers_are_each_processed_exactly_once(store):
    producers, per_producer, workers, tickets = 3, 40, 3, 4
    processed: list[int] = []
    finished: list[int] = []
    lock = threading.Lock()

    def run(index: int) -> None:
        if index < producers:
            for n in range(per_producer):
                event(store, f"p{index}-{n}", str(n % tickets), when=n)
            with lock:
                finished.append(index)
            return
        while True:
            all_produced = len(finished) == producers  # read before claiming
            batch = store.claim(f"w{index}", at(100), limit=2)
            for held in batch:
                with lock:
                    processed.extend(held.event_ids)
                store.complete(held, at(101))
            if all_produced and not batch:
                return

    _in_threads(producers + workers, run)
    # Under SKIP LOCKED a worker can see nothing while another still holds a ticket.
    while batch := store.claim("drain", at(102), limit=100):
        for held in batch:
            processed.extend(held.event_ids)
            store.complete(held, at(103))

    assert len(processed) == len(set(processed)) == producers * per_producer
    health = store.health()
    assert (health["backlog"], health["inbox_pending"]) == (0, 0)


# -- engine, health, migrations -------------------------------------------------------------


def test_health_reports_an_unreachable_or_unmigrated_database(tmp_path):
    unmigrated = Store(f"sqlite:///{tmp_path / 'empty.db'}")
    assert unmigrated.health() == {
        "database": "error: OperationalError", "backlog": None, "inbox_pending": None,
        "dead_letters": None, "last_dead_letter": None,
    }
    refused = Store("postgresql://deskpilot:secret@127.0.0.1:1/nothing")
    assert refused.health()["database"] == "error: OperationalError"
    assert "secret" not in repr(refused)


def test_bad_urls_name_what_to_fix(tmp_path):
    assert DEFAULT_DATABASE_URL == "sqlite:///deskpilot.db"
    with pytest.raises(ValueError, match="does not exist"):
        Store(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")
    with pytest.raises(ValueError, match="only sqlite"):
        Store("mysql+pymysql://u:p@h/db")
    with pytest.raises(ValueError, match="not a valid"):
        Store("not a url")
    assert Store("postgres://u@h/db").engine.url.drivername == "postgresql+psycopg"


def test_sqlite_connections_use_wal_and_busy_timeout(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'x.db'}")
    with store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() >= 1000
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1


def _schema_diff(engine: sa.Engine, target: sa.MetaData) -> list:
    with engine.connect() as conn:
        context = MigrationContext.configure(
            conn, opts={"compare_type": True, "compare_server_default": True}
        )
        return compare_metadata(context, target)


def test_migration_matches_the_models(store):
    assert _schema_diff(store.engine, metadata) == []
    # The comparison can fail: a model the migration does not create shows up.
    drifted = sa.MetaData()
    for table in metadata.tables.values():
        table.to_metadata(drifted)
    drifted.tables["ticket_work"].append_column(sa.Column("extra", sa.Integer()))
    assert [d[0] for d in _schema_diff(store.engine, drifted)] == ["add_column"]


def test_migrate_is_idempotent_and_reversible(store):
    event(store, "a")
    store.migrate()
    assert store.health()["inbox_pending"] == 1  # data survives a second migrate
    downgrade(store.engine, "base")
    assert set(sa.inspect(store.engine).get_table_names()) <= {"alembic_version"}
    store.migrate()
    assert {"inbox_events", "ticket_work"} <= set(sa.inspect(store.engine).get_table_names())


def test_concurrent_migrate_at_start_is_safe(database_url):
    stores = [Store(database_url) for _ in range(4)]
    try:
        _in_threads(4, lambda index: stores[index].migrate())
        with stores[0].engine.connect() as conn:
            versions = conn.exec_driver_sql("SELECT version_num FROM alembic_version").all()
            assert conn.execute(sa.select(sa.func.count()).select_from(ticket_work)).scalar() == 0
        assert versions == [("0003_history_cache",)]
    finally:
        for instance in stores:
            instance.engine.dispose()


def test_processes_migrating_at_once_all_succeed(database_url):
    # Separate processes, as gunicorn workers and the job runner start side by side.
    script = "import sys; from store import Store; Store(sys.argv[1]).migrate()"
    root = Path(__file__).resolve().parents[1]
    runs = [
        subprocess.Popen([sys.executable, "-c", script, database_url], cwd=root,
                         stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    failures = [run.stderr.read() for run in runs if run.wait(timeout=60) != 0]
    assert failures == []
    store = Store(database_url)
    try:
        assert _schema_diff(store.engine, metadata) == []
    finally:
        store.engine.dispose()


def test_purge_keeps_work_and_evidence(store):
    from datetime import timedelta

    t0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)
    for n, ticket in enumerate(["old", "recent", "pending", "dead"]):
        store.enqueue(source="zendesk", dedupe_key=f"e{n}", ticket_id=ticket, event_type="x", payload={},
                      received_at=t0)
    claims = {c.ticket_id: c for c in store.claim("w", t0, limit=10)}
    store.complete(claims["old"], t0)
    store.complete(claims["recent"], t0 + timedelta(days=20))
    store.dead_letter(claims["dead"], t0, "boom")
    store.retry(claims["pending"], t0, "later", 60)
    assert store.purge(t0 + timedelta(days=10), batch=1) == 1
    assert store.health()["inbox_pending"] == 1
    assert store.dead_letters()[0]["ticket_id"] == "dead"
    assert store.purge(t0 + timedelta(days=10)) == 0
