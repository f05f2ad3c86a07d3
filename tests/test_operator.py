"""Operator commands (`flask dead-letters`, `flask audit`) and the audit retention, on both databases."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from jobs.clock import audit_retention
from tests.test_app import make_app

NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)
ZD = "zendesk"


def _park(store, ticket_id: str, error: str) -> None:
    store.enqueue(source=ZD, dedupe_key=f"e-{ticket_id}", ticket_id=ticket_id, event_type="ticket.updated",
                  payload={}, received_at=NOW)
    [claim] = [c for c in store.claim("w", NOW, limit=10) if c.ticket_id == ticket_id]
    store.dead_letter(claim, NOW, error)


def _cli(store, *args):
    return make_app(store).test_cli_runner().invoke(args=list(args))


def test_dead_letters_are_listed_with_their_error_replayed_and_dropped(store):
    _park(store, "101", "PUT tickets/101.json: 422 RecordInvalid: Priority is invalid")
    _park(store, "102", "Freshdesk POST /tickets/102/notes returned 503 (4 tries)")
    result = _cli(store, "dead-letters")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].split() == ["SOURCE", "TICKET", "ATTEMPTS", "PARKED", "AT", "ERROR"]
    assert any("101" in line and "422 RecordInvalid" in line for line in lines[1:])
    assert any("102" in line and "returned 503" in line for line in lines[1:])

    result = _cli(store, "dead-letters", "replay", "101")
    assert result.exit_code == 0 and "1 ticket(s) re-queued" in result.output
    assert [d["ticket_id"] for d in store.dead_letters()] == ["102"]
    assert [c.ticket_id for c in store.claim("w2", NOW + timedelta(minutes=1))] == ["101"]

    result = _cli(store, "dead-letters", "replay", "999")
    assert result.exit_code != 0 and "not parked: 999" in result.output
    assert _cli(store, "dead-letters", "replay").exit_code != 0  # an id or --all

    result = _cli(store, "dead-letters", "drop", "102")
    assert result.exit_code == 0 and "dropped" in result.output
    assert store.dead_letters() == []
    assert _cli(store, "dead-letters", "drop", "102").exit_code != 0
    assert "no parked tickets" in _cli(store, "dead-letters").output


def test_replay_all(store):
    for tid in ("1", "2", "3"):
        _park(store, tid, "boom")
    result = _cli(store, "dead-letters", "replay", "--all")
    assert result.exit_code == 0 and "3 ticket(s) re-queued" in result.output
    assert store.dead_letters() == []


def test_dropping_a_parked_ticket_cancels_the_write_it_still_owed(store):
    _park(store, "7", "note failed")
    write = store.outbox.record(ZD, "7", rules_version="r1", actions=[], parts=[("note", {"note": "x"})],
                                now=NOW)
    assert _cli(store, "dead-letters", "drop", "7").exit_code == 0
    [after] = store.outbox.writes_for(ZD, "7")
    assert after.id == write.id and after.state == "cancelled" and "operator" in after.reason


def test_audit_prints_what_the_bot_did_and_why(store):
    store.outbox.finish(store.outbox.record(ZD, "35436", rules_version="rules-abc123", actions=[
        {"rule": "downgrade-how-to", "type": "set_priority", "before": "urgent",
         "after": {"value": "normal"}},
        {"rule": "downgrade-how-to", "type": "note", "before": None,
         "after": {"body": "Priority lowered from Urgent to Normal by rule `downgrade-how-to`."}},
    ], parts=[("update+note", {"priority": "normal", "note": "…"})], now=NOW), NOW)
    pending = store.outbox.record(ZD, "35436", rules_version="rules-def456", actions=[],
                                  parts=[("update", {"status": "solved"}), ("reply", {"reply": "Bye"})],
                                  now=NOW + timedelta(hours=1))
    store.outbox.done([pending.parts[0].id], NOW + timedelta(hours=1))
    result = _cli(store, "audit", "35436")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "2 action(s)" in out
    assert ("2026-11-23T08:00:00Z  set_priority  urgent → normal  rule downgrade-how-to"
            " (rules rules-abc123)") in out
    assert "owed: write" in out and "still has to send reply" in out
    assert "0 action(s)" in _cli(store, "audit", "1").output


def _snapshot(store, tid: str, status: str, at: datetime) -> None:
    store.save_snapshots(ZD, [{"ticket_id": tid, "ticket": {"id": tid, "status": status}, "decision": {},
                               "next_check": None, "rules_version": "r1"}], at)


def test_retention_purges_finished_tickets_only(store):
    old, recent = NOW - timedelta(days=200), NOW - timedelta(days=10)
    for tid, status in (("open-old", "open"), ("solved-old", "solved"), ("closed-recent", "closed")):
        at = recent if tid.endswith("recent") else old
        _snapshot(store, tid, status, at)
        store.record_actions(ZD, tid, rules_version="r1", now=at,
                             actions=[{"rule": "r", "type": "set_status", "before": "open", "after": {}}])
        store.outbox.finish(store.outbox.record(ZD, tid, rules_version="r1", actions=[],
                                                parts=[("update", {"status": status})], now=at), at)
    store.record_actions(ZD, "gone", rules_version="r1", now=old,
                         actions=[{"rule": "r", "type": "note", "before": None, "after": {}}])
    owed = store.outbox.record(ZD, "owed-old", rules_version="r1", actions=[], parts=[("note", {})], now=old)

    purged = store.purge_audit(NOW - timedelta(days=180))
    # solved-old: its action, snapshot and outbox write; gone (no snapshot): its action.
    assert (purged.actions, purged.snapshots, purged.outbox) == (2, 1, 1)
    assert store.actions_for(ZD, "solved-old") == [] and store.get_snapshot(ZD, "solved-old") is None
    assert store.outbox.writes_for(ZD, "solved-old") == []
    assert store.actions_for(ZD, "gone") == []
    for tid in ("open-old", "closed-recent"):  # open tickets and recent history stay
        assert len(store.actions_for(ZD, tid)) == 1 and store.get_snapshot(ZD, tid) is not None
        assert len(store.outbox.writes_for(ZD, tid)) == 1
    assert [w.id for w in store.outbox.pending(ZD, "owed-old")] == [owed.id]  # unfinished: kept
    assert audit_retention(store, lambda: NOW, 180)() == 0


def test_replan_command_reports_what_it_did(store, tmp_path):
    from jobs.runtime import RulesHolder
    from tests.sweep_helpers import CHOOZLE

    holder = RulesHolder(CHOOZLE)
    result = make_app(store, RULES=holder).test_cli_runner().invoke(args=["replan"])
    assert result.exit_code == 0, result.output
    assert "re-planned 0 ticket(s) for rules" in result.output
    again = make_app(store, RULES=holder).test_cli_runner().invoke(args=["replan"])
    assert "rules unchanged" in again.output
