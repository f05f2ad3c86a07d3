"""choozle: business-week calendar (Mon 00:00 - Fri 24:00 Denver), pauses, reopen, auto-close."""

from pathlib import Path

import pytest

from tests.engine_helpers import comment, decide, status, target

TUE = "2026-11-03T17:00:00Z"  # Tue 10:00 MST


def run(now, priority="urgent", created=TUE, **ticket):
    return decide("choozle", now, priority=priority, created_at=created, **ticket)


@pytest.mark.parametrize(
    ("case", "priority", "created", "first_response", "resolution"),
    [
        ("worked example 3", "urgent", TUE, "2026-11-03T19:00:00Z", "2026-11-04T17:00:00Z"),
        ("high is S1 too", "high", TUE, "2026-11-03T19:00:00Z", "2026-11-04T17:00:00Z"),
        # Friday 16:00 MST: 8 h left that day; Veterans Day (Wed 11 Nov) is skipped.
        (
            "S2 over a weekend and a holiday",
            "normal",
            "2026-11-06T23:00:00Z",
            "2026-11-07T01:00:00Z",
            "2026-11-12T23:00:00Z",
        ),
        # Wed 25 Nov 23:00 MST: 1 h left, Thanksgiving closed, Friday resumes;
        # resolution: 1 + 24 (Fri) + 24 x 3 (Mon-Wed) + 23 (Thu) = 120 h.
        (
            "S3 around Thanksgiving",
            "low",
            "2026-11-26T06:00:00Z",
            "2026-11-27T09:00:00Z",
            "2026-12-04T06:00:00Z",
        ),
        # Fri 30 Oct 14:00 MDT, 10 h that day; Monday is MST after the fall-back weekend.
        (
            "DST fall between Friday and Monday",
            "urgent",
            "2026-10-30T20:00:00Z",
            "2026-10-30T22:00:00Z",
            "2026-11-02T21:00:00Z",
        ),
        # Fri 6 Mar 14:00 MST; Monday is MDT after the spring-forward weekend.
        (
            "DST spring between Friday and Monday",
            "urgent",
            "2026-03-06T21:00:00Z",
            "2026-03-06T23:00:00Z",
            "2026-03-09T20:00:00Z",
        ),
        (
            "created on Saturday starts Monday 00:00",
            "urgent",
            "2026-11-07T18:00:00Z",
            "2026-11-09T09:00:00Z",
            "2026-11-10T07:00:00Z",
        ),
    ],
)
def test_due_times(case, priority, created, first_response, resolution):
    decision = run(created, priority=priority, created=created)
    assert target(decision, "first_response") == (first_response, "running"), case
    assert target(decision, "resolution") == (resolution, "running"), case


def test_warn_thresholds():
    decision = run("2026-11-09T23:00:00Z", priority="normal", created="2026-11-06T23:00:00Z")
    resolution = decision.to_dict()["targets"]["resolution"]
    # 24 business hours: Friday 8 h, Monday 16 h -> Mon 16:00 MST.
    assert resolution["warn_at"] == "2026-11-09T23:00:00Z" and resolution["warning"] is True
    before = run("2026-11-09T22:59:59Z", priority="normal", created="2026-11-06T23:00:00Z")
    assert before.to_dict()["targets"]["resolution"]["warning"] is False
    assert (
        before.next_check
        == run("2026-11-09T22:59:59Z", priority="normal", created="2026-11-06T23:00:00Z").next_check
    )
    s1 = run(TUE).to_dict()["targets"]["resolution"]
    assert "warn_at" not in s1


@pytest.mark.parametrize("pause", ["pending", "on_hold"])
def test_resolution_pauses_while_waiting(pause):
    events = [status("2026-11-03T18:00:00Z", pause), status("2026-11-04T18:00:00Z", "open")]
    paused = run("2026-11-04T10:00:00Z", events=events[:1], status=pause)
    assert target(paused, "resolution") == (None, "paused")
    resumed = run("2026-11-04T20:00:00Z", events=events)
    # One hour used before the pause, 23 after 18:00Z Wednesday.
    assert target(resumed, "resolution") == ("2026-11-05T17:00:00Z", "running")


def test_first_response_does_not_pause():
    decision = run(
        "2026-11-03T18:30:00Z", events=[status("2026-11-03T18:00:00Z", "pending")], status="pending"
    )
    assert target(decision, "first_response") == ("2026-11-03T19:00:00Z", "running")


def test_solved_then_reopened_resumes():
    solved = [comment("2026-11-03T18:00:00Z"), status("2026-11-03T20:00:00Z", "solved")]
    met = run("2026-11-04T10:00:00Z", events=solved, status="solved")
    assert target(met, "resolution") == ("2026-11-04T17:00:00Z", "met")
    reopened = run("2026-11-04T21:00:00Z", events=[*solved, status("2026-11-04T20:00:00Z", "open")])
    assert target(reopened, "resolution") == ("2026-11-05T17:00:00Z", "running")


def test_breached_and_late():
    breached = run("2026-11-05T00:00:00Z")
    assert target(breached, "first_response") == ("2026-11-03T19:00:00Z", "breached")
    assert target(breached, "resolution") == ("2026-11-04T17:00:00Z", "breached")
    late = run(
        "2026-11-06T00:00:00Z",
        events=[comment("2026-11-03T19:30:00Z"), status("2026-11-05T00:00:00Z", "solved")],
        status="solved",
    )
    assert target(late, "resolution") == ("2026-11-04T17:00:00Z", "breached")
    assert target(late, "first_response") == ("2026-11-03T19:00:00Z", "breached")


def test_breach_before_pause_stays_breached():
    decision = run(
        "2026-11-06T00:00:00Z", events=[status("2026-11-05T00:00:00Z", "pending")], status="pending"
    )
    assert target(decision, "resolution") == ("2026-11-04T17:00:00Z", "breached")


def test_status_change_without_event():
    """The current status differs from the last status event: the change is placed at the
    latest event after it (here the customer's reply reopened a pending ticket)."""
    events = [status("2026-11-03T18:00:00Z", "pending"), comment("2026-11-04T18:00:00Z", author="customer")]
    decision = run("2026-11-04T20:00:00Z", events=events, status="open")
    assert target(decision, "resolution") == ("2026-11-05T17:00:00Z", "running")


AGENT_WED = "2026-11-04T18:00:00Z"  # Wed 11:00 MST


def proposed(now, extra=(), **kw):
    events = [comment(AGENT_WED), status(AGENT_WED, "pending"), *extra]
    return run(
        now,
        created="2026-11-02T17:00:00Z",
        events=events,
        status=kw.pop("status", "pending"),
        tags=kw.pop("tags", ["resolution_proposed"]),
        **kw,
    )


def test_auto_close_waits_three_business_days():
    # Wed 13 h + Thu 24 h + Fri 24 h = 61 h; Monday 11 h more -> Mon 9 Nov 11:00 MST.
    early = proposed("2026-11-09T17:59:59Z")
    assert early.actions == [] and early.next_check == at_("2026-11-09T18:00:00Z")
    due = proposed("2026-11-09T18:00:00Z")
    assert [(a.type, a.rule) for a in due.actions] == [
        ("set_status", "resolve-after-3-business-days"),
        ("reply", "resolve-after-3-business-days"),
        ("note", "resolve-after-3-business-days"),
    ]
    assert due.actions[0].value == "solved"
    assert "72 business hours" in due.actions[2].body


def test_auto_close_holiday_moves_it():
    events = [comment("2026-11-25T18:00:00Z"), status("2026-11-25T18:00:00Z", "pending")]
    # Wed 13 h, Thanksgiving closed, Fri 24 h, Mon 24 h, Tue 11 h -> Tue 1 Dec 11:00 MST.
    decision = run(
        "2026-11-30T23:00:00Z",
        created="2026-11-23T17:00:00Z",
        events=events,
        status="pending",
        tags=["resolution_proposed"],
    )
    assert decision.actions == [] and decision.next_check == at_("2026-12-01T18:00:00Z")


@pytest.mark.parametrize(
    ("case", "kw"),
    [
        (
            "a later customer comment cancels it",
            {"extra": [comment("2026-11-05T18:00:00Z", author="customer")]},
        ),
        ("no resolution_proposed tag", {"tags": []}),
        ("not pending", {"status": "open"}),
        ("already solved", {"status": "solved"}),
    ],
)
def test_auto_close_does_not_fire(case, kw):
    assert proposed("2026-11-12T00:00:00Z", **kw).actions == [], case


def at_(text):
    from tests.engine_helpers import at

    return at(text)


REMINDER_RULES = Path(__file__).parent / "fixtures" / "rules" / "reminder.yaml"


def test_auto_close_reminder_then_close():
    from engine.evaluate import evaluate
    from engine.rulefile import load_rules
    from engine.ticketjson import parse_ticket
    from tests.engine_helpers import at

    rules = load_rules(REMINDER_RULES)
    base = {
        "id": "1",
        "status": "pending",
        "tags": ["resolution_proposed"],
        "created_at": "2026-11-02T17:00:00Z",
    }
    events = [comment(AGENT_WED), status(AGENT_WED, "pending")]

    def decide_at(now, evs):
        return evaluate(parse_ticket(dict(base, events=evs)), rules, at(now))

    # 48 business hours after Wed 11:00 MST: Fri 11:00 MST.
    waiting = decide_at("2026-11-06T17:59:59Z", events)
    assert waiting.actions == [] and waiting.next_check == at("2026-11-06T18:00:00Z")
    remind = decide_at("2026-11-06T18:00:00Z", events)
    assert [a.type for a in remind.actions] == ["reply", "note"]
    assert remind.next_check == at("2026-11-09T18:00:00Z")
    # The bot's reminder does not restart the wait.
    reminded = [*events, {**comment("2026-11-06T18:00:05Z"), "bot": True}]
    assert decide_at("2026-11-09T17:00:00Z", reminded).actions == []
    closing = decide_at("2026-11-09T18:00:00Z", reminded)
    assert [a.type for a in closing.actions] == ["set_status", "reply", "note"]
    # A customer reply after the reminder cancels both.
    replied = [*reminded, comment("2026-11-07T10:00:00Z", author="customer")]
    assert decide_at("2026-11-12T00:00:00Z", replied).actions == []


def test_solved_then_closed_is_resolved_when_solved():
    events = [comment("2026-11-03T18:00:00Z"), status("2026-11-04T16:00:00Z", "solved"),
              status("2026-11-06T16:00:00Z", "closed")]
    decision = run("2026-11-07T00:00:00Z", events=events, status="closed")
    assert target(decision, "resolution") == ("2026-11-04T17:00:00Z", "met")
    assert decision.to_dict()["targets"]["resolution"]["achieved_at"] == "2026-11-04T16:00:00Z"


def test_pending_then_on_hold_is_one_pause():
    # Used 1 h before pending; the budget would have run out at 17:00Z Wednesday without the pause.
    events = [status("2026-11-03T18:00:00Z", "pending"), status("2026-11-04T12:00:00Z", "on_hold")]
    decision = run("2026-11-06T00:00:00Z", events=events, status="on_hold")
    assert target(decision, "resolution") == (None, "paused")
