"""A database that stops answering: webhooks and /healthz answer 503 within seconds, never hang."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from connectors.signature import sign
from store import Store
from store.engine import postgres_timeouts
from tests.test_app import NOW, ZENDESK_SECRET, install_rules, make_app

BODY = json.dumps({"deskpilot": 1, "event": "trigger", "ticket_id": "77"}).encode()


def signed() -> dict[str, str]:
    timestamp = NOW.strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"X-Zendesk-Webhook-Signature-Timestamp": timestamp, "Content-Type": "application/json",
            "X-Zendesk-Webhook-Signature": sign(ZENDESK_SECRET, timestamp, BODY)}


class Silent:
    """A TCP server that accepts connections and never says a word (packets dropped, not refused)."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        self.sock.settimeout(0.2)
        while not self.stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                continue
            self.held.append(conn)

    def close(self) -> None:
        self.stop.set()
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def silent():
    server = Silent()
    yield server
    server.close()


def timed(work):
    started = time.monotonic()
    result = work()
    return result, time.monotonic() - started


def test_a_silent_postgresql_answers_503_within_seconds(silent, monkeypatch):
    install_rules(monkeypatch)
    store = Store(f"postgresql+psycopg://deskpilot@127.0.0.1:{silent.port}/deskpilot", timeout_seconds=2)
    client = make_app(store).test_client()
    response, seconds = timed(lambda: client.post("/webhooks/zendesk", data=BODY, headers=signed()))
    assert response.status_code == 503 and seconds < 15  # not the minutes of a hung connect
    health, seconds = timed(lambda: client.get("/healthz"))
    assert health.status_code == 503 and seconds < 15
    assert health.get_json()["database"] == "unavailable"


def test_postgresql_connections_carry_statement_and_network_timeouts():
    params = postgres_timeouts(5)
    assert params["connect_timeout"] == 5
    assert "statement_timeout=5000" in params["options"] and "lock_timeout=5000" in params["options"]
    assert params["tcp_user_timeout"] == 5000  # a dropped connection errors instead of hanging
    assert postgres_timeouts(0.5)["connect_timeout"] == 2  # libpq's smallest


@pytest.mark.skipif(not os.environ.get("TEST_DATABASE_URL"), reason="TEST_DATABASE_URL is not set")
@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_statement_that_runs_too_long_is_cancelled(database_url):
    store = Store(database_url, timeout_seconds=1)
    try:
        with store.engine.connect() as conn:
            assert conn.execute(sa.text("SHOW statement_timeout")).scalar() == "1s"
            started = time.monotonic()
            with pytest.raises(sa.exc.OperationalError):
                conn.execute(sa.text("SELECT pg_sleep(10)"))
            assert time.monotonic() - started < 8
        store.migrate()  # migrations are not bound by it
    finally:
        store.engine.dispose()


def test_a_locked_sqlite_database_answers_503_within_seconds(tmp_path, monkeypatch):
    install_rules(monkeypatch)
    path = tmp_path / "locked.db"
    store = Store(f"sqlite:///{path}", timeout_seconds=1)
    store.migrate()
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another process holds the write lock and hangs
    try:
        client = make_app(store).test_client()
        response, seconds = timed(lambda: client.post("/webhooks/zendesk", data=BODY, headers=signed()))
        assert response.status_code == 503 and seconds < 10
        _, seconds = timed(lambda: client.get("/healthz"))
        assert seconds < 10
    finally:
        holder.execute("ROLLBACK")
        holder.close()
        store.engine.dispose()
    # Once the lock is gone, the same delivery is stored.
    again = Store(f"sqlite:///{path}", timeout_seconds=1)
    try:
        response = make_app(again).test_client().post("/webhooks/zendesk", data=BODY, headers=signed())
        assert response.status_code == 202
    finally:
        again.engine.dispose()


def test_sqlite_waits_for_the_lock_as_long_as_the_timeout(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'busy.db'}", timeout_seconds=3)
    try:
        with store.engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 3000
    finally:
        store.engine.dispose()
