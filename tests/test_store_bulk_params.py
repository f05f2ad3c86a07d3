"""The bulk paths' bound values (store.driver), key lists (store.engine.one_of) and the
queue's statistics after a large claim (PostgreSQL)."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from store import Store
from store import core as store_core
from store import engine as store_engine
from store.driver import DriverStatement
from store.engine import insert_many, one_of
from store.models import bot_actions, ticket_board, ticket_work

NOW = datetime(2026, 11, 9, 18, 0, tzinfo=UTC)


def _insert_all(table: sa.Table) -> sa.Insert:
    return sa.insert(table).values({c.name: sa.bindparam(c.name) for c in table.columns if c.name != "id"})
PG_URL = os.environ.get("TEST_DATABASE_URL")


def _rows(count: int, after: object) -> list[dict]:
    return [{"source": "zendesk", "ticket_id": str(n), "rule": "auto-close", "rules_version": "v1",
             "type": "note", "before": None, "after": after if after is not None else {"body": f"n{n}"},
             "created_at": NOW} for n in range(count)]


def _counting(statement: DriverStatement) -> dict[int, int]:
    calls: dict[int, int] = {}

    def wrap(index, process):
        def counted(value):
            calls[index] = calls.get(index, 0) + 1
            return process(value)
        return counted

    statement._processors = [None if process is None else wrap(index, process)
                             for index, process in enumerate(statement._processors)]
    return calls


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_a_recurring_value_object_is_processed_once_per_batch(dialect):
    engine = sa.create_engine("sqlite://") if dialect == "sqlite" else sa.create_engine(
        "postgresql+psycopg://nobody@127.0.0.1:1/none")  # compiled only, never connected
    statement = DriverStatement(_insert_all(bot_actions), engine.dialect)
    calls = _counting(statement)
    shared = {"body": "Closed by Deskpilot"}
    rows = _rows(50, shared)
    got = statement.parameters_many(rows)
    # Each processed column once: the shared `after` and the one `now` (on PostgreSQL psycopg
    # adapts JSONB itself, so only the instant is processed); `before` is None: never.
    assert sorted(calls.values()) == ([1, 1] if dialect == "sqlite" else [1])
    plain = DriverStatement(_insert_all(bot_actions), engine.dialect)
    assert got == [plain.parameters(row) for row in rows]  # the same values as without the memo


def test_equal_but_distinct_values_are_each_processed():
    statement = DriverStatement(_insert_all(bot_actions), sa.create_engine("sqlite://").dialect)
    calls = _counting(statement)
    rows = _rows(30, None)  # every row its own `after` dict
    got = statement.parameters_many(rows)
    assert sorted(calls.values()) == [1, 30]
    assert len({params[6] for params in got}) == 30


def test_a_missing_value_is_refused():
    statement = DriverStatement(_insert_all(bot_actions), sa.create_engine("sqlite://").dialect)
    row = _rows(1, None)[0]
    del row["rule"]
    with pytest.raises(KeyError):
        statement.parameters_many([row])


def _stores(tmp_path) -> list[Store]:
    stores = [Store(f"sqlite:///{tmp_path / 'one_of.db'}")]
    if PG_URL:
        stores.append(Store(PG_URL))
    for store in stores:
        store.migrate()
    return stores


def test_one_of_selects_the_same_rows_on_both_databases(tmp_path):
    for store in _stores(tmp_path):
        with store.engine.begin() as conn:
            conn.execute(sa.delete(bot_actions).where(bot_actions.c.rules_version == "one-of"))
            insert_many(conn, bot_actions, [{**row, "rules_version": "one-of"} for row in _rows(40, None)])
            wanted = [str(n) for n in range(0, 40, 3)] + ["no-such-ticket"]
            chosen = one_of(conn, bot_actions.c.ticket_id, wanted)
            got = conn.execute(sa.select(bot_actions.c.ticket_id).where(
                bot_actions.c.rules_version == "one-of", chosen)).scalars()
            assert sorted(got, key=int) == [str(n) for n in range(0, 40, 3)]
            nothing = conn.execute(sa.select(sa.func.count()).select_from(bot_actions).where(
                bot_actions.c.rules_version == "one-of", one_of(conn, bot_actions.c.ticket_id, []))).scalar()
            assert nothing == 0
            conn.execute(sa.delete(bot_actions).where(bot_actions.c.rules_version == "one-of"))
        store.engine.dispose()


def _last_analyze(store: Store):
    with store.engine.connect() as conn:
        return conn.execute(sa.text(
            "SELECT last_analyze FROM pg_stat_user_tables WHERE relname = :name"), {"name": ticket_work.name}
        ).scalar()


@pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL not set")
def test_a_large_claim_renews_the_queues_statistics_on_postgresql(monkeypatch):
    store = Store(PG_URL)
    store.migrate()
    monkeypatch.setattr(store_core, "ANALYZE_QUEUE_AFTER", 20)
    with store.engine.begin() as conn:
        conn.execute(sa.delete(ticket_work).where(ticket_work.c.source == "analyze-test"))
    try:
        small = store.claim_tickets("analyze-test", [f"s{n}" for n in range(5)], "sweep:test", NOW)
        before = _last_analyze(store)
        claims = store.claim_tickets("analyze-test", [f"t{n}" for n in range(25)], "sweep:test", NOW)
        assert len(small) == 5 and len(claims) == 25
        after = _last_analyze(store)
        assert after is not None and (before is None or after > before)
    finally:
        with store.engine.begin() as conn:
            conn.execute(sa.delete(ticket_work).where(ticket_work.c.source == "analyze-test"))
        store.engine.dispose()


@pytest.mark.skipif(not PG_URL, reason="TEST_DATABASE_URL not set")
def test_a_claim_stands_when_the_statistics_cannot_be_taken(monkeypatch, caplog):
    caplog.set_level("INFO", logger="store.core")
    """ANALYZE waits behind whoever holds the table's maintenance lock (autovacuum, another
    ANALYZE) only briefly; the claims are made either way."""
    store = Store(PG_URL)
    store.migrate()
    monkeypatch.setattr(store_core, "ANALYZE_QUEUE_AFTER", 3)
    holder = store.engine.connect()
    holding = holder.begin()
    holder.exec_driver_sql(f"LOCK TABLE {ticket_work.name} IN SHARE UPDATE EXCLUSIVE MODE")
    try:
        claims = store.claim_tickets("analyze-test", ["a", "b", "c", "d"], "sweep:test", NOW)
        assert [c.ticket_id for c in claims] == ["a", "b", "c", "d"]
        assert "statistics not renewed" in caplog.text  # after the 2 s lock timeout
    finally:
        holding.rollback()
        holder.close()
        with store.engine.begin() as conn:
            conn.execute(sa.delete(ticket_work).where(ticket_work.c.source == "analyze-test"))
        store.engine.dispose()


# -- insert_many: the bulk INSERTs of both databases ----------------------------------------


def _board_row(ticket_id: str, **values) -> dict:
    row = {"source": "zendesk", "ticket_id": ticket_id, "is_open": True, "status": "open", "priority": None,
           "policy": None, "group_name": None, "subject": None, "next_due": None, "next_target": None,
           "warn_at": None, "paused": False, "updated_at": NOW}
    row.update(values)
    return row


def _board(conn) -> dict[str, tuple]:
    b = ticket_board
    rows = conn.execute(sa.select(b.c.ticket_id, b.c.status, b.c.subject, b.c.next_due, b.c.paused)
                        .where(b.c.source == "zendesk"))
    return {row.ticket_id: tuple(row)[1:] for row in rows}


def test_insert_many_upserts_skips_and_returns_the_same_on_both_databases(tmp_path, monkeypatch):
    monkeypatch.setattr(store_engine, "UNNEST_BATCH", 7)  # several statements on PostgreSQL
    monkeypatch.setattr(store_engine, "RETURNING_BATCH", 7)
    later = datetime(2026, 11, 10, 9, 30, tzinfo=timezone(timedelta(hours=-7)))  # not UTC: stored as UTC
    for store in _stores(tmp_path):
        with store.engine.begin() as conn:
            conn.execute(sa.delete(ticket_board))
            insert_many(conn, ticket_board, [_board_row(str(n)) for n in range(20)])
            keys, update = ("source", "ticket_id"), ("status", "subject", "next_due")
            rows = [_board_row(str(n), status="solved", subject=f"s{n}", next_due=later, paused=True)
                    for n in range(15, 25)]
            # A key given twice is written as its last row, as one statement per row would leave it.
            rows.append(_board_row("24", status="closed", subject="last \x01 \\ \" ' {}", next_due=None))
            returned = insert_many(conn, ticket_board, rows, conflict=keys, update=update,
                                   returning=("ticket_id", "status"))
            assert sorted(returned, key=lambda r: int(r[0])) == [
                *((str(n), "solved") for n in range(15, 24)), ("24", "closed")]
            got = _board(conn)
            assert got["3"] == ("open", None, None, False)  # untouched
            assert got["16"] == ("solved", "s16", later, False)  # only the named columns updated
            assert got["16"][2].tzinfo is not None and got["16"][2].utcoffset() == timedelta(0)
            assert got["22"] == ("solved", "s22", later, True)  # new: every column inserted
            assert got["24"] == ("closed", "last \x01 \\ \" ' {}", None, False)  # all of the last row
            # Without update, a stored key is skipped and not returned.
            skipped = insert_many(conn, ticket_board, [_board_row("1", status="x"), _board_row("99")],
                                  conflict=keys, returning=("ticket_id",))
            assert skipped == [("99",)]
            assert _board(conn)["1"][0] == "open"
            with pytest.raises(ValueError, match="conflict"):
                insert_many(conn, ticket_board, rows, update=update)
            conn.execute(sa.delete(ticket_board))
        store.engine.dispose()


def test_insert_many_keeps_json_nulls_and_text_whole_on_both_databases(tmp_path):
    shared = {"body": "Closed by Deskpilot", "nested": [1, None, "two", {"three": True}]}
    rows = [{**row, "rules_version": "json", "before": None if n % 2 else {"n": n, "nul": "a\x00b"},
             "after": shared} for n, row in enumerate(_rows(12, shared))]
    rows[0]["before"] = None  # a column whose values are all NULL in a batch
    for store in _stores(tmp_path):
        with store.engine.begin() as conn:
            conn.execute(sa.delete(bot_actions).where(bot_actions.c.rules_version == "json"))
            insert_many(conn, bot_actions, rows[:1])  # every JSON value of the batch NULL but one
            insert_many(conn, bot_actions, rows[1:])
            got = conn.execute(sa.select(bot_actions.c.ticket_id, bot_actions.c.before, bot_actions.c.after,
                                         bot_actions.c.created_at)
                               .where(bot_actions.c.rules_version == "json")).all()
            by_ticket = {row.ticket_id: row for row in got}
            assert len(by_ticket) == 12
            for n in range(12):
                row = by_ticket[str(n)]
                assert row.after == shared and row.created_at == NOW
                if n % 2 or n == 0:
                    assert row.before is None
                else:  # PostgreSQL's jsonb cannot hold NUL: it becomes the replacement character
                    nul = "a\x00b" if store.engine.dialect.name == "sqlite" else "a\ufffdb"
                    assert row.before == {"n": n, "nul": nul}
            conn.execute(sa.delete(bot_actions).where(bot_actions.c.rules_version == "json"))
        store.engine.dispose()
