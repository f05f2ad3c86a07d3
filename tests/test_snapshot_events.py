"""Snapshot events stored in append-only chunks (store/snapshots.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
import threading
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from jobs.replan import Replanner
from jobs.sweeps import _stored_tickets
from store import Store, snapshots
from store.migrate import downgrade
from store.models import ticket_snapshot_events, ticket_snapshots
from store.snapshots import Stored, digests, plan
from tests.test_replan import rules as load_test_rules

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
ZD = "zendesk"


@pytest.fixture(autouse=True)
def every_history_split(monkeypatch):
    """Most tests look at chunks: any list with an event is split (test_short_histories_... not)."""
    monkeypatch.setattr(snapshots, "INLINE_EVENTS", 0)


def ev(n: int, kind: str = "comment", author: str = "customer") -> list:
    """An event as jobs.worker.ticket_json stores it: [at, type, author, public, status, bot]."""
    return [1_763_000_000 + n, kind, author, True, None, False]


def doc(tid: str, events: list, status: str = "open", **extra) -> dict:
    return {"id": tid, "status": status, "priority": "normal", "subject": f"Ticket {tid}", "description": "",
            "tags": ["sla"], "fields": {}, "group": None, "created_at": 1_763_000_000, "stamp": "s1",
            "events": events, "holds": [], **extra}


def save(store: Store, tid: str, ticket: dict, at: datetime = T0, **fields) -> None:
    store.save_snapshot(ZD, tid, ticket=ticket, decision=fields.get("decision", {}),
                        next_check=fields.get("next_check"), rules_version=fields.get("rules_version", "r1"),
                        now=at)


def chunks(store: Store, tid: str) -> list[tuple[int, int]]:
    """(seq, events in it) of the ticket's stored chunks, in order."""
    e = ticket_snapshot_events
    with store.engine.connect() as conn:
        rows = conn.execute(sa.select(e.c.seq, e.c.events).where(e.c.source == ZD, e.c.ticket_id == tid)
                            .order_by(e.c.seq)).all()
    return [(row.seq, len(row.events)) for row in rows]


def row(store: Store, tid: str):
    s = ticket_snapshots
    with store.engine.connect() as conn:
        return conn.execute(sa.select(s).where(s.c.source == ZD, s.c.ticket_id == tid)).one()


# -- the plan (no database) -------------------------------------------------------------


def test_a_prefix_digest_equals_the_digest_of_the_prefix_saved_alone():
    events = [ev(n) for n in range(7)]
    for cut in range(8):
        assert digests(events, cut)[0] == digests(events[:cut], cut)[1]
        assert digests(events, cut)[1] == digests(events, 0)[1]
    assert digests(events, 3)[1] != digests(events[:6], 3)[1]
    changed = copy.deepcopy(events)
    changed[1][3] = False  # one event made private
    assert digests(changed, 3)[0] != digests(events, 3)[0]


def test_the_plan_appends_replaces_or_folds():
    three, five = [ev(n) for n in range(3)], [ev(n) for n in range(5)]
    first = plan(doc("1", three), None)
    assert (first.count, first.chunks, first.replace, first.chunk) == (3, 1, True, (0, three))
    assert "events" not in first.document
    stored = Stored(first.count, first.digest, first.chunks)
    appended = plan(doc("1", five), stored)
    assert (appended.count, appended.chunks, appended.replace, appended.chunk) == (5, 2, False, (3, five[3:]))
    same = plan(doc("1", three), stored)
    assert (same.chunks, same.replace, same.chunk) == (1, False, None)
    rewritten = plan(doc("1", [ev(9)] + five[1:]), stored)
    assert (rewritten.chunks, rewritten.replace, rewritten.chunk[0]) == (1, True, 0)
    shorter = plan(doc("1", three[:2]), stored)
    assert (shorter.count, shorter.replace, shorter.chunk) == (2, True, (0, three[:2]))
    folded = plan(doc("1", five, status="closed"), stored)
    assert (folded.chunks, folded.replace, folded.chunk) == (1, True, (0, five))
    # No list of events: the document is stored whole (its chunks are no longer read).
    whole = plan({"id": "1", "status": "open"}, stored)
    assert (whole.document, whole.count, whole.replace, whole.chunk) == ({"id": "1", "status": "open"},
                                                                          None, False, None)


# -- the store ---------------------------------------------------------------------------


def test_new_events_are_appended_as_one_chunk_each(store):
    events = [ev(n) for n in range(3)]
    save(store, "1", doc("1", events))
    for added in (2, 1, 3):
        events = events + [ev(len(events) + n) for n in range(added)]
        save(store, "1", doc("1", events), decision={"n": len(events)})
    save(store, "1", doc("1", events, stamp="s2"), decision={"n": "same events"})  # nothing to add
    assert chunks(store, "1") == [(0, 3), (3, 2), (5, 1), (6, 3)]
    stored = row(store, "1")
    assert "events" not in stored.ticket
    assert (stored.events_count, stored.events_chunks) == (9, 4)
    snapshot = store.get_snapshot(ZD, "1")
    assert snapshot["ticket"] == doc("1", events, stamp="s2")
    assert snapshot["decision"] == {"n": "same events"}
    assert snapshot["rules_version"] == "r1" and snapshot["updated_at"] == T0


def test_a_rewritten_history_replaces_the_stored_events(store):
    events = [ev(n) for n in range(6)]
    save(store, "1", doc("1", events[:3]))
    save(store, "1", doc("1", events))
    redacted = copy.deepcopy(events)
    redacted[1][1] = "redacted"  # same count, another history: a full read after a redaction
    save(store, "1", doc("1", redacted))
    assert chunks(store, "1") == [(0, 6)]
    assert store.get_snapshot(ZD, "1")["ticket"]["events"] == redacted
    # Fewer events than stored, then more again on the new history.
    save(store, "1", doc("1", redacted[:2]))
    assert chunks(store, "1") == [(0, 2)]
    save(store, "1", doc("1", redacted[:2] + [ev(40)]))
    assert chunks(store, "1") == [(0, 2), (2, 1)]
    assert store.get_snapshot(ZD, "1")["ticket"]["events"] == redacted[:2] + [ev(40)]


@pytest.mark.parametrize("status", ["solved", "closed"])
def test_a_ticket_stored_solved_or_closed_is_folded_into_one_chunk(store, status):
    events = []
    for n in range(5):
        events = events + [ev(n)]
        save(store, "1", doc("1", events))
    assert len(chunks(store, "1")) == 5
    save(store, "1", doc("1", events + [ev(9, "status")], status=status))
    assert chunks(store, "1") == [(0, 6)]
    assert row(store, "1").events_chunks == 1
    # Stored again so, nothing new: nothing is rewritten; reopened, appends resume.
    save(store, "1", doc("1", events + [ev(9, "status")], status=status))
    assert chunks(store, "1") == [(0, 6)]
    save(store, "1", doc("1", events + [ev(9, "status"), ev(10)]))
    assert chunks(store, "1") == [(0, 6), (6, 1)]
    assert store.get_snapshot(ZD, "1")["ticket"] == doc("1", events + [ev(9, "status"), ev(10)])


def test_pending_tickets_are_not_folded(store):
    save(store, "1", doc("1", [ev(0)]))
    save(store, "1", doc("1", [ev(0), ev(1)], status="pending"))
    assert chunks(store, "1") == [(0, 1), (1, 1)]


def test_documents_without_a_list_of_events_and_unknown_keys_read_back_as_saved(store):
    odd = [{"id": "a", "status": "open"}, {"id": "b", "events": None}, {"id": "c", "events": "text"}, {}]
    for index, ticket in enumerate(odd):
        save(store, str(index), ticket)
    save(store, "x", doc("x", [ev(0)], audit={"last": [1, 2]}))
    save(store, "x", doc("x", [ev(0), ev(1)], audit={"last": [3]}))
    for index, ticket in enumerate(odd):
        assert store.get_snapshot(ZD, str(index))["ticket"] == ticket
        assert row(store, str(index)).events_count is None and chunks(store, str(index)) == []
    assert store.get_snapshot(ZD, "x")["ticket"] == doc("x", [ev(0), ev(1)], audit={"last": [3]})
    # From chunks back to a whole document: its old chunks are not read, and go at the next split.
    save(store, "x", {"id": "x", "status": "open"})
    assert store.get_snapshot(ZD, "x")["ticket"] == {"id": "x", "status": "open"}
    save(store, "x", doc("x", [ev(7)]))
    assert chunks(store, "x") == [(0, 1)] and store.get_snapshot(ZD, "x")["ticket"] == doc("x", [ev(7)])


def test_many_tickets_per_save_take_the_same_statements_as_two(store):
    def statements(count: int, offset: int) -> dict[str, int]:
        seen: dict[str, int] = {}

        def on_execute(conn, cursor, statement, parameters, context, executemany):
            verb = statement.split()[0].upper()
            table = next((t for t in ("ticket_snapshot_events", "ticket_snapshots")
                          if t in statement.split("(")[0] or f"FROM {t}" in statement), None)
            if table:
                seen[f"{verb} {table}"] = seen.get(f"{verb} {table}", 0) + 1

        ids = [str(offset + n) for n in range(count)]
        for tid in ids:  # stored: some to extend, some to rewrite, some to fold
            save(store, tid, doc(tid, [ev(0), ev(1)]))
        items = []
        for n, tid in enumerate(ids):
            events = [ev(0), ev(1), ev(2)] if n % 3 == 0 else [ev(5)] if n % 3 == 1 else [ev(0)] * 3
            ticket = doc(tid, events, status="closed" if n % 3 == 2 else "open")
            items.append({"ticket_id": tid, "ticket": ticket, "decision": {}, "next_check": None,
                          "rules_version": "r1"})
        sa.event.listen(store.engine, "before_cursor_execute", on_execute)
        try:
            store.save_snapshots(ZD, items, T0)
        finally:
            sa.event.remove(store.engine, "before_cursor_execute", on_execute)
        for item in items:
            assert store.get_snapshot(ZD, item["ticket_id"])["ticket"] == item["ticket"]
        return seen

    few, many = statements(3, 0), statements(300, 1000)
    assert few == many, (few, many)
    assert few["SELECT ticket_snapshots"] == 1  # the descriptors only: no event is read
    assert "SELECT ticket_snapshot_events" not in few


def test_the_last_item_of_a_ticket_in_one_call_wins(store):
    items = [{"ticket_id": "1", "ticket": doc("1", [ev(n) for n in range(k)]), "decision": {},
              "next_check": None, "rules_version": "r1"} for k in (1, 3, 2)]
    store.save_snapshots(ZD, items, T0)
    assert store.get_snapshot(ZD, "1")["ticket"]["events"] == [ev(0), ev(1)]


def test_an_older_evaluation_saved_after_a_newer_one_leaves_its_own_events(store):
    base = [ev(n) for n in range(4)]
    save(store, "1", doc("1", base))
    older, newer = base + [ev(4)], base + [ev(4), ev(5), ev(6)]
    save(store, "1", doc("1", newer))  # evaluation B reads more and saves first
    save(store, "1", doc("1", older))  # evaluation A, started earlier, saves last
    assert store.get_snapshot(ZD, "1")["ticket"]["events"] == older
    save(store, "1", doc("1", newer))
    assert store.get_snapshot(ZD, "1")["ticket"]["events"] == newer
    assert chunks(store, "1") == [(0, 5), (5, 2)]


def run_threads(count: int, work) -> None:
    """Run work(0..count-1) at once; any thread's exception fails the test."""
    errors: list[BaseException] = []

    def guarded(index: int) -> None:
        try:
            work(index)
        except BaseException as err:  # re-raised below, in the test's thread
            errors.append(err)

    threads = [threading.Thread(target=guarded, args=(i,)) for i in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def test_concurrent_saves_of_one_ticket_leave_exactly_one_of_the_saved_documents(database_url):
    stores = [Store(database_url) for _ in range(4)]
    try:
        stores[0].migrate()
        saved: dict[tuple[int, int], dict] = {}
        lock = threading.Lock()
        barrier = threading.Barrier(4)

        def work(index: int) -> None:
            barrier.wait()
            for step in range(12):
                # Each evaluation has read a different amount (and one a rewritten history).
                events = [ev(n) for n in range(step + index)]
                if index == 3 and step % 4 == 0:
                    events = [ev(100 + n) for n in range(step)]
                ticket = doc("1", events, status="closed" if step == 11 and index == 0 else "open")
                save(stores[index], "1", ticket, decision={"by": index, "step": step})
                with lock:
                    saved[(index, step)] = ticket

        run_threads(4, work)
        final = stores[0].get_snapshot(ZD, "1")
        # Whichever save committed last is what is stored: its document with its own events
        # (neither duplicated nor lost), which tile the chunks.
        assert final["ticket"] == saved[(final["decision"]["by"], final["decision"]["step"])]
        stored = row(stores[0], "1")
        tiles = chunks(stores[0], "1")
        assert sum(n for _, n in tiles) == stored.events_count == len(final["ticket"]["events"])
        assert [seq for seq, _ in tiles] == [sum(n for _, n in tiles[:i]) for i in range(len(tiles))]
        assert stored.events_chunks == len(tiles)
    finally:
        for instance in stores:
            instance.engine.dispose()


def test_first_saves_racing_on_one_ticket_read_back_consistently(database_url):
    stores = [Store(database_url) for _ in range(2)]
    try:
        stores[0].migrate()
        for round_ in range(6):
            tid = f"new-{round_}"
            documents = [doc(tid, [ev(n) for n in range(k)]) for k in ((0, 5) if round_ % 2 else (5, 0))]
            barrier = threading.Barrier(2)

            def first_save(index: int, documents=documents, barrier=barrier, tid=tid) -> None:
                barrier.wait()
                save(stores[index], tid, documents[index])

            run_threads(2, first_save)
            final = stores[0].get_snapshot(ZD, tid)["ticket"]
            assert final in documents
            grown = final["events"] + [ev(50)]
            save(stores[0], tid, doc(tid, grown))
            assert stores[0].get_snapshot(ZD, tid)["ticket"]["events"] == grown
    finally:
        for instance in stores:
            instance.engine.dispose()


def test_short_histories_are_stored_whole_and_split_once_they_grow(store, monkeypatch):
    monkeypatch.setattr(snapshots, "INLINE_EVENTS", 32)
    events = [ev(n) for n in range(30)]
    save(store, "1", doc("1", events))
    assert row(store, "1").events_count is None and row(store, "1").ticket == doc("1", events)
    events = events + [ev(30), ev(31), ev(32)]  # 33: split, all in one chunk
    save(store, "1", doc("1", events))
    assert chunks(store, "1") == [(0, 33)] and "events" not in row(store, "1").ticket
    save(store, "1", doc("1", events + [ev(33)]))
    assert chunks(store, "1") == [(0, 33), (33, 1)]
    save(store, "1", doc("1", events[:5], status="closed"))  # rewritten shorter: whole again
    assert store.get_snapshot(ZD, "1")["ticket"] == doc("1", events[:5], status="closed")
    save(store, "1", doc("1", events + [ev(40)]))  # long again: the old chunks are replaced
    assert chunks(store, "1") == [(0, 34)]
    assert store.get_snapshot(ZD, "1")["ticket"] == doc("1", events + [ev(40)])


def test_a_save_of_short_histories_reads_nothing_and_leaves_the_events_table_alone(store, monkeypatch):
    monkeypatch.setattr(snapshots, "INLINE_EVENTS", 32)
    seen: list[str] = []
    save(store, "1", doc("1", [ev(0)]))

    def on_execute(conn, cursor, statement, parameters, context, executemany):
        seen.append(" ".join(statement.split()[:3]))

    sa.event.listen(store.engine, "before_cursor_execute", on_execute)
    try:
        store.save_snapshots(ZD, [{"ticket_id": t, "ticket": doc(t, [ev(0), ev(1)]), "decision": {},
                                   "next_check": None, "rules_version": "r1"} for t in ("1", "2")], T0)
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", on_execute)
    assert not [q for q in seen if "ticket_snapshot_events" in q or q.startswith("SELECT ticket_snapshots")]
    assert any(q.startswith("INSERT INTO ticket_snapshots") for q in seen)
    assert store.get_snapshot(ZD, "1")["ticket"] == doc("1", [ev(0), ev(1)])


# -- readers -------------------------------------------------------------------------------


def test_bulk_readers_reassemble_the_events(store, tmp_path):
    for tid in ("1", "2", "3"):
        save(store, tid, doc(tid, [ev(0)]))
        save(store, tid, doc(tid, [ev(0), ev(int(tid))]))
    save(store, "4", {"id": "4", "status": "open"})
    want = {tid: doc(tid, [ev(0), ev(int(tid))]) for tid in ("1", "2", "3")}
    want["4"] = {"id": "4", "status": "open"}
    assert store.get_snapshot_tickets(ZD, ["1", "2", "3", "4", "absent"]) == want
    assert _stored_tickets(store, ZD, ["2", "3"]) == {k: want[k] for k in ("2", "3")}
    assert store.get_snapshot_tickets("freshdesk", ["1"]) == {}
    assert store.snapshot_stamps(ZD, ["1", "4"]) == {"1": "s1", "4": None}
    # The re-planner reads whole documents too (its batches hold the events).
    seen = []
    rules = load_test_rules(tmp_path, "r", "1h")
    replanner = Replanner(store, lambda: rules, batch=2)
    original = replanner._decide

    def spy(rows, rules, now, report):
        seen.extend((r.ticket_id, r.ticket) for r in rows)
        return original(rows, rules, now, report)

    replanner._decide = spy
    replanner.replan(rules)
    assert dict(seen) == want


def test_purging_a_snapshot_purges_its_event_chunks(store):
    old = T0 - timedelta(days=200)
    for tid, status in (("solved-old", "solved"), ("open-old", "open")):
        save(store, tid, doc(tid, [ev(0)], status="open"), at=old)
        save(store, tid, doc(tid, [ev(0), ev(1)], status=status), at=old)
    purged = store.purge_audit(T0 - timedelta(days=180))
    assert purged.snapshots == 1
    assert store.get_snapshot(ZD, "solved-old") is None and chunks(store, "solved-old") == []
    assert chunks(store, "open-old") == [(0, 1), (1, 1)]
    assert store.get_snapshot(ZD, "open-old")["ticket"]["events"] == [ev(0), ev(1)]


# -- rows written before the events moved ----------------------------------------------------


def test_rows_written_before_the_migration_read_back_and_move_on_their_next_save(store):
    downgrade(store.engine, "0005_history_cache")
    legacy = sa.table("ticket_snapshots", sa.column("source"), sa.column("ticket_id"),
                      sa.column("ticket", sa.JSON()), sa.column("decision", sa.JSON()),
                      sa.column("next_check"), sa.column("rules_version"), sa.column("updated_at"))
    old_doc = doc("1", [ev(0), ev(1), ev(2)])
    with store.engine.begin() as conn:
        conn.execute(sa.insert(legacy), [{"source": ZD, "ticket_id": "1", "ticket": old_doc,
                                          "decision": {"x": 1}, "next_check": None, "rules_version": "r0",
                                          "updated_at": T0.replace(tzinfo=None)}])
    store.migrate()
    assert row(store, "1").events_count is None
    assert store.get_snapshot(ZD, "1")["ticket"] == old_doc
    assert store.get_snapshot_tickets(ZD, ["1"]) == {"1": old_doc}
    grown = doc("1", old_doc["events"] + [ev(3)])
    save(store, "1", grown)
    assert "events" not in row(store, "1").ticket and chunks(store, "1") == [(0, 4)]
    save(store, "1", doc("1", grown["events"] + [ev(4)]))
    assert chunks(store, "1") == [(0, 4), (4, 1)]
    assert store.get_snapshot(ZD, "1")["ticket"]["events"] == grown["events"] + [ev(4)]


def test_the_downgrade_puts_the_events_back_into_the_documents(store):
    save(store, "1", doc("1", [ev(0)]))
    save(store, "1", doc("1", [ev(0), ev(1)]))
    save(store, "2", {"id": "2"})
    downgrade(store.engine, "0005_history_cache")
    with store.engine.connect() as conn:
        tickets = dict(conn.execute(sa.text("SELECT ticket_id, ticket FROM ticket_snapshots")).all())
        assert "ticket_snapshot_events" not in sa.inspect(conn).get_table_names()
    decode = (lambda v: v) if store.engine.dialect.name == "postgresql" else __import__("json").loads
    assert {k: decode(v) for k, v in tickets.items()} == {"1": doc("1", [ev(0), ev(1)]), "2": {"id": "2"}}
    store.migrate()
    assert store.get_snapshot(ZD, "1")["ticket"] == doc("1", [ev(0), ev(1)])


# -- any sequence of saves reads back the last one --------------------------------------------

EVENT = st.lists(st.one_of(st.integers(-5, 5), st.sampled_from(["comment", "status", "x", "é"]), st.none(),
                           st.booleans()), min_size=1, max_size=6)
STEP = st.one_of(
    st.tuples(st.just("append"), st.lists(EVENT, min_size=0, max_size=4)),
    st.tuples(st.just("truncate"), st.integers(0, 8)),
    st.tuples(st.just("edit"), st.integers(0, 8), EVENT),
    st.tuples(st.just("status"), st.sampled_from(["new", "open", "pending", "solved", "closed"])),
    st.tuples(st.just("drop"), st.none()),  # a document without events
    st.tuples(st.just("again"), st.none()),  # the same document saved again
)
_examples = iter(range(10**9))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=st.lists(STEP, min_size=1, max_size=12))
def test_any_sequence_of_saves_reads_back_the_last_saved_document(store, steps):
    snapshots.INLINE_EVENTS = 2  # both forms, and the moves between them (the fixture restores it)
    tid = f"p{next(_examples)}"
    events: list = []
    status, with_events = "open", True
    for kind, *args in steps:
        if kind == "append":
            events = events + args[0]
        elif kind == "truncate":
            events = events[:args[0]]
        elif kind == "edit" and events:
            events = events[:]
            events[args[0] % len(events)] = args[1]
        elif kind == "status":
            status = args[0]
        with_events = kind != "drop"
        ticket = doc(tid, events, status=status) if with_events else {"id": tid, "status": status}
        save(store, tid, copy.deepcopy(ticket), decision={"step": kind})
        assert store.get_snapshot(ZD, tid)["ticket"] == ticket
        assert store.get_snapshot_tickets(ZD, [tid]) == {tid: ticket}
        stored = row(store, tid)
        if stored.events_count is None:  # stored whole
            assert not with_events or len(events) <= 2
            continue
        tiles = chunks(store, tid)
        assert sum(n for _, n in tiles) == stored.events_count == len(events) > 2
        assert [seq for seq, _ in tiles] == [sum(n for _, n in tiles[:i]) for i in range(len(tiles))]
        if status in ("solved", "closed"):
            assert len(tiles) == 1
