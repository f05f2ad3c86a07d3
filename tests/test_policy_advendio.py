"""advendio: plan x level matrix on Berlin office hours, reclassification, CSM escalation."""

import pytest

from tests.engine_helpers import comment, decide, target

MON = "2026-11-23T08:00:00Z"  # Mon 09:00 CET


def run(now, priority="urgent", plan="premium", created=MON, fields=None, **ticket):
    return decide(
        "advendio",
        now,
        priority=priority,
        created_at=created,
        fields={"plan": plan, **(fields or {})},
        **ticket,
    )


@pytest.mark.parametrize(
    ("plan", "priority", "due"),
    [
        ("premium", "urgent", "2026-11-23T10:00:00Z"),
        ("premium", "high", "2026-11-23T12:00:00Z"),
        ("premium", "normal", "2026-11-23T16:00:00Z"),
        ("premium", "low", "2026-11-24T16:00:00Z"),
        ("basic", "urgent", "2026-11-23T12:00:00Z"),
        ("basic", "high", "2026-11-23T16:00:00Z"),
        ("basic", "normal", "2026-11-24T16:00:00Z"),
        ("basic", "low", "2026-11-24T16:00:00Z"),
    ],
)
def test_matrix(plan, priority, due):
    decision = run(MON, priority=priority, plan=plan)
    assert decision.policy == plan
    assert target(decision, "first_response") == (due, "running")


def test_easter_holidays():
    # Thu 2 Apr 16:00 CEST, L2 4 h: 1 h Thursday, Good Friday and Easter Monday closed.
    decision = run("2026-04-02T14:00:00Z", priority="high", created="2026-04-02T14:00:00Z")
    assert target(decision, "first_response") == ("2026-04-07T10:00:00Z", "running")


@pytest.mark.parametrize("reason", ["question", "customization_request", "feature_request"])
@pytest.mark.parametrize("priority", ["urgent", "high", "normal"])
def test_inquiries_become_level_4(reason, priority):
    decision = run(MON, priority=priority, fields={"case_reason": reason})
    assert (decision.priority, decision.priority_rule) == ("low", "inquiries-are-level-4")
    assert target(decision, "first_response") == ("2026-11-24T16:00:00Z", "running")
    assert "Priority lowered from" in decision.actions[1].body


def test_low_inquiry_untouched():
    decision = run(MON, priority="low", fields={"case_reason": "question"})
    assert decision.priority_rule is None and decision.actions == []


@pytest.mark.parametrize(
    "subject",
    [
        "Data corrupted after import",
        "Possible data loss in bookings",
        "Reports empty for all users",
        "Ad server sync unavailable",
    ],
)
def test_data_integrity_bug_becomes_level_1(subject):
    decision = run(MON, priority="normal", subject=subject, fields={"case_reason": "bug"})
    assert (decision.priority, decision.priority_rule) == ("urgent", "data-integrity-is-level-1")
    assert decision.actions[1].body.startswith("Priority raised from Normal to Urgent")


def test_bug_without_data_words_untouched():
    decision = run(MON, priority="normal", subject="Button misaligned", fields={"case_reason": "bug"})
    assert decision.priority == "normal" and decision.actions == []


def test_breach_escalates_to_csm_once():
    breached = run("2026-11-23T10:00:01Z")
    assert target(breached, "first_response") == ("2026-11-23T10:00:00Z", "breached")
    assert [(a.type, a.rule) for a in breached.actions] == [
        ("add_tags", "escalate-to-csm"),
        ("note", "escalate-to-csm"),
    ]
    assert breached.actions[0].values == ("escalated_csm",)
    assert "Customer Success Manager" in breached.actions[1].body
    again = run("2026-11-23T11:00:00Z", tags=["escalated_csm"])
    assert again.actions == []


def test_no_escalation_before_breach():
    decision = run("2026-11-23T10:00:00Z")
    assert decision.actions == [] and decision.next_check == decision.targets["first_response"].due + 1


def test_answered_in_time_no_escalation():
    decision = run("2026-11-23T12:00:00Z", events=[comment("2026-11-23T09:00:00Z")])
    assert target(decision, "first_response") == ("2026-11-23T10:00:00Z", "met")
    assert decision.actions == []
