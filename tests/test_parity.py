"""The same ticket story through Zendesk and Freshdesk gives the same decisions and equivalent writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from connectors.freshdesk import FreshdeskConnector
from connectors.zendesk import ZendeskConnector
from engine.evaluate import evaluate
from engine.rulefile import load_rules
from engine.ticket import to_epoch
from jobs.worker import changes_from
from sandbox import freshdesk as fd
from sandbox import serve_in_thread
from sandbox import zendesk as zd
from sandbox import zendesk_state as zd_state

RULES = load_rules(Path(__file__).resolve().parent.parent / "rules" / "deskpilot.yaml")
START = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)  # Mon 09:00 Bratislava


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class ZendeskStory:
    def __init__(self, clock: Clock) -> None:
        self.app = zd.create_sandbox(clock=clock)
        self.base, self.stop = serve_in_thread(self.app)
        ids = {k: int(v) for k, v in RULES.helpdesk["zendesk"].fields.items()}
        self.connector = ZendeskConnector("sandbox", zd_state.SANDBOX_EMAIL, zd.SANDBOX_TOKEN,
                                          api_url=self.base, field_ids=ids, sleep=lambda s: None)
        self.client = self.app.test_client()
        self.auth = (f"{zd_state.SANDBOX_EMAIL}/token", zd.SANDBOX_TOKEN)
        self.plan_field = ids["plan"]

    def create(self, subject: str, priority: str, plan: str) -> str:
        response = self.client.post("/api/v2/tickets.json", auth=self.auth, json={"ticket": {
            "subject": subject, "priority": priority, "requester_id": zd_state.CUSTOMER_ID,
            "comment": {"body": "Please help", "author_id": zd_state.CUSTOMER_ID},
            "custom_fields": [{"id": self.plan_field, "value": plan}]}})
        return str(response.json["ticket"]["id"])

    def agent_reply(self, tid: str, pending: bool) -> None:
        body = {"author": "agent", "body": "Try this", "public": True}
        if pending:
            body["status"] = "pending"
        self.client.post(f"/_sandbox/tickets/{tid}/comments", json=body)

    def customer_reply(self, tid: str) -> None:
        # Zendesk reopens a pending ticket when the requester replies.
        self.client.post(f"/_sandbox/tickets/{tid}/comments",
                         json={"author": "customer", "body": "Still broken", "status": "open"})

    def writes(self) -> int:
        return len([r for r in self.app.state.requests if r["method"] in ("PUT", "POST")
                    and "/api/v2/" in r["path"] and r["status"] < 300]) - 1  # minus the create


class FreshdeskStory:
    def __init__(self, clock: Clock) -> None:
        self.app = fd.create_sandbox(clock=clock)
        self.base, self.stop = serve_in_thread(self.app)
        names = {k: str(v) for k, v in RULES.helpdesk["freshdesk"].fields.items()}
        self.connector = FreshdeskConnector("sandbox.freshdesk.com", fd.SANDBOX_API_KEY, api_url=self.base,
                                            field_names=names, sleep=lambda s: None)
        self.client = self.app.test_client()
        self.auth = (fd.SANDBOX_API_KEY, "X")
        self.plan_field = names["plan"]

    def create(self, subject: str, priority: str, plan: str) -> str:
        number = {"low": 1, "normal": 2, "high": 3, "urgent": 4}[priority]
        response = self.client.post("/api/v2/tickets", auth=self.auth, json={
            "subject": subject, "description": "Please help", "email": "customer@example.com",
            "priority": number, "status": 2, "custom_fields": {self.plan_field: plan}})
        return str(response.json["id"])

    def agent_reply(self, tid: str, pending: bool) -> None:
        self.client.post(f"/_sandbox/tickets/{tid}/conversations",
                         json={"author": "agent", "body": "Try this"})
        if pending:
            self.client.put(f"/api/v2/tickets/{tid}", auth=self.auth, json={"status": 3})

    def customer_reply(self, tid: str) -> None:
        self.client.post(f"/_sandbox/tickets/{tid}/conversations",
                         json={"author": "customer", "body": "Still broken"})

    def writes(self) -> int:
        return len([r for r in self.app.state.requests if r["method"] in ("PUT", "POST")
                    and "/api/v2/" in r["path"] and r["status"] < 300]) - 1


def summary(decision) -> dict:
    out = decision.to_dict()
    return {
        "priority": out["priority"], "priority_rule": out["priority_rule"], "policy": out["policy"],
        "targets": out["targets"], "next_check": out["next_check"],
        "actions": [(a["type"], a["rule"], a.get("value"), a.get("values")) for a in out["actions"]],
    }


@pytest.fixture
def stories():
    clock = Clock()
    made = [ZendeskStory(clock), FreshdeskStory(clock)]
    yield clock, made
    for story in made:
        story.stop()


def test_same_story_same_decisions_and_writes(stories):
    clock, (zendesk, freshdesk) = stories
    steps: list[tuple[timedelta, str]] = [
        (timedelta(0), "create"), (timedelta(minutes=50), "agent_reply"),
        (timedelta(hours=2), "customer_reply"),
    ]
    ids = {}
    results: dict[str, list] = {"zendesk": [], "freshdesk": []}
    for offset, step in steps:
        clock.now = START + offset
        for story in (zendesk, freshdesk):
            name = type(story).__name__
            if step == "create":
                ids[name] = story.create("How do I export call logs?", "urgent", "professional")
            elif step == "agent_reply":
                story.agent_reply(ids[name], pending=True)
            else:
                story.customer_reply(ids[name])
        clock.now += timedelta(minutes=5)
        for story, key in ((zendesk, "zendesk"), (freshdesk, "freshdesk")):
            remote = story.connector.fetch_ticket(ids[type(story).__name__])
            decision = evaluate(remote.ticket, RULES, to_epoch(clock.now))
            results[key].append(summary(decision))
            changes = changes_from(decision)
            if not changes.is_empty():
                story.connector.apply(remote, changes)
    assert results["zendesk"] == results["freshdesk"]
    first = results["zendesk"][0]
    assert first["priority"] == "normal" and first["priority_rule"] == "downgrade-how-to"
    assert results["zendesk"][1]["targets"]["first_response"]["state"] == "met"
    # Equivalent writes: after the first decision nothing changes but the SLA state field.
    assert [s["actions"] for s in results["zendesk"][1:]] == [
        [("set_fields", "sla-fields", None, {"sla_first_response_state": "met"})], []]
    assert zendesk.writes() >= 2 and freshdesk.writes() >= 2
