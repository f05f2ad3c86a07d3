"""Snapshot bytes over a ticket's life: events appended in chunks against the whole document
rewritten at every evaluation (the earlier store), in the same process, on SQLite and PostgreSQL.

Each ticket is evaluated `--evaluations` times, each evaluation adding 1-3 events (comments and
status changes, as jobs.worker.ticket_json stores them), and is closed at the last one; every
round saves all tickets in one save_snapshots call. "Written" counts the bytes of the parameters
sent in INSERT/UPDATE/DELETE statements on the snapshot tables (the documents and event chunks);
PostgreSQL also reports the tables' size on disk (pg_total_relation_size, autovacuum off) and
their live size after VACUUM FULL.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from engine.ticket import Event, Ticket
from jobs.worker import ticket_json
from store import Store, board
from store.engine import write_transaction
from store.models import ticket_snapshots
from store.queue import dialect_insert

SOURCE = "zendesk"
T0 = datetime(2026, 11, 2, 9, 0, tzinfo=UTC)
TABLES = ("ticket_snapshots", "ticket_snapshot_events")


def whole_rewrite(store: Store, items: list[dict], now: datetime) -> None:
    """The earlier Store.save_snapshots: each ticket's whole document upserted, then the board."""
    s = ticket_snapshots
    rows = [{"source": SOURCE, "ticket_id": item["ticket_id"], "ticket": item["ticket"],
             "decision": item["decision"], "next_check": item["next_check"],
             "rules_version": item["rules_version"], "updated_at": now} for item in items]
    with write_transaction(store.engine) as conn:
        stmt = dialect_insert(conn)(s)
        conn.execute(stmt.on_conflict_do_update(
            index_elements=[s.c.source, s.c.ticket_id],
            set_={name: getattr(stmt.excluded, name)
                  for name in ("ticket", "decision", "next_check", "rules_version", "updated_at")}), rows)
        board.index_snapshots(conn, SOURCE, rows, now)


def chunked(store: Store, items: list[dict], now: datetime) -> None:
    store.save_snapshots(SOURCE, items, now)


def _size(value: Any) -> int:
    if value is None:
        return 0
    if isinstance(value, list | tuple):  # a column's values, one array for many rows (PostgreSQL)
        return sum(_size(item) for item in value)
    if isinstance(value, str):
        return len(value.encode())
    if isinstance(value, bytes | bytearray | memoryview):
        return len(value)
    if hasattr(value, "obj"):  # psycopg's Jsonb wrapper
        return len(json.dumps(value.obj).encode())
    if isinstance(value, int | float | datetime):
        return 8
    return len(str(value).encode())


class WriteCounter:
    """Bytes of the parameters of writes to the snapshot tables."""

    def __init__(self, engine: sa.Engine) -> None:
        self.bytes = 0
        sa.event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, conn, cursor, statement, parameters, context, executemany) -> None:
        head = statement.lstrip()[:60].upper()
        if not head.startswith(("INSERT", "UPDATE", "DELETE")) or not any(t.upper() in head for t in TABLES):
            return
        for params in (parameters if executemany else [parameters]):
            values = params.values() if isinstance(params, dict) else params
            self.bytes += sum(_size(v) for v in values)


def life(tickets: int, evaluations: int, seed: int = 20261102):
    """Per round, the tickets' snapshots: each evaluation adds 1-3 events; the last one closes."""
    rng = random.Random(seed)
    events: dict[str, list[Event]] = {str(n): [] for n in range(1, tickets + 1)}
    created = int(T0.timestamp())
    for round_ in range(evaluations):
        items = []
        last = round_ == evaluations - 1
        for ticket_id, history in events.items():
            at = created + round_ * 600
            for index in range(rng.randint(1, 3)):
                if index % 2:
                    history.append(Event(at=at + index, type="status", status="pending"))
                else:
                    history.append(Event(at=at + index, type="comment",
                                         author=rng.choice(("customer", "agent")), public=rng.random() < 0.8))
            ticket = Ticket(id=ticket_id, status="closed" if last else "open", created_at=created,
                            priority="normal", subject=f"Printer on floor {ticket_id} is offline",
                            description="It shows error 0x1b.", tags=frozenset({"sla", "hardware"}),
                            fields={"plan": "business"}, events=tuple(history), group="Level 1")
            items.append({"ticket_id": ticket_id, "ticket": ticket_json(ticket, stamp=f"stamp-{round_}"),
                          "decision": {"actions": [], "policy": "standard"},
                          "next_check": None if last else T0 + timedelta(hours=round_ + 1),
                          "rules_version": "rules-1"})
        yield round_, items


def heap(store: Store) -> int:
    with store.engine.connect() as conn:
        return sum(conn.execute(sa.text("SELECT pg_total_relation_size(:t)"), {"t": t}).scalar_one()
                   for t in TABLES)


def prepare(url: str) -> tuple[Store, WriteCounter]:
    store = Store(url)
    store.migrate()
    if store.engine.dialect.name == "postgresql":
        with store.engine.begin() as conn:
            for table in TABLES:
                conn.exec_driver_sql(f"ALTER TABLE {table} SET (autovacuum_enabled = false, "
                                     "toast.autovacuum_enabled = false)")
    return store, WriteCounter(store.engine)


def run(urls: dict[str, str], tickets: int, evaluations: int, repeat: int) -> dict[str, dict]:
    """The same life saved into a store per way ({"chunked": url, "whole": url}), round by round
    in turn, so both see the same load on a shared machine."""
    ways = {"chunked": chunked, "whole": whole_rewrite}
    stores = {name: prepare(url) for name, url in urls.items()}
    out: dict[str, dict[str, Any]] = {name: {"seconds": 0.0} for name in urls}
    try:
        for round_, items in life(tickets, evaluations):
            now = T0 + timedelta(minutes=10 * round_)
            for name, (store, _) in stores.items():
                start = time.perf_counter()
                ways[name](store, items, now)
                out[name]["seconds"] += time.perf_counter() - start
                if round_ == evaluations - 2 or evaluations == 1:  # the open ticket at its longest
                    times = []
                    for _ in range(repeat):
                        start = time.perf_counter()
                        snapshot = store.get_snapshot(SOURCE, "1")
                        times.append(time.perf_counter() - start)
                    assert snapshot is not None and snapshot["ticket"] == items[0]["ticket"]
                    out[name]["read_ms"] = statistics.median(times) * 1000
        for name, (store, counter) in stores.items():
            final = store.get_snapshot_tickets(SOURCE, [item["ticket_id"] for item in items])
            assert final == {item["ticket_id"]: item["ticket"] for item in items}, "read back otherwise"
            out[name].update(bytes=counter.bytes, events=len(items[0]["ticket"]["events"]))
            if store.engine.dialect.name == "postgresql":
                out[name]["heap"] = heap(store)
                with store.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
                    for table in TABLES:
                        conn.exec_driver_sql(f"VACUUM FULL {table}")
                out[name]["live"] = heap(store)
    finally:
        for store, _ in stores.values():
            store.engine.dispose()
    return out


def mb(value: float) -> str:
    return f"{value / 1e6:,.2f} MB"


def report(label: str, tickets: int, evaluations: int, new: dict, old: dict) -> None:
    print(f"{label}: {tickets} ticket(s) x {evaluations:,} evaluations, 1-3 events each "
          f"({new['events']:,} events a ticket when closed)")
    for name, figures in (("chunked (append, fold at close)", new), ("baseline whole rewrite", old)):
        line = (f"  {name:<32} {mb(figures['bytes']):>12} written, {figures['seconds']:6.2f} s saving; "
                f"open ticket read {figures['read_ms']:.2f} ms")
        if "heap" in figures:
            line += f"; on disk {mb(figures['heap'])} (live {mb(figures['live'])})"
        print(line)
    ratio = f"  ratio baseline / chunked: {old['bytes'] / new['bytes']:.1f}x bytes, " \
            f"{old['seconds'] / new['seconds']:.1f}x time"
    if "heap" in new:
        ratio += f", {old['heap'] / new['heap']:.1f}x on disk"
    print(ratio)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.snapshots", description=__doc__)
    parser.add_argument("--tickets", type=int, default=5, help="tickets living at once (default 5)")
    parser.add_argument("--evaluations", type=int, default=1000, help="evaluations a ticket (default 1,000)")
    parser.add_argument("--repeat", type=int, default=7, help="reads timed (median; default 7)")
    args = parser.parse_args(argv)
    print(f"python {platform.python_version()} on {platform.machine()}; snapshot bytes over a ticket's life")
    with tempfile.TemporaryDirectory() as folder:
        results = run({name: f"sqlite:///{folder}/{name}.db" for name in ("chunked", "whole")},
                      args.tickets, args.evaluations, args.repeat)
    report("SQLite", args.tickets, args.evaluations, results["chunked"], results["whole"])
    admin_url = os.environ.get("TEST_DATABASE_URL")
    if admin_url:
        from benchmarks.sweep import fresh_postgres

        (new_url, drop_new), (old_url, drop_old) = fresh_postgres(admin_url), fresh_postgres(admin_url)
        try:
            results = run({"chunked": new_url, "whole": old_url}, args.tickets, args.evaluations, args.repeat)
        finally:
            drop_new()
            drop_old()
        report("PostgreSQL", args.tickets, args.evaluations, results["chunked"], results["whole"])
    else:
        print("PostgreSQL: skipped (set TEST_DATABASE_URL to include it)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
