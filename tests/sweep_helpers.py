"""Shared by the sweep, reconciliation, budget and clock tests: a settable clock and sandbox helpdesks."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from connectors.freshdesk import FreshdeskConnector
from connectors.zendesk import ZendeskConnector
from engine.rulefile import load_rules
from sandbox import freshdesk as fd_sandbox
from sandbox import zendesk as zd_sandbox
from sandbox import zendesk_state as zd_state

ROOT = Path(__file__).resolve().parent.parent
CHOOZLE = ROOT / "rules" / "examples" / "choozle.yaml"


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


class Clock:
    """A settable clock shared by the sandbox, the worker and the sweeper."""

    def __init__(self, now: datetime | str) -> None:
        self.now = at(now) if isinstance(now, str) else now

    def __call__(self) -> datetime:
        return self.now

    def set(self, text: str) -> datetime:
        self.now = at(text)
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += timedelta(seconds=seconds)
        return self.now


def choozle():
    return load_rules(CHOOZLE)


def _basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class ZendeskWorld:
    """The Zendesk sandbox served on 127.0.0.1, with helpers to act as customer and agent."""

    app: Any
    base_url: str

    def __post_init__(self) -> None:
        self.api = self.app.test_client()
        self.api.environ_base["HTTP_AUTHORIZATION"] = _basic(
            f"{zd_state.SANDBOX_EMAIL}/token", zd_sandbox.SANDBOX_TOKEN)

    def connector(self, **options) -> ZendeskConnector:
        return ZendeskConnector("sandbox", zd_state.SANDBOX_EMAIL, zd_sandbox.SANDBOX_TOKEN,
                                api_url=self.base_url, sleep=lambda _: None, **options)

    def create(self, *, priority: str | None = None, tags: tuple[str, ...] = (),
               subject: str = "Help") -> str:
        ticket = {"subject": subject, "priority": priority, "tags": list(tags),
                  "requester_id": zd_state.CUSTOMER_ID,
                  "comment": {"body": "It is broken.", "author_id": zd_state.CUSTOMER_ID}}
        response = self.api.post("/api/v2/tickets.json", json={"ticket": ticket})
        assert response.status_code == 201, response.json
        return str(response.json["ticket"]["id"])

    def comment(self, tid: str, author: str, body: str, **extra) -> None:
        response = self.api.post(f"/_sandbox/tickets/{tid}/comments",
                                 json={"author": author, "body": body, **extra})
        assert response.status_code == 201, response.json

    def propose_resolution(self, tid: str, body: str = "This should be fixed now; please confirm.") -> None:
        """What an agent does on a Choozle ticket: a public comment, pending, resolution_proposed."""
        self.comment(tid, "agent", body, status="pending")
        response = self.api.put(f"/api/v2/tickets/{tid}.json",
                                json={"ticket": {"additional_tags": ["resolution_proposed"]}})
        assert response.status_code == 200, response.json

    def ticket(self, tid: str) -> dict:
        return self.api.get(f"/api/v2/tickets/{tid}.json").json["ticket"]

    def comments(self, tid: str) -> list[tuple[int, bool, str]]:
        """(author_id, public, body) of each comment after the first."""
        data = self.api.get(f"/api/v2/tickets/{tid}/comments.json").json["comments"]
        return [(c["author_id"], c["public"], c["body"]) for c in data[1:]]

    def requests(self) -> list[dict]:
        return self.api.get("/_sandbox/requests").json

    def writes(self) -> list[dict]:
        """API calls that change tickets (the test's own setup calls included)."""
        return [r for r in self.requests() if r["method"] in ("PUT", "POST")]


@contextmanager
def zendesk_world(clock: Clock, **options) -> Iterator[ZendeskWorld]:
    app = zd_sandbox.create_sandbox(clock=clock, **options)
    base_url, stop = zd_sandbox.serve_in_thread(app)
    try:
        yield ZendeskWorld(app, base_url)
    finally:
        stop()


@dataclass
class FreshdeskWorld:
    """The Freshdesk sandbox served on 127.0.0.1."""

    app: Any
    base_url: str

    def __post_init__(self) -> None:
        self.api = self.app.test_client()
        self.api.environ_base["HTTP_AUTHORIZATION"] = _basic(fd_sandbox.SANDBOX_API_KEY, "X")

    def connector(self, **options) -> FreshdeskConnector:
        return FreshdeskConnector("sandbox", fd_sandbox.SANDBOX_API_KEY, api_url=self.base_url,
                                  sleep=lambda _: None, timeout=5, **options)

    def create(self, *, priority: int = 1, status: int = 2, tags: tuple[str, ...] = ()) -> str:
        response = self.api.post("/api/v2/tickets", json={
            "subject": "Help", "description": "It is broken.", "priority": priority, "status": status,
            "tags": list(tags), "email": "casey@example.org"})
        assert response.status_code == 201, response.json
        return str(response.json["id"])

    def converse(self, tid: str, author: str, body: str, private: bool = False) -> None:
        response = self.api.post(f"/_sandbox/tickets/{tid}/conversations",
                                 json={"author": author, "body": body, "private": private})
        assert response.status_code == 201

    def update(self, tid: str, **properties) -> None:
        assert self.api.put(f"/api/v2/tickets/{tid}", json=properties).status_code == 200

    def ticket(self, tid: str) -> dict:
        return self.api.get(f"/api/v2/tickets/{tid}").json

    def conversations(self, tid: str) -> list[dict]:
        return self.api.get(f"/api/v2/tickets/{tid}/conversations?per_page=100").json

    def requests(self) -> list[dict]:
        return self.api.get("/_sandbox/requests").json

    def forget_requests(self) -> None:
        self.api.delete("/_sandbox/requests")


@contextmanager
def freshdesk_world(clock: Clock, **options) -> Iterator[FreshdeskWorld]:
    app = fd_sandbox.create_sandbox(clock=clock, **options)
    base_url, stop = fd_sandbox.serve_in_thread(app)
    try:
        yield FreshdeskWorld(app, base_url)
    finally:
        stop()
