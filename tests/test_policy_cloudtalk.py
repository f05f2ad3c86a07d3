"""cloudtalk: plan x priority first-response matrix, office hours vs 24/7, reclassification."""

import pytest

from tests.engine_helpers import comment, decide, target

FRI_1430 = "2026-11-20T14:30:00Z"


@pytest.mark.parametrize(
    ("case", "plan", "priority", "created", "due"),
    [
        ("worked example 1: Friday into Monday", "professional", "urgent", FRI_1430, "2026-11-23T09:30:00Z"),
        (
            "worked example 2: advanced P1 is 24/7",
            "advanced",
            "urgent",
            "2026-11-21T03:00:00Z",
            "2026-11-21T04:00:00Z",
        ),
        ("P2 office hours over the weekend", "professional", "high", FRI_1430, "2026-11-23T12:30:00Z"),
        ("P3 spills into Tuesday", "professional", "normal", "2026-11-23T08:00:00Z", "2026-11-24T09:00:00Z"),
        ("low is P3 too", "professional", "low", "2026-11-23T08:00:00Z", "2026-11-24T09:00:00Z"),
        ("advanced P2 uses office hours", "advanced", "high", "2026-11-21T03:00:00Z", "2026-11-23T11:00:00Z"),
        (
            "advanced P3 created on a Saturday",
            "advanced",
            "normal",
            "2026-11-21T03:00:00Z",
            "2026-11-23T14:00:00Z",
        ),
        (
            "created at night counts from 09:00",
            "professional",
            "urgent",
            "2026-11-24T02:00:00Z",
            "2026-11-24T11:00:00Z",
        ),
        (
            "Christmas holidays in Slovakia",
            "professional",
            "urgent",
            "2026-12-23T15:00:00Z",
            "2026-12-28T10:00:00Z",
        ),
        (
            "DST spring: CET Friday, CEST Monday",
            "professional",
            "urgent",
            "2026-03-27T15:00:00Z",
            "2026-03-30T09:00:00Z",
        ),
        (
            "DST fall: CEST Friday, CET Monday",
            "professional",
            "urgent",
            "2026-10-23T14:00:00Z",
            "2026-10-26T10:00:00Z",
        ),
        (
            "24/7 across DST fall-back night",
            "advanced",
            "urgent",
            "2026-10-25T00:30:00Z",
            "2026-10-25T01:30:00Z",
        ),
        (
            "plan value compared case-insensitively",
            "Professional",
            "urgent",
            FRI_1430,
            "2026-11-23T09:30:00Z",
        ),
    ],
)
def test_first_response_due(case, plan, priority, created, due):
    decision = decide("cloudtalk", created, priority=priority, fields={"plan": plan}, created_at=created)
    assert target(decision, "first_response") == (due, "running"), case


def test_basic_plan_has_no_target():
    decision = decide("cloudtalk", FRI_1430, priority="urgent", fields={"plan": "basic"}, created_at=FRI_1430)
    assert decision.policy == "basic"
    assert decision.to_dict()["targets"] == {
        "first_response": None, "resolution": None, "next_update": None, "next_reply": None
    }


def test_no_plan_no_policy():
    decision = decide("cloudtalk", FRI_1430, priority="urgent", created_at=FRI_1430)
    assert decision.policy is None and target(decision, "first_response") is None


def test_no_priority_defaults_to_normal():
    decision = decide(
        "cloudtalk", FRI_1430, priority=None, fields={"plan": "professional"}, created_at=FRI_1430
    )
    assert (decision.priority, decision.priority_rule) == ("normal", "default-priority")
    assert [a.type for a in decision.actions] == ["set_priority", "note"]
    assert decision.actions[1].body.startswith("Priority set to Normal by rule `default-priority`")
    # P3: 9 office hours from Friday 15:30 local: 1.5 h Friday, 7.5 h Monday.
    assert target(decision, "first_response") == ("2026-11-23T15:30:00Z", "running")


@pytest.mark.parametrize(
    ("subject", "description", "rule", "matched"),
    [
        ("How do I add a user?", "", "downgrade-how-to", "subject matches 'How do I'"),
        ("Question", "how can i export calls", "downgrade-how-to", "description matches 'how can i'"),
        ("HOW TO route calls", "", "downgrade-how-to", "subject matches 'HOW TO'"),
        ("Calls fail in our STAGING account", "", "downgrade-non-production", "subject matches 'STAGING'"),
        ("Sandbox numbers", "", "downgrade-non-production", "subject matches 'Sandbox'"),
        (
            "Broken",
            "only in the test   environment",
            "downgrade-non-production",
            "description matches 'test   environment'",
        ),
    ],
)
def test_urgent_downgrades(subject, description, rule, matched):
    decision = decide(
        "cloudtalk",
        FRI_1430,
        priority="urgent",
        subject=subject,
        description=description,
        fields={"plan": "professional"},
        created_at=FRI_1430,
    )
    assert (decision.priority, decision.priority_rule) == ("normal", rule)
    note = decision.actions[1]
    assert note.type == "note" and note.rule == rule
    assert note.body.startswith(f"Priority lowered from Urgent to Normal by rule `{rule}`")
    assert matched in note.body
    assert "First response due Mon 23 Nov 16:30 CET, 9 business hours (P3), Professional plan." in note.body


@pytest.mark.parametrize(
    "subject", ["Production down", "Contest entries missing", "Latest release broke calls"]
)
def test_production_urgent_stays(subject):
    decision = decide(
        "cloudtalk",
        FRI_1430,
        priority="urgent",
        subject=subject,
        fields={"plan": "professional"},
        created_at=FRI_1430,
    )
    assert decision.priority == "urgent" and decision.priority_rule is None and decision.actions == []


def test_downgrade_only_touches_urgent():
    decision = decide(
        "cloudtalk",
        FRI_1430,
        priority="high",
        subject="How do I fix staging",
        fields={"plan": "professional"},
        created_at=FRI_1430,
    )
    assert decision.priority == "high" and decision.actions == []


def test_bot_update_converges():
    """After the bot's own write comes back, the same rules decide nothing new."""
    first = decide(
        "cloudtalk",
        FRI_1430,
        priority="urgent",
        subject="How to set up IVR",
        fields={"plan": "professional"},
        created_at=FRI_1430,
    )
    again = decide(
        "cloudtalk",
        FRI_1430,
        priority=first.priority,
        subject="How to set up IVR",
        fields={"plan": "professional"},
        created_at=FRI_1430,
    )
    assert again.actions == [] and again.priority == "normal"


@pytest.mark.parametrize(
    ("events", "now", "expected"),
    [
        ([comment("2026-11-23T09:00:00Z")], "2026-11-23T12:00:00Z", ("2026-11-23T11:00:00Z", "met")),
        ([comment("2026-11-23T11:00:00Z")], "2026-11-23T12:00:00Z", ("2026-11-23T11:00:00Z", "met")),
        ([comment("2026-11-23T11:30:00Z")], "2026-11-23T12:00:00Z", ("2026-11-23T11:00:00Z", "breached")),
        (
            [comment("2026-11-23T09:00:00Z", public=False)],
            "2026-11-23T12:00:00Z",
            ("2026-11-23T11:00:00Z", "breached"),
        ),
        (
            [comment("2026-11-23T09:00:00Z", author="customer")],
            "2026-11-23T10:00:00Z",
            ("2026-11-23T11:00:00Z", "running"),
        ),
        ([], "2026-11-23T11:00:00Z", ("2026-11-23T11:00:00Z", "running")),
        ([], "2026-11-23T11:00:01Z", ("2026-11-23T11:00:00Z", "breached")),
        # Events after `now` are not known yet.
        ([comment("2026-11-23T10:30:00Z")], "2026-11-23T10:00:00Z", ("2026-11-23T11:00:00Z", "running")),
    ],
)
def test_first_response_states(events, now, expected):
    decision = decide(
        "cloudtalk",
        now,
        priority="urgent",
        fields={"plan": "professional"},
        created_at="2026-11-23T08:00:00Z",
        events=events,
    )
    assert target(decision, "first_response") == expected
