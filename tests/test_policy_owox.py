"""owox: fixed UTC+02:00 support hours, plan targets, priority rules, Russian statuses."""

import pytest

from tests.engine_helpers import decide, status, target

MON = "2026-11-23T06:00:00Z"  # Mon 08:00 UTC+2


@pytest.mark.parametrize(
    ("plan", "due"),
    [
        ("enterprise", "2026-11-23T09:00:00Z"),
        ("reports_attribution", "2026-11-23T11:00:00Z"),
        ("marketing_data", "2026-11-23T15:00:00Z"),
        ("business", "2026-11-23T11:00:00Z"),
        ("basic", "2026-11-23T15:00:00Z"),
        ("cost_data", "2026-11-24T11:00:00Z"),
    ],
)
def test_plans(plan, due):
    decision = decide("owox", MON, priority="normal", created_at=MON, fields={"plan": plan})
    assert decision.policy == plan
    assert target(decision, "first_response") == (due, "running")


def test_fixed_offset_ignores_dst():
    # Fri 27 Mar 15:00 +02:00, 12 h: 2 h Friday, 8 h Monday, 2 h Tuesday; no DST shift.
    decision = decide(
        "owox",
        "2026-03-27T13:00:00Z",
        priority="normal",
        created_at="2026-03-27T13:00:00Z",
        fields={"plan": "cost_data"},
    )
    assert target(decision, "first_response") == ("2026-03-31T09:00:00Z", "running")


def test_no_holiday_list():
    # 1 January is a working day for this calendar (the seed names no holidays).
    decision = decide(
        "owox",
        "2026-01-01T07:00:00Z",
        priority="normal",
        created_at="2026-01-01T07:00:00Z",
        fields={"plan": "enterprise"},
    )
    assert target(decision, "first_response") == ("2026-01-01T09:00:00Z", "running")


@pytest.mark.parametrize(
    ("priority", "subject", "expected", "rule"),
    [
        (None, "Вопрос", "normal", "default-priority"),
        ("urgent", "Потеря данных в отчёте", "urgent", None),
        ("urgent", "Missing data after import", "urgent", None),
        ("urgent", "Possible data loss, pipeline down", "urgent", None),
        ("urgent", "Dashboard down", "high", "outage-without-data-loss-is-high"),
        ("urgent", "Сбой загрузки", "high", "outage-without-data-loss-is-high"),
        ("urgent", "API unavailable", "high", "outage-without-data-loss-is-high"),
        ("urgent", "Question about billing", "normal", "urgent-without-outage-is-normal"),
        ("high", "Billing question", "high", None),
    ],
)
def test_priority_rules(priority, subject, expected, rule):
    decision = decide(
        "owox", MON, priority=priority, subject=subject, created_at=MON, fields={"plan": "enterprise"}
    )
    assert (decision.priority, decision.priority_rule) == (expected, rule)
    assert bool(decision.actions) == (rule is not None)


@pytest.mark.parametrize(
    ("name", "engine_status"),
    [
        ("Новый", "new"),
        ("Открыт", "open"),
        ("Ждет вашего ответа", "pending"),
        ("На удержании", "on_hold"),
        ("Закрыт", "closed"),
    ],
)
def test_russian_statuses(name, engine_status):
    decision = decide(
        "owox",
        "2026-11-23T10:00:00Z",
        priority="normal",
        created_at=MON,
        status=name,
        fields={"plan": "enterprise"},
        events=[status("2026-11-23T07:00:00Z", name)],
    )
    state = target(decision, "first_response")[1]
    assert state == ("met" if engine_status == "closed" else "breached")
