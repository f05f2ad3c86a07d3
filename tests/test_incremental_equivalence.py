"""Each recorded vendor webhook, decided once through a full read and once through the incremental path.

For every recorded webhook fixture the vendor state it describes is built in the
recorded API shapes (tests/fixtures/zendesk_api/, tests/fixtures/freshdesk_api/),
as it was before the update and after it, and served with `responses`. The ticket
read before the update is the stored snapshot; the connector's `extend` applies the
webhook to it, `fetch_ticket` reads the state after it, and both must give the same
engine ticket and the same decision under a rule set that reads status, priority,
tags, fields, group and comments (tests/fixtures/incremental/rules.yaml). Where
`extend` declines (None), the worker is shown to read the ticket in full; where it
accepts, the worker decides without reading it.
"""

from __future__ import annotations

import copy
import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import responses

from connectors.zendesk import ZendeskConnector
from engine.evaluate import evaluate
from engine.rulefile import load_rules
from engine.ticket import to_epoch
from jobs.worker import Worker, holds_for, ticket_json
from store import Store

HERE = Path(__file__).resolve().parent
RULES = load_rules(HERE / "fixtures" / "incremental" / "rules.yaml")
ZENDESK_WEBHOOKS = HERE / "fixtures" / "zendesk"
ZENDESK_API = HERE / "fixtures" / "zendesk_api"
ZD = "https://acme.zendesk.com/api/v2"
PLAN_FIELD = RULES.helpdesk["zendesk"].fields["plan"]


def _load(folder: Path, name: str) -> dict[str, Any]:
    return json.loads((folder / name).read_text())


def _state(ticket) -> tuple:
    return (ticket.id, ticket.status, ticket.priority, ticket.subject, ticket.description,
            sorted(ticket.tags), ticket.group, dict(ticket.fields), ticket.created_at, ticket.custom_status,
            [(e.at, e.type, e.author, e.public, e.status, e.bot, e.custom_status) for e in ticket.events])


@pytest.fixture
def bot_store(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'deskpilot.db'}")
    store.migrate()
    yield store
    store.engine.dispose()


# -- Zendesk --------------------------------------------------------------------------------------

def _zendesk_status(value: Any) -> str:
    return str(value).lower()


def _zendesk_user(uid: str, name: str, staff: bool) -> dict[str, Any]:
    template = _load(ZENDESK_API, "audits_35436.json")["users"][0]
    return dict(template, id=int(uid), name=name, email=f"{name.split()[0].lower()}@example.org",
                url=f"{ZD}/users/{uid}.json", role="agent" if staff else "end-user", active=True)


def _zendesk_ticket_fields() -> dict[str, Any]:
    """The recorded ticket_fields page, with the webhook fixtures' Plan dropdown (id 360012345678)."""
    page = _load(ZENDESK_API, "ticket_fields.json")
    plan = copy.deepcopy(next(f for f in page["ticket_fields"] if f["title"] == "Plan"))
    plan.update(id=PLAN_FIELD, url=f"{ZD}/ticket_fields/{PLAN_FIELD}.json")
    plan["custom_field_options"] = [
        dict(plan["custom_field_options"][0], id=1, name="Basic", raw_name="Basic", value="basic"),
        dict(plan["custom_field_options"][0], id=2, name="Premium", raw_name="Premium", value="premium"),
    ]
    page["ticket_fields"].append(plan)
    return page


class ZendeskWorld:
    """The vendor state a recorded Zendesk webhook describes: before the update and after it."""

    def __init__(self, body: dict[str, Any]) -> None:
        self.body = body
        detail, event = body["detail"], body.get("event") or {}
        self.kind = body["type"].removeprefix("zen:event-type:ticket.")
        self.number = int(detail["id"])
        requester = str(detail.get("requester_id") or "8447388090500")
        self.users = {requester: _zendesk_user(requester, "Carla Customer", False)}
        for uid in {str(detail.get("actor_id")), str(detail.get("assignee_id") or "")} - {"", "None"}:
            if uid != requester:
                self.users[uid] = _zendesk_user(uid, "Ada Agent", True)
        comment = event.get("comment") or {}
        author = comment.get("author") or {}
        if author.get("id") and str(author["id"]) not in self.users:
            self.users[str(author["id"])] = _zendesk_user(str(author["id"]), str(author.get("name")),
                                                          bool(author.get("is_staff")))
        after = {
            "status": _zendesk_status(detail["status"]),
            "priority": (detail.get("priority") or "").lower() or None,
            "tags": list(detail.get("tags") or []), "group_id": _int(detail.get("group_id")),
            "subject": detail.get("subject"), "description": detail.get("description"),
            "assignee_id": _int(detail.get("assignee_id")),
            "custom_status_id": _int(detail.get("custom_status")),
            "plan": "premium",
        }
        before = dict(after)
        previous = event.get("previous")
        if self.kind == "status_changed":
            before["status"] = _zendesk_status(previous)
        elif self.kind == "priority_changed":
            before["priority"] = str(previous).lower()
        elif self.kind == "tags_changed":
            before["tags"] = [t for t in after["tags"] if t not in event.get("tags_added", [])] + list(
                event.get("tags_removed", []))
        elif self.kind == "custom_field_changed":
            after["plan"] = event["current"]["value"]
            before["plan"] = event["previous"]["value"]
        elif self.kind == "group_assignment_changed":
            before["group_id"] = _int(previous)
        elif self.kind == "agent_assignment_changed":
            before["assignee_id"] = _int(previous)
        elif self.kind == "custom_status_changed":
            before["custom_status_id"] = _int(previous)
        elif self.kind in ("subject_changed", "description_changed"):
            before[self.kind.removesuffix("_changed")] = previous
        elif self.kind in ("merged", "soft_deleted", "marked_as_spam", "permanently_deleted"):
            before["status"] = "open"
        elif self.kind == "undeleted":
            before["status"] = "open"
        self.before, self.after = before, after
        self.created_at = detail["created_at"]
        self.updated_at = detail["updated_at"]
        self.gone = after["status"] in ("deleted", "scrubbed")
        # The creation audit: the requester's description and the initial state.
        self.audits_before = [self._audit(1, self.created_at, requester, [
            {"type": "Comment", "author_id": int(requester), "body": before["description"],
             "plain_body": before["description"], "public": True},
            *[{"type": "Create", "field_name": name, "value": before[name]}
              for name in ("subject", "status", "priority", "tags", "group_id")],
        ])]
        self.audits_after = self.audits_before + [self._audit(2, self.updated_at, str(detail.get("actor_id")),
                                                              self._update_events(before, after, event))]

    def _audit(self, n: int, at: str, author: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        template = _load(ZENDESK_API, "audits_35436.json")["audits"][0]
        numbered = [dict(item, id=9000 + 10 * n + i) for i, item in enumerate(events)]
        return dict(copy.deepcopy(template), id=7000 + n, ticket_id=self.number, created_at=at,
                    author_id=int(author) if author not in ("None", "") else -1, events=numbered)

    def _update_events(self, before: dict, after: dict, event: dict) -> list[dict[str, Any]]:
        events: list[dict[str, Any]] = []
        if self.kind == "comment_added":
            comment = event["comment"]
            events.append({"type": "Comment", "author_id": int(comment["author"]["id"]),
                           "body": comment["body"], "plain_body": comment["body"],
                           "public": comment["is_public"]})
        if self.kind == "comment_made_private":
            events.append({"type": "CommentPrivacyChange", "comment_id": int(event["comment"]["id"]),
                           "public": False})
        for name in ("status", "priority", "tags", "group_id", "assignee_id", "subject", "custom_status_id"):
            if before[name] != after[name]:
                events.append({"type": "Change", "field_name": name, "value": after[name],
                               "previous_value": before[name]})
        if before["plan"] != after["plan"]:
            events.append({"type": "Change", "field_name": str(PLAN_FIELD), "value": after["plan"],
                           "previous_value": before["plan"]})
        return events

    def ticket(self, state: dict[str, Any], updated_at: str) -> dict[str, Any]:
        ticket = copy.deepcopy(_load(ZENDESK_API, "ticket_35436.json")["ticket"])
        fields = [{"id": PLAN_FIELD, "value": state["plan"]}]
        ticket.update(
            id=self.number, url=f"{ZD}/tickets/{self.number}.json", created_at=self.created_at,
            updated_at=updated_at, subject=state["subject"], raw_subject=state["subject"],
            description=state["description"], status=state["status"], priority=state["priority"],
            tags=state["tags"], group_id=state["group_id"], assignee_id=state["assignee_id"],
            custom_status_id=state["custom_status_id"], custom_fields=fields, fields=fields,
            requester_id=int(next(iter(self.users))), submitter_id=int(next(iter(self.users))),
        )
        return ticket

    def serve(self, rsps: responses.RequestsMock, *, updated: bool) -> None:
        """Register the ticket and audits reads of the state before (updated=False) or after the update."""
        state, stamp = (self.after, self.updated_at) if updated else (self.before, self.created_at)
        audits = self.audits_after if updated else self.audits_before
        if updated and self.gone:
            rsps.get(f"{ZD}/tickets/{self.number}.json", status=404,
                     json=_load(ZENDESK_API, "record_not_found.json"))
            rsps.get(f"{ZD}/tickets/{self.number}/audits.json", status=404,
                     json=_load(ZENDESK_API, "record_not_found.json"))
        else:
            rsps.get(f"{ZD}/tickets/{self.number}.json", json={"ticket": self.ticket(state, stamp)})
            page = _load(ZENDESK_API, "audits_35436.json")
            page.update(audits=audits, users=list(self.users.values()),
                        meta={"has_more": False, "after_cursor": None, "before_cursor": None})
            rsps.get(f"{ZD}/tickets/{self.number}/audits.json", json=page)
        rsps.get(f"{ZD}/ticket_fields.json", json=_zendesk_ticket_fields())
        rsps.add_callback(responses.PUT, f"{ZD}/tickets/{self.number}.json", callback=self._put)

    def _put(self, request) -> tuple[int, dict, str]:
        moment = datetime.fromisoformat(self.updated_at.replace("Z", "+00:00")) + timedelta(seconds=1)
        written = self.ticket(self.after, moment.strftime("%Y-%m-%dT%H:%M:%SZ"))
        answer = _load(ZENDESK_API, "ticket_35436_updated.json")
        answer["ticket"] = written
        return 200, {}, json.dumps(answer)


def _int(value: Any) -> int | None:
    return None if value in (None, "") else int(value)


def _zendesk_connector(**options: Any) -> ZendeskConnector:
    mapping = RULES.helpdesk["zendesk"]
    return ZendeskConnector("acme", "bot@example.org", "token", field_ids=dict(mapping.fields),
                            group_ids=dict(mapping.groups), sleep=lambda s: None, backoff_base=0, **options)


def _zendesk_fixtures() -> list[str]:
    names = []
    for path in sorted(ZENDESK_WEBHOOKS.glob("ticket_*.json")):
        body = json.loads(path.read_text())
        detail = body.get("detail") or {}
        if detail.get("updated_at") and detail.get("created_at") and detail.get("updated_at") != detail.get(
                "created_at"):
            names.append(path.name)
    return names


def _decide(store: Store, source: str, remote, now: datetime) -> dict:
    holds = holds_for(store, source, remote, RULES, now)
    return evaluate(remote.ticket, RULES, to_epoch(now), holds).to_dict()


def _ticket_reads(rsps: responses.RequestsMock, path: str) -> int:
    return sum(1 for call in rsps.calls if call.request.method == "GET"
               and re.search(re.escape(path) + r"(\?|$)", call.request.url))


@pytest.mark.parametrize("name", _zendesk_fixtures())
def test_each_recorded_zendesk_webhook_decides_as_a_full_read(name, bot_store):
    body = _load(ZENDESK_WEBHOOKS, name)
    world = ZendeskWorld(body)
    now = datetime.fromisoformat(world.updated_at.replace("Z", "+00:00")) + timedelta(minutes=5)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world.serve(rsps, updated=False)
        before = _zendesk_connector().fetch_ticket(str(world.number))
    snapshot = ticket_json(before.ticket, before.stamp)
    bot_store.save_snapshot("zendesk", str(world.number), ticket=snapshot, decision={}, next_check=None,
                            rules_version=RULES.version, now=now - timedelta(minutes=30))
    payload = {"event_type": world.kind, "body": body}
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world.serve(rsps, updated=True)
        helpdesk = _zendesk_connector()
        extended = helpdesk.extend(snapshot, [payload])
        assert _ticket_reads(rsps, f"/tickets/{world.number}.json") == 0
        if extended is not None:
            full = helpdesk.fetch_ticket(str(world.number))
            assert _state(extended.ticket) == _state(full.ticket), name
            assert extended.stamp == full.stamp
            assert extended.read_only == full.read_only
            assert _decide(bot_store, "zendesk", extended, now) == _decide(bot_store, "zendesk", full, now)
    # The worker takes the same webhook: decided without a read when extend accepts it, else read in full.
    bot_store.enqueue(source="zendesk", dedupe_key=body["id"], ticket_id=str(world.number),
                      event_type=world.kind, payload=payload, received_at=now)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world.serve(rsps, updated=True)
        [outcome] = Worker(bot_store, _zendesk_connector(), lambda: RULES, clock=lambda: now).run_once()
        reads = _ticket_reads(rsps, f"/tickets/{world.number}.json")
    if extended is None:
        assert not outcome.incremental and reads == 1, (name, outcome)
    else:
        assert outcome.incremental and reads == 0 and outcome.error is None, (name, outcome)


def test_the_recorded_webhooks_extend_what_their_payload_says():
    """The events whose payload says all they change are applied without a read."""
    extended = set()
    for name in _zendesk_fixtures():
        body = _load(ZENDESK_WEBHOOKS, name)
        world = ZendeskWorld(body)
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            world.serve(rsps, updated=False)
            helpdesk = _zendesk_connector()
            before = helpdesk.fetch_ticket(str(world.number))
            if helpdesk.extend(ticket_json(before.ticket, before.stamp), [{"body": body}]) is not None:
                extended.add(world.kind)
    assert extended == {"status_changed", "priority_changed", "comment_added", "custom_field_changed",
                        "tags_changed", "group_assignment_changed", "agent_assignment_changed",
                        "subject_changed", "description_changed", "custom_status_changed"}


def test_a_rule_set_naming_custom_status_labels_reads_the_ticket():
    """With custom status labels named, the full read gives the ticket its label: extend cannot."""
    body = _load(ZENDESK_WEBHOOKS, "ticket_status_changed.json")
    world = ZendeskWorld(body)
    statuses = _load(ZENDESK_API, "custom_statuses.json")
    for item in statuses["custom_statuses"]:
        if item["status_category"] == "open":
            item["id"] = world.before["custom_status_id"]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world.serve(rsps, updated=False)
        rsps.get(f"{ZD}/custom_statuses.json", json=statuses)
        helpdesk = _zendesk_connector(status_labels=["Open"])
        before = helpdesk.fetch_ticket(str(world.number))
        assert before.ticket.custom_status == "Open"
        assert helpdesk.extend(ticket_json(before.ticket, before.stamp), [{"body": body}]) is None


# -- Freshdesk --------------------------------------------------------------------------------------
#
# Freshdesk's webhook is the body an admin's automation rule renders (docs/webhooks.md): the ticket's
# status and priority labels, the triggered event and the ticket's updated_at. Freshdesk sends no
# webhook for tag, custom field, subject or description edits, nor (with the documented rule) for a
# customer's reply to an open ticket, and one rule run reports only its first matching event, so
# nothing in a body tells what happened between the stored snapshot and it: every Freshdesk webhook
# is read in full (FreshdeskConnector has no `extend`).

FRESHDESK_WEBHOOKS = HERE / "fixtures" / "freshdesk"
FRESHDESK_API = HERE / "fixtures" / "freshdesk_api"
FD = "https://acme.freshdesk.com/api/v2"
FD_STATUS_IDS = {"open": 2, "pending": 3, "resolved": 4, "closed": 5, "waiting on customer": 6}
FD_PRIORITY_IDS = {"low": 1, "medium": 2, "high": 3, "urgent": 4}
FD_PRIORITY_LABELS = {number: label.title() for label, number in FD_PRIORITY_IDS.items()}


def _freshdesk_connector():
    from connectors.freshdesk import FreshdeskConnector

    mapping = RULES.helpdesk["freshdesk"]
    return FreshdeskConnector("acme.freshdesk.com", "secret-key", field_names=dict(mapping.fields),
                              group_ids=dict(mapping.groups), sleep=lambda s: None, backoff_base=0)


def _freshdesk_ticket(tid: int, *, status: int, priority: int, updated_at: str, tags=("vip", "voice"),
                      plan: str = "Premium") -> dict[str, Any]:
    """The recorded ticket-with-stats shape for ticket `tid` in the given state."""
    data = _load(FRESHDESK_API, "ticket_open_with_stats.json")
    data.update(id=tid, status=status, priority=priority, updated_at=updated_at, tags=list(tags),
                custom_fields=dict(data["custom_fields"], cf_plan=plan))
    data["stats"] = dict(data["stats"], status_updated_at=min(updated_at, data["stats"]["status_updated_at"]),
                         requester_responded_at=None)
    return data


def _freshdesk_conversations(tid: int, until: str) -> list[dict[str, Any]]:
    return [dict(item, ticket_id=tid) for item in _load(FRESHDESK_API, "conversations.json")
            if item["created_at"] <= until]


def _serve_freshdesk(rsps: responses.RequestsMock, data: dict[str, Any], conversations: list) -> None:
    tid = data["id"]
    rsps.get(f"{FD}/tickets/{tid}", json=data)
    rsps.get(f"{FD}/tickets/{tid}/conversations", json=conversations)
    rsps.get(f"{FD}/agents", json=_load(FRESHDESK_API, "agents.json"))
    rsps.get(f"{FD}/ticket_fields", json=_load(FRESHDESK_API, "ticket_fields.json"))
    answer = _load(FRESHDESK_API, "ticket_updated.json")
    rsps.put(f"{FD}/tickets/{tid}", json=dict(answer, id=tid))
    for kind, answer_file in (("notes", "note_created.json"), ("reply", "reply_created.json")):
        rsps.post(f"{FD}/tickets/{tid}/{kind}", json=dict(_load(FRESHDESK_API, answer_file), ticket_id=tid))


def _queued_freshdesk_fixtures() -> list[str]:
    from connectors.freshdesk.events import NormalizedEvent, normalize

    names = []
    for path in sorted(FRESHDESK_WEBHOOKS.glob("*.json")):
        try:
            body = json.loads(path.read_text())
            event = normalize(body, path.read_bytes(), {}, datetime(2026, 11, 20, 16, 0, tzinfo=UTC))
        except ValueError:
            continue
        if isinstance(event, NormalizedEvent):
            names.append(path.name)
    return names


def _stamp_of(body: dict[str, Any]) -> str:
    from connectors.freshdesk.events import rendered_instant

    moment = rendered_instant(body["freshdesk_webhook"].get("ticket_updated_at"))
    moment = moment or datetime.fromisoformat("2026-11-20T15:09:00+00:00")
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.parametrize("name", _queued_freshdesk_fixtures())
def test_each_recorded_freshdesk_webhook_is_read_in_full(name, bot_store):
    from connectors.freshdesk.events import normalize

    body = _load(FRESHDESK_WEBHOOKS, name)
    data = body["freshdesk_webhook"]
    event = normalize(body, b"", {}, datetime(2026, 11, 20, 16, 0, tzinfo=UTC))
    tid = int(event.ticket_id)
    stamp = _stamp_of(body)
    status = FD_STATUS_IDS.get(str(data.get("ticket_status")).lower(), 2)
    priority = FD_PRIORITY_IDS.get(str(data.get("ticket_priority")).lower(), 2)
    now = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(minutes=5)
    before = _freshdesk_ticket(tid, status=2, priority=2, updated_at="2026-11-20T14:30:00Z")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        _serve_freshdesk(rsps, before, [])
        read = _freshdesk_connector().fetch_ticket(str(tid))
    bot_store.save_snapshot("freshdesk", str(tid), ticket=ticket_json(read.ticket, read.stamp), decision={},
                            next_check=None, rules_version=RULES.version, now=now - timedelta(minutes=30))
    bot_store.enqueue(source="freshdesk", dedupe_key=event.dedupe_key, ticket_id=str(tid),
                      event_type=event.event_type, payload=event.payload(body), received_at=now)
    after = _freshdesk_ticket(tid, status=status, priority=priority, updated_at=stamp)
    helpdesk = _freshdesk_connector()
    assert getattr(helpdesk, "extend", None) is None  # no incremental path: see the comment above
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        _serve_freshdesk(rsps, after, _freshdesk_conversations(tid, stamp))
        [outcome] = Worker(bot_store, helpdesk, lambda: RULES, clock=lambda: now).run_once()
        reads = _ticket_reads(rsps, f"/tickets/{tid}")
    assert not outcome.incremental and reads == 1 and outcome.error is None, (name, outcome)
    assert outcome.decision is not None and outcome.decision.priority == read_priority(after)


def read_priority(data: dict[str, Any]) -> str:
    return {1: "low", 2: "normal", 3: "high", 4: "urgent"}[data["priority"]]


def _render_documented_template(data: dict[str, Any], triggered_event: str) -> dict[str, Any]:
    """The body docs/webhooks.md's rule renders for a ticket (`{{ticket.modified_on}}` as Rails prints it)."""
    modified = datetime.fromisoformat(data["updated_at"].replace("Z", "+00:00"))
    labels = {number: label.title() for label, number in FD_STATUS_IDS.items()}
    return {"freshdesk_webhook": {
        "ticket_id": str(data["id"]), "triggered_event": triggered_event,
        "ticket_status": labels[data["status"]], "ticket_priority": FD_PRIORITY_LABELS[data["priority"]],
        "ticket_updated_at": modified.strftime("%Y-%m-%d %H:%M:%S UTC")}}


@pytest.mark.parametrize("edit", ["tags", "plan", "customer reply"])
def test_one_freshdesk_body_stands_for_states_a_full_read_decides_apart(edit, bot_store):
    """A priority change the recorded body describes, with and without an edit Freshdesk sends no
    webhook for: the two bodies are the same, the full reads decide differently, so no function of
    the stored ticket and the body can decide both as a full read does."""
    body = _load(FRESHDESK_WEBHOOKS, "priority_changed.json")
    tid, stamp = int(body["freshdesk_webhook"]["ticket_id"]), _stamp_of(body)
    now = datetime.fromisoformat(stamp.replace("Z", "+00:00")) + timedelta(minutes=5)
    plain = _freshdesk_ticket(tid, status=2, priority=4, updated_at=stamp)
    edited = {"tags": _freshdesk_ticket(tid, status=2, priority=4, updated_at=stamp,
                                        tags=("vip", "voice", "eta_provided")),
              "plan": _freshdesk_ticket(tid, status=2, priority=4, updated_at=stamp, plan="Basic"),
              "customer reply": plain}[edit]
    conversations = _freshdesk_conversations(tid, "2026-11-20T15:30:00Z")
    replied = conversations + [dict(_load(FRESHDESK_API, "conversations.json")[2], ticket_id=tid,
                                    created_at="2026-11-20T15:01:30Z", updated_at="2026-11-20T15:01:30Z")]
    triggered = body["freshdesk_webhook"]["triggered_event"]
    assert _render_documented_template(plain, triggered) == _render_documented_template(edited, triggered)
    decisions = []
    later = replied if edit == "customer reply" else conversations
    for data, items in ((plain, conversations), (edited, later)):
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            _serve_freshdesk(rsps, data, items)
            remote = _freshdesk_connector().fetch_ticket(str(tid))
        decisions.append(_decide(bot_store, "freshdesk", remote, now))
    assert decisions[0] != decisions[1]


def test_the_rendered_modified_on_is_the_update_instant():
    from connectors.freshdesk.events import normalize

    body = _load(FRESHDESK_WEBHOOKS, "status_changed_modified_on.json")
    event = normalize(body, b"", {}, datetime(2026, 11, 20, 16, 0, tzinfo=UTC))
    assert event.occurred_at == datetime(2026, 11, 20, 15, 1, tzinfo=UTC)
    again = normalize(body, b"", {}, datetime(2026, 11, 20, 16, 5, tzinfo=UTC))
    assert again.dedupe_key == event.dedupe_key  # a retry of the delivery is the same event
    utc = {"freshdesk_webhook": dict(body["freshdesk_webhook"], ticket_updated_at="2026-11-20 15:01:00 UTC")}
    assert normalize(utc, b"", {}, datetime(2026, 11, 20, 16, 0, tzinfo=UTC)).occurred_at == event.occurred_at


def _restamped(name: str, updated_at: str, sequence: str) -> dict[str, Any]:
    body = _load(ZENDESK_WEBHOOKS, name)
    body["detail"]["updated_at"] = updated_at
    body["event"]["meta"]["sequence"]["id"] = sequence
    return {"body": body}


def test_a_late_webhook_the_stored_ticket_does_not_show_is_read():
    """Zendesk does not promise the order of deliveries: a customer's comment whose webhook comes
    after a newer update was stored must not be skipped as if it were already in the timeline."""
    from connectors.zendesk.timeline import extend_ticket

    world = ZendeskWorld(_load(ZENDESK_WEBHOOKS, "ticket_comment_added_by_customer.json"))
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        world.serve(rsps, updated=False)
        before = _zendesk_connector().fetch_ticket(str(world.number))
    options = {"field_names": {}, "group_names": {}, "field_types": {}}
    snapshot = ticket_json(before.ticket, before.stamp)
    # A priority change at 15:20 was applied; the customer's comment of 15:10 had not come yet.
    later, stamp = extend_ticket(snapshot, [_restamped("ticket_priority_changed.json", "2026-11-20T15:20:00Z",
                                                       "P1")], **options)
    stored = ticket_json(later, stamp)
    comment = _restamped("ticket_comment_added_by_customer.json", "2026-11-20T15:10:00Z", "C1")
    tags = _restamped("ticket_tags_changed.json", "2026-11-20T15:30:00Z", "T1")
    assert extend_ticket(stored, [comment, tags], **options) is None
    # Applied in order, the same comment is in the timeline, and its redelivery is not news.
    ticket, stamp = extend_ticket(snapshot, [comment], **options)
    ticket, stamp = extend_ticket(ticket_json(ticket, stamp), [
        _restamped("ticket_priority_changed.json", "2026-11-20T15:20:00Z", "P1")], **options)
    extended = extend_ticket(ticket_json(ticket, stamp), [comment, tags], **options)
    assert extended is not None
    assert [(e.type, e.author) for e in extended[0].events].count(("comment", "customer")) == 2
