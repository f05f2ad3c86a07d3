"""Agents win: a rule that sets a field an agent set by hand stands back until its own inputs change.

A reclassification applies once per ticket: when the ticket is first
decided, or when the inputs its conditions read (subject, description, the
tags and fields they test) have changed. After an agent set the priority by
hand it never sets it again on the same inputs; the same holds for the
group an escalation assigns. The first time a rule stands back the bot says
so in an internal note, once.

Who changed a field is read from the ticket's history as the bot keeps it:
the stored snapshot holds the ticket as the bot's own last write left it,
so a value that differs now was set by someone else (an agent, or a
helpdesk automation acting for one). Pure: no I/O, no clock.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from engine.ticket import Ticket

# The fields an agent can take over from the rules, and the rules that set them.
PRIORITY, GROUP = "priority", "group"
FIELDS = (PRIORITY, GROUP)
STOOD_BACK = "stood back"  # every stand-back note says so, and only those notes


@dataclass(frozen=True, slots=True)
class Hold:
    """An agent's hand on `field`: they set it to `value` at `at` (epoch seconds), when the
    rules' inputs had digest `inputs`. `announced` once the bot's note about it was written."""

    field: str
    value: str | None
    inputs: str
    at: int
    announced: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Hold:
        return cls(str(data["field"]), data.get("value"), str(data["inputs"]), int(data["at"]),
                   bool(data.get("announced")))


def _matchers(rules: Any, field: str) -> list[Any]:
    if field == PRIORITY:
        return [rule.when for rule in rules.reclassify]
    return [rule.when for rule in rules.escalations if rule.assign_group]


def inputs_digest(ticket: Ticket, rules: Any, field: str) -> str:
    """A digest of what the rules setting `field` read: subject, description, tested tags and fields."""
    names: set[str] = set()
    tags: set[str] = set()
    for matcher in _matchers(rules, field):
        names.update(name for name, _ in matcher.fields)
        tags.update(matcher.tags_all | matcher.tags_any | matcher.tags_none)
    data = {
        "subject": ticket.subject,
        "description": ticket.description,
        "tags": sorted(tags & set(ticket.tags)),
        "fields": {name: ticket.fields.get(name) for name in sorted(names)},
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()[:16]


def observe(previous: Mapping[str, Any] | None, ticket: Ticket, rules: Any, at: int) -> tuple[Hold, ...]:
    """The holds on `ticket` now, from the stored snapshot `previous` (the ticket as the bot left it).

    A field whose value differs from the snapshot's was set by someone else:
    a new hold. A hold whose rule inputs changed since is released (the rule
    applies again on the new inputs). No snapshot (a new ticket): no hold.
    """
    if previous is None:
        return ()
    kept = {h.field: h for h in (Hold.from_dict(d) for d in previous.get("holds") or ())}
    out = []
    for field in FIELDS:
        current = getattr(ticket, field)
        hold = kept.get(field)
        # The digest only where a hold is made or kept (most tickets have none).
        if field in previous and previous[field] != current:
            hold = Hold(field, current, inputs_digest(ticket, rules, field), at)
        elif hold is not None and (hold.value != current
                                   or hold.inputs != inputs_digest(ticket, rules, field)):
            hold = None  # the inputs changed (or the value moved on): the rule may apply again
        if hold is not None:
            out.append(hold)
    return tuple(out)


def held(holds: Iterable[Hold], field: str) -> Hold | None:
    for hold in holds:
        if hold.field == field:
            return hold
    return None


def stand_back_note(hold: Hold, rule_id: str, wanted: str | None) -> str | None:
    """The internal note saying a rule stood back, the first time only."""
    if hold.announced:
        return None
    what = "priority" if hold.field == PRIORITY else "group"
    return (f"Rule `{rule_id}` {STOOD_BACK}: an agent set the {what} to {hold.value or 'none'} by hand, "
            f"so it stays (the rule would set {wanted}). The rule applies again only if the ticket's "
            "subject, description or the fields it tests change.")


def is_stand_back(body: str | None) -> bool:
    return bool(body) and f"` {STOOD_BACK}: " in body  # type: ignore[operator]


def announce(holds: Sequence[Hold], notes: Iterable[str | None]) -> tuple[Hold, ...]:
    """The holds after a write that posted `notes`: a hold whose stand-back note went out is announced."""
    said = " ".join(n for n in notes if is_stand_back(n))
    return tuple(replace(h, announced=True) if f"set the {h.field} to" in said else h for h in holds)
