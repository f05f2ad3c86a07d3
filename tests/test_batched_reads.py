"""Batched and resumed Zendesk reads on the sandbox: what the sandbox serves (show_many, audit
cursors), and the calls the worker and the sweep make, counted on its request log."""

from __future__ import annotations

import pytest

from jobs.sweeps import Sweeper
from jobs.worker import Worker
from tests.sweep_helpers import Clock, choozle, zendesk_world
from tests.test_outbox_bulk import ReplyDuringClose
from tests.test_sweeps import due_closes

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ZD = "zendesk"
AUDITS = "audits"


def made(world, since: int) -> list[tuple[str, str, dict]]:
    """(method, what, query) of the API calls since `since`: what is show_many, audits, ticket or
    the path, the ticket ids left out."""
    out = []
    for request in world.app.state.requests[since:]:
        path = request["path"]
        what = ("show_many" if path.endswith("/show_many.json") else AUDITS if path.endswith("/audits.json")
                else "ticket" if path.removeprefix("/api/v2/tickets/").removesuffix(".json").isdigit()
                else path)
        out.append((request["method"], what, request["query"]))
    return out


# -- the sandbox ---------------------------------------------------------------------------------

def test_the_sandbox_lists_audits_after_a_cursor_even_once_more_are_added():
    clock = Clock("2026-11-04T16:00:00Z")
    with zendesk_world(clock) as world:
        tid = world.create()
        world.comment(tid, "agent", "Looking into it")
        audits = f"/api/v2/tickets/{tid}/audits.json"
        first = world.api.get(audits, query_string={"page[size]": 1}).json
        assert [a["id"] for a in first["audits"]] and first["meta"]["has_more"] is True
        last = world.api.get(audits, query_string={"page[size]": 1,
                                                   "page[after]": first["meta"]["after_cursor"]}).json
        assert last["meta"]["has_more"] is False
        empty = world.api.get(audits, query_string={"page[size]": 100,
                                                    "page[after]": last["meta"]["after_cursor"]}).json
        assert empty["audits"] == [] and empty["meta"]["after_cursor"] is None
        world.comment(tid, "customer", "Still broken")  # added later: the old cursor lists it
        later = world.api.get(audits, query_string={"page[size]": 100, "include": "users",
                                                    "page[after]": last["meta"]["after_cursor"]}).json
        assert [e["body"] for a in later["audits"] for e in a["events"] if e["type"] == "Comment"] == [
            "Still broken"]
        assert [u["role"] for u in later["users"]] == ["end-user"]
        older = world.api.get(audits, query_string={"page[size]": 100,
                                                    "page[before]": later["meta"]["before_cursor"]}).json
        assert [a["id"] for a in older["audits"]] == [first["audits"][0]["id"], last["audits"][0]["id"]]
        for query in ({"page[size]": 5, "page[after]": "bm90IGEgY3Vyc29y"},
                      {"page[size]": 5, "page[after]": last["meta"]["after_cursor"],
                       "page[before]": later["meta"]["before_cursor"]}, {"page[size]": 101}):
            assert world.api.get(audits, query_string=query).status_code == 400


def test_the_sandbox_shows_many_tickets_and_leaves_out_those_it_does_not_have():
    clock = Clock("2026-11-04T16:00:00Z")
    with zendesk_world(clock) as world:
        a, b, gone = world.create(), world.create(), world.create()
        assert world.api.delete(f"/api/v2/tickets/{gone}.json").status_code == 204
        answer = world.api.get(f"/api/v2/tickets/show_many.json?ids={b},{gone},999,{a}")
        assert answer.status_code == 200
        assert [t["id"] for t in answer.json["tickets"]] == [int(b), int(a)]
        too_many = ",".join(str(n) for n in range(1, 102))
        assert world.api.get(f"/api/v2/tickets/show_many.json?ids={too_many}").status_code == 400
        assert world.api.get("/api/v2/tickets/show_many.json").status_code == 400


# -- the worker ----------------------------------------------------------------------------------

@SQLITE_ONLY
def test_the_worker_reads_its_claimed_tickets_in_one_show_many_and_resumes_their_audits(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        ids = [world.create(priority="low") for _ in range(4)]
        worker = Worker(store, world.connector(), lambda: rules, clock=clock)
        since = len(world.app.state.requests)
        store.request_sync(ZD, ids, clock(), "test")
        assert [o.error for o in worker.run_once(limit=10)] == [None] * 4
        calls = made(world, since)
        assert [what for _, what, _ in calls] == ["show_many"] + [AUDITS] * 4  # no snapshot yet: every audit
        assert calls[0][2]["ids"] == ",".join(ids)
        assert all("page[after]" not in query for _, what, query in calls if what == AUDITS)
        assert all(store.get_snapshot(ZD, tid)["ticket"]["resume"]["events"] for tid in ids)

        clock.advance(60)  # nothing changed: the stored timelines stand, no audits read
        since = len(world.app.state.requests)
        store.request_sync(ZD, ids, clock(), "test")
        assert [o.error for o in worker.run_once(limit=10)] == [None] * 4
        assert [what for _, what, _ in made(world, since)] == ["show_many"]

        clock.advance(60)  # a customer wrote on one: only its audits after the stored one are read
        world.comment(ids[2], "customer", "Any news?")
        since = len(world.app.state.requests)
        store.request_sync(ZD, ids, clock(), "test")
        outcomes = worker.run_once(limit=10)
        calls = made(world, since)
        assert [what for _, what, _ in calls] == ["show_many", AUDITS]
        assert calls[1][2]["page[after]"] and world.app.state.requests[since + 1]["path"].endswith(
            f"/tickets/{ids[2]}/audits.json")
        [changed] = [o for o in outcomes if o.ticket_id == ids[2]]
        stored = store.get_snapshot(ZD, ids[2])["ticket"]["events"]
        assert [row[1:4] for row in stored if row[1] == "comment"][-1] == ["comment", "customer", True]
        assert changed.error is None


@SQLITE_ONLY
def test_a_ticket_gone_from_the_batch_fails_alone(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        ids = [world.create(priority="low") for _ in range(3)]
        assert world.api.delete(f"/api/v2/tickets/{ids[1]}.json").status_code == 204
        since = len(world.app.state.requests)
        store.request_sync(ZD, ids, clock(), "test")
        outcomes = {o.ticket_id: o for o in Worker(store, world.connector(), lambda: rules,
                                                   clock=clock).run_once(limit=10)}
        assert outcomes[ids[0]].error is None and outcomes[ids[2]].error is None
        assert "404" in outcomes[ids[1]].error or "not found" in outcomes[ids[1]].error.lower()
        # show_many left it out; its own read (404) said it is gone; the others read their audits.
        assert sorted(what for _, what, _ in made(world, since)) == sorted(
            ["show_many", "ticket", AUDITS, AUDITS])
        assert store.get_snapshot(ZD, ids[1]) is None


@SQLITE_ONLY
def test_a_ticket_with_an_unfinished_write_keeps_its_own_read(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        ids = [world.create(priority="low") for _ in range(3)]
        store.outbox.record(ZD, ids[0], rules_version=rules.version, actions=[],
                            parts=[("note", {"note": "Owed from before"})], now=clock())
        since = len(world.app.state.requests)
        store.request_sync(ZD, ids, clock(), "test")
        outcomes = Worker(store, world.connector(), lambda: rules, clock=clock).run_once(limit=10)
        assert [o.error for o in outcomes] == [None] * 3
        calls = made(world, since)
        # The owed write is completed on the ticket's own read first; the others come in one show_many.
        [batch] = [query for _, what, query in calls if what == "show_many"]
        assert batch["ids"] == f"{ids[1]},{ids[2]}"
        own = [r["path"] for r in world.app.state.requests[since:] if r["method"] == "GET"
               and f"/tickets/{ids[0]}" in r["path"]]
        assert own[:2] == [f"/api/v2/tickets/{ids[0]}.json", f"/api/v2/tickets/{ids[0]}/audits.json"]
        assert not store.outbox.pending(ZD, ids[0])
        assert [body for _, _, body in world.comments(ids[0])] == ["Owed from before\n\n— Deskpilot"]


@SQLITE_ONLY
def test_a_single_claim_is_read_on_its_own_as_before(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        tid = world.create(priority="low")
        since = len(world.app.state.requests)
        store.request_sync(ZD, [tid], clock(), "test")
        Worker(store, world.connector(), lambda: rules, clock=clock).run_once(limit=10)
        assert [what for _, what, _ in made(world, since)] == ["ticket", AUDITS]


# -- the sweep -----------------------------------------------------------------------------------

@SQLITE_ONLY
def test_a_sweep_reads_unchanged_due_tickets_with_show_many_and_checks_the_close_on_new_audits(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        ids = due_closes(store, world, clock, 5)
        clock.set("2026-11-09T18:00:00Z")
        since = len(world.app.state.requests)

        report = Sweeper(store, world.connector(), lambda: rules, clock=clock).sweep()

        assert sorted(report.closed) == sorted(ids)
        reads = [(what, query) for method, what, query in made(world, since)
                 if method == "GET" and what in ("show_many", AUDITS, "ticket")]
        # The due read: one show_many, nothing changed since the snapshots. The post-close
        # check: one show_many and each ticket's audits after the newest the sweep had seen.
        assert [what for what, _ in reads] == ["show_many", "show_many"] + [AUDITS] * 5
        assert all(query.get("page[after]") for what, query in reads if what == AUDITS)
        assert len(reads) / len(ids) <= 1.1 + 2 / len(ids)


@SQLITE_ONLY
def test_a_reply_under_the_close_is_found_in_the_audits_after_the_sweeps_read(store):
    clock, rules = Clock("2026-11-04T16:00:00Z"), choozle()
    with zendesk_world(clock) as world:
        ids = due_closes(store, world, clock, 4)
        clock.set("2026-11-09T18:00:00Z")
        since = len(world.app.state.requests)
        racing = ReplyDuringClose(world.connector(), ZD, world, ids[1])

        report = Sweeper(store, racing, lambda: rules, clock=clock, fetch_threads=1).sweep()

        assert sorted(report.closed) == sorted(ids) and report.reopened == [ids[1]]
        assert world.ticket(ids[1])["status"] == "open"
        audits = [query for method, what, query in made(world, since) if what == AUDITS]
        assert len(audits) == 4 and all(query.get("page[after]") for query in audits)
        # The reopen's note is the bot's; the others keep their close.
        assert all(world.ticket(tid)["status"] == "solved" for tid in ids if tid != ids[1])
