"""Human explanations for internal notes: instants in the calendar's zone, budgets in words."""

from __future__ import annotations

from datetime import datetime

from engine.calendar import Calendar
from engine.decision import TargetResult
from engine.ruleset import Target

TARGET_LABELS = {
    "first_response": "First response",
    "resolution": "Resolution",
    "next_update": "Next update",
    "next_reply": "Next reply",
}


def when(epoch: int, target: Target) -> str:
    """'Mon 23 Nov 10:30 CET' in the target calendar's zone."""
    local = datetime.fromtimestamp(epoch, target.calendar.zone)
    return f"{local:%a} {local.day} {local:%b %H:%M} {local.tzname()}"


def amount(seconds: int, unit: str = "") -> str:
    hours, rest = divmod(seconds, 3600)
    if rest == 0:
        return f"{hours} {unit}hour{'s' if hours != 1 else ''}"
    minutes = seconds / 60
    return f"{minutes:g} {unit}minute{'s' if minutes != 1 else ''}"


def budget_words(seconds: int, calendar: Calendar) -> str:
    """'3 business hours', or '1 hour, 24/7' on a calendar that never closes."""
    if calendar.trivial:
        return f"{amount(seconds)}, 24/7"
    return amount(seconds, "business ")


def days_words(days: int) -> str:
    """'2 business days', '1 business day'."""
    return f"{days} business day{'s' if days != 1 else ''}"


def budget(target: Target) -> str:
    if target.days is not None:
        return days_words(target.days)
    return budget_words(target.budget, target.calendar)


def target_sentence(result: TargetResult, target: Target, policy_name: str) -> str:
    """'First response due Mon 23 Nov 10:30 CET, 3 business hours, Professional plan.'"""
    label = TARGET_LABELS[target.name]
    level = f" ({target.level})" if target.level else ""
    if result.state == "paused":
        head = f"{label} paused"
    elif result.state == "met":
        head = f"{label} met"
    elif result.state == "breached":
        head = f"{label} breached (due {when(result.due, target)})"
    else:
        head = f"{label} due {when(result.due, target)}"
    return f"{head}, {budget(target)}{level}, {policy_name}."


def title(priority: str | None) -> str:
    return "no priority" if priority is None else priority.capitalize()
