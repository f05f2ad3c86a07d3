"""liveops: 24/7 acknowledgement, periodic updates, elevation to Level 2."""

import pytest

from tests.engine_helpers import at, comment, decide, target

CREATED = "2026-11-21T10:00:00Z"


def run(now, priority="high", **ticket):
    return decide("liveops", now, priority=priority, created_at=CREATED, **ticket)


@pytest.mark.parametrize(
    ("priority", "due"),
    [
        ("urgent", "2026-11-21T11:00:00Z"),
        ("high", "2026-11-21T14:00:00Z"),
        ("normal", "2026-11-21T18:00:00Z"),
        ("low", "2026-11-21T18:00:00Z"),
    ],
)
def test_acknowledgement(priority, due):
    assert target(run(CREATED, priority=priority, group="Level 2"), "first_response") == (due, "running")


def test_worked_example_4_elevates_p2_after_8_hours():
    decision = run("2026-11-21T18:01:00Z")
    assert [(a.type, a.value, a.rule) for a in decision.actions] == [
        ("assign_group", "Level 2", "p2-elevate-to-level-2"),
        ("note", None, "p2-elevate-to-level-2"),
    ]


def test_p2_waits_until_8_hours():
    decision = run("2026-11-21T17:59:59Z")
    assert decision.actions == [] and decision.next_check == at("2026-11-21T18:00:00Z")
    assert [a.type for a in run("2026-11-21T18:00:00Z").actions] == ["assign_group", "note"]


@pytest.mark.parametrize("tag", ["eta_provided", "workaround_provided"])
def test_p2_not_elevated_with_eta_or_workaround(tag):
    assert run("2026-11-21T19:00:00Z", tags=[tag]).actions == []


def test_p2_already_in_level_2():
    assert run("2026-11-21T19:00:00Z", group="Level 2").actions == []


def test_p1_elevated_at_once():
    decision = run(CREATED, priority="urgent")
    assert [(a.type, a.value) for a in decision.actions] == [("assign_group", "Level 2"), ("note", None)]
    assert run(CREATED, priority="urgent", group="Level 2").actions == []


@pytest.mark.parametrize("priority", ["normal", "low"])
def test_p3_never_elevated(priority):
    assert run("2026-12-30T00:00:00Z", priority=priority).actions == []


@pytest.mark.parametrize(
    ("priority", "due"),
    [
        ("urgent", "2026-11-21T15:00:00Z"),
        ("high", "2026-11-23T11:00:00Z"),
        ("normal", "2026-11-26T11:00:00Z"),
    ],
)
def test_next_update_from_latest_agent_comment(priority, due):
    events = [
        comment("2026-11-21T10:30:00Z"),
        comment("2026-11-21T10:45:00Z", author="customer"),
        comment("2026-11-21T11:00:00Z"),
    ]
    decision = run("2026-11-21T12:00:00Z", priority=priority, group="Level 2", events=events)
    assert target(decision, "next_update") == (due, "running")
    assert target(decision, "first_response")[1] == "met"


def test_next_update_breached_and_stops():
    events = [comment("2026-11-21T10:30:00Z")]
    assert target(
        run("2026-11-21T15:00:00Z", priority="urgent", group="Level 2", events=events), "next_update"
    ) == ("2026-11-21T14:30:00Z", "breached")
    assert (
        target(
            run(
                "2026-11-21T15:00:00Z",
                priority="urgent",
                group="Level 2",
                events=events,
                tags=["eta_provided"],
            ),
            "next_update",
        )
        is None
    )
    assert (
        target(
            run("2026-11-21T15:00:00Z", priority="urgent", group="Level 2", events=events, status="solved"),
            "next_update",
        )
        is None
    )
    # No agent comment yet: first_response covers it.
    assert target(run("2026-11-21T10:10:00Z", priority="urgent", group="Level 2"), "next_update") is None


def test_private_notes_do_not_count():
    events = [comment("2026-11-21T10:30:00Z"), comment("2026-11-21T13:00:00Z", public=False)]
    decision = run("2026-11-21T14:00:00Z", priority="urgent", group="Level 2", events=events)
    assert target(decision, "next_update") == ("2026-11-21T14:30:00Z", "running")
