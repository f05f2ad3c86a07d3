"""What the engine decided for one ticket: targets, actions and when to look again."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from typing import Any

from engine.actions import CHANGE_TYPES, ActionType, action_type

TARGET_NAMES = ("first_response", "resolution", "next_update", "next_reply")
# The vocabulary lives in engine/actions.py; these names stay for existing callers.
ACTION_TYPES = tuple(t.value for t in ActionType)
CHANGE_ACTIONS = CHANGE_TYPES


def iso_utc(epoch: int | None) -> str | None:
    """`2026-11-23T09:30:00Z` for UTC epoch seconds, None for None."""
    if epoch is None:
        return None
    return _iso_utc(epoch)


@lru_cache(maxsize=4096)  # a sweep's decisions share their instants (now, the same dues)
def _iso_utc(epoch: int) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(slots=True, frozen=True)
class Action:
    """One thing the bot would do now, and the rule that asked for it.

    `value` carries set_priority/set_status/assign_group; `values` carries
    add_tags (a tuple of tags) and set_fields (a dict); `body` carries
    note and reply.
    """

    type: ActionType
    rule: str
    value: str | None = None
    values: Any = None
    body: str | None = None

    def __post_init__(self) -> None:
        # A string outside the vocabulary is refused here, not dropped later.
        object.__setattr__(self, "type", action_type(self.type))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"type": self.type.value}
        if self.type in ("set_priority", "set_status", "assign_group"):
            out["value"] = self.value
        elif self.type == "add_tags":
            out["values"] = list(self.values)
        elif self.type == "set_fields":
            out["values"] = dict(self.values)
        else:
            out["body"] = self.body
        out["rule"] = self.rule
        return out


@dataclass(slots=True)
class TargetResult:
    """One SLA target's clock. `due` is UTC epoch seconds, None while paused."""

    state: str  # running | paused | met | breached
    due: int | None
    budget: int  # seconds of business time the target allows
    calendar: str
    warn_at: int | None = None
    achieved_at: int | None = None
    warning: bool = False

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"due": iso_utc(self.due), "state": self.state}
        out["business_seconds"] = self.budget
        out["calendar"] = self.calendar
        if self.warn_at is not None:
            out["warn_at"] = iso_utc(self.warn_at)
            out["warning"] = self.warning
        if self.achieved_at is not None:
            out["achieved_at"] = iso_utc(self.achieved_at)
        return out


@dataclass(slots=True)
class Decision:
    """The full outcome of evaluating a ticket at an instant."""

    ticket: str
    priority: str | None
    priority_rule: str | None
    policy: str | None
    targets: dict[str, TargetResult | None]
    actions: list[Action] = field(default_factory=list)
    # The earliest instant after `now` at which evaluating again would act: an
    # escalation (breach, warning, before_breach, after_created), an auto-close
    # or its reminder, or an SLA state field the rules write turning breached.
    # None when no rule can act on time alone.
    next_check: int | None = None

    def next_state_change(self, now: int) -> int | None:
        """The earliest instant after `now` at which a running target turns breached or
        passes its warning, whether or not a rule acts then (for replays that count breaches)."""
        moments = []
        for result in self.targets.values():
            if result is None or result.state != "running":
                continue
            if result.due >= now:
                moments.append(result.due + 1)
            if result.warn_at is not None and result.warn_at > now:
                moments.append(result.warn_at)
        return min(moments) if moments else None

    def to_dict(self) -> dict[str, Any]:
        targets = {}
        for name in TARGET_NAMES:
            result = self.targets.get(name)
            targets[name] = None if result is None else result.to_dict()
        return {
            "ticket": self.ticket,
            "priority": self.priority,
            "priority_rule": self.priority_rule,
            "policy": self.policy,
            "targets": targets,
            "actions": [action.to_dict() for action in self.actions],
            "next_check": iso_utc(self.next_check),
        }
