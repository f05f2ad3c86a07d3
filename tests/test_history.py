"""History reading and its cache (jobs/history.py, connectors/zendesk/history.py) on the Zendesk sandbox."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
import requests
import responses as responses_lib

from connectors.base import signed
from connectors.zendesk.history import ZendeskHistoryReader
from jobs.history import ApiShare, HistoryCache, Progress, load_history
from sandbox.zendesk import SANDBOX_TOKEN, create_sandbox, serve_in_thread
from sandbox.zendesk_state import CUSTOMER_ID, SANDBOX_EMAIL

AUTH = (f"{SANDBOX_EMAIL}/token", SANDBOX_TOKEN)
MONDAY = datetime(2024, 3, 4, 9, 0, tzinfo=UTC)
DAY = 86_400


class FakeTime:
    """A monotonic clock that sleeping advances."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


@pytest.fixture
def zendesk():
    clock = {"now": MONDAY}
    sandbox = create_sandbox(clock=lambda: clock["now"])
    url, stop = serve_in_thread(sandbox)

    def create(when: datetime, **fields) -> str:
        clock["now"] = when
        body = {"ticket": {"subject": "Help", "requester_id": CUSTOMER_ID, "status": "open",
                           "comment": {"body": "Help please", "author_id": CUSTOMER_ID}, **fields}}
        response = requests.post(f"{url}/api/v2/tickets.json", json=body, auth=AUTH, timeout=5)
        response.raise_for_status()
        return str(response.json()["ticket"]["id"])

    def comment(tid: str, when: datetime, author: str, status: str | None = None) -> None:
        clock["now"] = when
        body = {"author": author, "body": "text", **({"status": status} if status else {})}
        requests.post(f"{url}/_sandbox/tickets/{tid}/comments", json=body, timeout=5).raise_for_status()

    try:
        yield sandbox, url, clock, create, comment
    finally:
        stop()


def reader(url: str, time: FakeTime | None = None, **options) -> ZendeskHistoryReader:
    time = time or FakeTime()
    return ZendeskHistoryReader("", SANDBOX_EMAIL, SANDBOX_TOKEN, api_url=url,
                                pace=ApiShare(0.3, clock=time, sleep=time.sleep), sleep=time.sleep, **options)


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def test_api_share_keeps_to_its_part_of_each_minute():
    time = FakeTime()
    share = ApiShare(0.3, clock=time, sleep=time.sleep)
    moments = []
    for _ in range(7):
        share.before("export")
        moments.append(time.now)
    assert share.allowed("export") == 3  # 30% of Zendesk's 10 export calls a minute
    assert all(sum(1 for m in moments if start <= m < start + 60) <= 3 for start in moments)
    assert moments[3] - moments[0] == 60
    share.after("api", {"X-Rate-Limit": "700"})
    assert share.allowed("api") == 210
    share.before("api")
    share.after("api", {"X-RateLimit-Used-CurrentRequest": "3"})  # Freshdesk: one call, three credits
    assert sum(cost for _, cost in share._spent["api"]) == 3
    with pytest.raises(ValueError):
        ApiShare(0)


def test_a_later_window_reads_only_what_changed_since_and_merges_it(store, zendesk):
    sandbox, url, clock, create, comment = zendesk
    tid = create(MONDAY, priority="high", tags=["vip"])
    comment(tid, MONDAY + timedelta(hours=1), "agent", "pending")
    cache = HistoryCache(store.engine)
    first_now = MONDAY + timedelta(days=1)
    clock["now"] = first_now
    docs, facts = load_history(cache, reader(url), epoch(MONDAY), epoch(first_now), now=first_now)
    assert facts["cached"] is False and [d["id"] for d in docs] == [tid]
    assert docs[0]["initial"] == {"status": "open", "priority": "high", "group": None, "tags": ["vip"],
                                  "fields": {}, "custom_status": "Open"}
    comment(tid, MONDAY + timedelta(days=3), "customer", "open")
    later = MONDAY + timedelta(days=4)
    clock["now"] = later
    sandbox.state.requests.clear()
    docs, facts = load_history(cache, reader(url), epoch(MONDAY), epoch(later), now=later)
    starts = {r["path"]: r["query"].get("start_time") for r in sandbox.state.requests}
    # From where the first read ended: a minute before it ran, as Zendesk's exports lag.
    assert starts["/api/v2/incremental/ticket_events.json"] == str(epoch(first_now) - 60)
    assert starts["/api/v2/incremental/tickets/cursor.json"] == str(epoch(first_now) - 60)
    timeline = [(e["type"], e.get("author") or e.get("status")) for e in docs[0]["events"]]
    assert timeline == [("comment", "customer"), ("comment", "agent"), ("status", "pending"),
                        ("comment", "customer"), ("status", "open")]
    assert docs[0]["initial"]["priority"] == "high"  # the cached start is kept


def test_tickets_older_than_the_event_stream_are_read_by_their_audits(store, zendesk):
    sandbox, url, clock, create, comment = zendesk
    old = create(MONDAY)
    comment(old, MONDAY + timedelta(days=4), "agent", "solved")
    now = MONDAY + timedelta(days=5)
    clock["now"] = now
    start = epoch(MONDAY + timedelta(days=3))
    docs, _ = load_history(HistoryCache(store.engine), reader(url, lookback=DAY), start, epoch(now), now=now)
    assert [r["path"] for r in sandbox.state.requests if "audits" in r["path"]] == [
        f"/api/v2/tickets/{old}/audits.json"]
    assert docs[0]["initial"]["status"] == "open"
    assert [e["type"] for e in docs[0]["events"]] == ["comment", "comment", "status"]


def test_rate_limits_are_waited_out(store, zendesk):
    sandbox, url, clock, create, comment = zendesk
    create(MONDAY)
    clock["now"] = MONDAY + timedelta(hours=2)
    requests.post(f"{url}/_sandbox/failures", json={"status": 429, "count": 1, "retry_after": 7}, timeout=5)
    time = FakeTime()
    docs, facts = load_history(HistoryCache(store.engine), reader(url, time), epoch(MONDAY),
                               epoch(clock["now"]), now=clock["now"])
    assert 7 in time.slept and len(docs) == 1


def test_the_bots_own_comments_and_changes_are_the_signed_updates(store, zendesk):
    sandbox, url, clock, create, comment = zendesk
    tid = create(MONDAY)
    clock["now"] = MONDAY + timedelta(hours=1)
    body = {"ticket": {"status": "pending", "comment": {"body": signed("Bot here"), "public": True}}}
    requests.put(f"{url}/api/v2/tickets/{tid}.json", json=body, auth=AUTH, timeout=5).raise_for_status()
    # A person working under the API user's account: neither the comment nor the change is the bot's.
    clock["now"] = MONDAY + timedelta(hours=1, minutes=30)
    body = {"ticket": {"status": "open", "comment": {"body": "A person here", "public": True}}}
    requests.put(f"{url}/api/v2/tickets/{tid}.json", json=body, auth=AUTH, timeout=5).raise_for_status()
    now = MONDAY + timedelta(hours=2)
    docs, _ = load_history(HistoryCache(store.engine), reader(url), epoch(MONDAY), epoch(now), now=now)
    assert [(e["type"], e["bot"]) for e in docs[0]["events"]] == [
        ("comment", False), ("comment", True), ("status", True), ("comment", False), ("status", False)]


def test_system_and_unknown_authors_are_neither_customer_nor_agent(store, zendesk):
    sandbox, url, clock, create, comment = zendesk
    tid = create(MONDAY)
    clock["now"] = MONDAY + timedelta(hours=1)
    body = {"ticket": {"comment": {"body": "Trigger text", "author_id": -1, "public": True}}}
    requests.put(f"{url}/api/v2/tickets/{tid}.json", json=body, auth=AUTH, timeout=5).raise_for_status()
    now = MONDAY + timedelta(hours=2)
    docs, _ = load_history(HistoryCache(store.engine), reader(url), epoch(MONDAY), epoch(now), now=now)
    assert [e["author"] for e in docs[0]["events"] if e["type"] == "comment"] == ["customer", "system"]


def test_another_account_is_never_served_from_the_cache(store, zendesk):
    sandbox, url, clock, create, comment = zendesk
    create(MONDAY)
    now = MONDAY + timedelta(hours=2)
    cache = HistoryCache(store.engine)
    load_history(cache, reader(url), epoch(MONDAY), epoch(now), now=now)
    other = reader(url)
    other.account = "https://other.zendesk.com"
    docs, facts = load_history(cache, other, epoch(MONDAY), epoch(now), now=now)
    assert facts["cached"] is False and facts["calls"] > 0


def test_progress_goes_to_the_terminal_stream():
    out = io.StringIO()
    progress = Progress(out, every=0)
    progress("zendesk: 10 tickets")
    progress.done("zendesk: done")
    assert out.getvalue() == "zendesk: 10 tickets\nzendesk: done\n"


@responses_lib.activate
def test_comment_authors_left_out_of_the_sideloads_are_read_by_show_many():
    """The export sideloads the tickets' requesters, submitters and assignees; another agent's
    comment names a user read with users/show_many (shapes of Zendesk's API reference)."""
    root = "https://acme.zendesk.com/api/v2"
    ticket = {"id": 35436, "created_at": "2024-03-04T09:00:00Z", "updated_at": "2024-03-04T10:00:00Z",
              "status": "open", "priority": None, "group_id": None, "tags": [], "custom_fields": [],
              "requester_id": 20978392, "subject": "Help", "description": "Help please"}
    requester = {"id": 20978392, "role": "end-user", "active": True}
    colleague = {"id": 1100001, "role": "admin", "active": True}
    comment = {"id": 71021, "event_type": "Comment", "author_id": 1100001, "body": "On it",
               "public": True}
    responses_lib.get(f"{root}/incremental/tickets/cursor.json", json={
        "tickets": [ticket], "users": [requester], "after_cursor": "MTU3NjYxMzUzOS4wfHw0Njd8",
        "end_of_stream": True})
    responses_lib.get(f"{root}/incremental/ticket_events.json", json={
        "ticket_events": [
            {"id": 7101, "ticket_id": 35436, "timestamp": epoch(MONDAY), "created_at": "2024-03-04T09:00:00Z",
             "updater_id": 20978392, "event_type": "Audit", "child_events": [
                 {"id": 71011, "event_type": "Comment", "author_id": 20978392, "body": "Help please",
                  "public": True}, {"id": 71012, "event_type": "Create", "status": "open"}]},
            {"id": 7102, "ticket_id": 35436, "timestamp": epoch(MONDAY) + 3600,
             "created_at": "2024-03-04T10:00:00Z", "updater_id": 1100001, "event_type": "Audit",
             "child_events": [comment]}],
        "end_time": epoch(MONDAY) + 3600, "end_of_stream": True})
    show_many = responses_lib.get(f"{root}/users/show_many.json", json={"users": [colleague]})
    history = ZendeskHistoryReader("acme", "bot@acme.example", "token", sleep=lambda s: None)
    docs, _ = history.read(epoch(MONDAY))
    assert [e["author"] for e in docs[0]["events"]] == ["customer", "agent"]
    assert show_many.calls[0].request.params == {"ids": "1100001"}


def test_custom_status_changes_carry_their_labels(store, zendesk):
    sandbox, url, clock, create, comment = zendesk
    tid = create(MONDAY)
    for hours, custom_status_id in ((1, 106), (5, 104)):  # "Waiting on vendor", then "On-hold"
        clock["now"] = MONDAY + timedelta(hours=hours)
        body = {"ticket": {"custom_status_id": custom_status_id}}
        requests.put(f"{url}/api/v2/tickets/{tid}.json", json=body, auth=AUTH, timeout=5).raise_for_status()
    now = MONDAY + timedelta(hours=6)
    docs, _ = load_history(HistoryCache(store.engine), reader(url), epoch(MONDAY), epoch(now), now=now)
    assert docs[0]["initial"]["custom_status"] == "Open"
    assert [(e["status"], e.get("custom_status")) for e in docs[0]["events"] if e["type"] == "status"] == [
        ("on_hold", "Waiting on vendor"), ("on_hold", "On-hold")]


def test_deleted_tickets_in_the_export_are_left_out_unread(store, zendesk):
    sandbox, url, clock, create, comment = zendesk
    kept, gone = create(MONDAY), create(MONDAY + timedelta(minutes=5))
    clock["now"] = MONDAY + timedelta(hours=1)
    requests.delete(f"{url}/api/v2/tickets/{gone}.json", auth=AUTH, timeout=5).raise_for_status()
    now = MONDAY + timedelta(hours=2)
    sandbox.state.requests.clear()
    docs, _ = load_history(HistoryCache(store.engine), reader(url), epoch(MONDAY), epoch(now), now=now)
    assert [d["id"] for d in docs] == [kept]
    assert not [r for r in sandbox.state.requests if f"/tickets/{gone}" in r["path"]]
