"""Rules compiled for evaluation: calendars built, conditions compiled, names resolved."""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.calendar import Calendar
from engine.conditions import Matcher
from engine.rules import HelpdeskMapping
from engine.ticket import STATUSES

DEFAULT_PAUSES = {
    "first_response": frozenset(),
    "next_update": frozenset(),
    "next_reply": frozenset(),
    # policies.md: the resolution clock stops while waiting on the customer
    # (pending) or a third party (on_hold).
    "resolution": frozenset({"pending", "on_hold"}),
}


@dataclass(slots=True, frozen=True)
class CalendarByField:
    """A calendar chosen by the value of a ticket's custom field."""

    field: str
    by_value: dict  # normalised field value -> Calendar
    default: Calendar | None

    def pick(self, fields: dict) -> Calendar | None:
        value = fields.get(self.field)
        for item in value if isinstance(value, list | tuple) else (value,):
            key = item.casefold() if isinstance(item, str) else item
            if isinstance(key, bool):
                key = str(key).lower()
            elif isinstance(key, int | float):
                key = str(key)
            try:
                found = self.by_value.get(key)
            except TypeError:  # an unhashable value (a nested object) matches nothing
                found = None
            if found is not None:
                return found
        return self.default


@dataclass(slots=True, frozen=True)
class Target:
    name: str
    budget: int  # seconds of business time (0 when `days` is set)
    calendar: Calendar | None  # None only with `by_field` and no default
    pause_on: frozenset[str]
    warn_after: int | None = None
    until_tags: frozenset[str] = frozenset()
    level: str | None = None  # the level name the target was written under, for notes
    days: int | None = None  # a budget in business days instead of seconds
    start_from: str | None = None  # next_update: "created" starts the timer at creation
    by_field: CalendarByField | None = None
    variants: dict | None = None  # calendar name -> this target on that calendar

    def for_ticket(self, fields: dict) -> Target | None:
        """This target on the ticket's calendar (None: its field picks no calendar)."""
        if self.by_field is None:
            return self
        calendar = self.by_field.pick(fields)
        return None if calendar is None else self.variants[calendar.name]


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
    days: int | None = None  # after_created in business days instead of `within` seconds


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
    after_days: int | None = None  # `after` in business days instead of seconds


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

    def status_labels(self) -> frozenset[str]:
        """The custom status labels (casefolded) that `status:` conditions and `pause_on` name:
        every name there that is not an engine status."""
        names: set[str] = set()
        for rule in (*self.reclassify, *self.policies, *self.escalations, *self.auto_close):
            names |= rule.when.statuses or frozenset()
        for policy in self.policies:
            for by_priority in policy.targets.values():
                for target in by_priority.values():
                    names |= target.pause_on
        return frozenset(names) - frozenset(STATUSES)
