"""Rules compiled for evaluation: calendars built, conditions compiled, names resolved."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.calendar import Calendar
from engine.conditions import Matcher
from engine.rules import HelpdeskMapping

DEFAULT_PAUSES = {
    "first_response": frozenset(),
    "next_update": frozenset(),
    # policies.md: the resolution clock stops while waiting on the customer
    # (pending) or a third party (on_hold).
    "resolution": frozenset({"pending", "on_hold"}),
}


@dataclass(slots=True, frozen=True)
class Target:
    name: str
    budget: int  # seconds of business time
    calendar: Calendar
    pause_on: frozenset[str]
    warn_after: int | None = None
    until_tags: frozenset[str] = frozenset()
    level: str | None = None  # the level name the target was written under, for notes


@dataclass(slots=True, frozen=True)
class PolicyRule:
    id: str
    name: str
    when: Matcher
    # target name -> priority (None = no priority) -> Target
    targets: dict[str, dict[str | None, Target]]


@dataclass(slots=True, frozen=True)
class ReclassifyRule:
    id: str
    when: Matcher
    set: str
    explain: str | None


@dataclass(slots=True, frozen=True)
class EscalationRule:
    id: str
    when: Matcher
    kind: str  # immediate | breach | warning | before_breach | after_created
    target: str | None
    within: int | None
    calendar: Calendar | None
    unless_tags: frozenset[str]
    add_tags: tuple[str, ...]
    assign_group: str | None
    set_priority: str | None
    note: str | None


@dataclass(slots=True, frozen=True)
class AutoCloseRule:
    id: str
    when: Matcher
    after: int
    calendar: Calendar
    set_status: str
    reply: str
    add_tags: tuple[str, ...]
    remind_before: int | None = None
    reminder: str | None = None


@dataclass(slots=True)
class RuleSet:
    """Everything the engine needs from the admins' rule files."""

    version: str
    files: list[str]
    calendars: dict[str, Calendar] = field(default_factory=dict)
    status_aliases: dict[str, str] = field(default_factory=dict)
    reclassify: list[ReclassifyRule] = field(default_factory=list)
    policies: list[PolicyRule] = field(default_factory=list)
    escalations: list[EscalationRule] = field(default_factory=list)
    auto_close: list[AutoCloseRule] = field(default_factory=list)
    sla_fields: dict[str, dict[str, str]] = field(default_factory=dict)
    helpdesk: dict[str, HelpdeskMapping] = field(default_factory=dict)
