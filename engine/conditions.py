"""Compiled rule conditions: fast tests on a ticket that also say why they matched."""

from __future__ import annotations

import re
from typing import Any

from engine.rules import Condition
from engine.ticket import Choice, Ticket

# A phrase matches where a word starts: `corrupt` matches "corrupted" and
# `down` matches "down" or "downtime", but `test` does not match "latest".
_WORD_START = r"(?<!\w)"


def _phrases(phrases: list[str]) -> re.Pattern[str] | None:
    if not phrases:
        return None
    alternatives = sorted({p.strip() for p in phrases}, key=len, reverse=True)
    body = "|".join(r"\s+".join(map(re.escape, p.split())) for p in alternatives)
    return re.compile(f"{_WORD_START}(?:{body})", re.IGNORECASE)


def _norm(value: Any) -> Any:
    return value.casefold() if isinstance(value, str) else value


def _field_matches(value: Any, accepted: frozenset[Any]) -> bool:
    """A field value against a condition's accepted values.

    A multi-select field arrives as a list: it matches when any selected
    option is accepted (an empty selection matches only `null`). Values that
    cannot be hashed (a nested object) match nothing rather than failing.
    """
    if isinstance(value, list | tuple | set | frozenset):
        if not value:
            return None in accepted
        return any(_field_matches(item, accepted) for item in value)
    if isinstance(value, Choice):  # a dropdown option: its stored value or its title
        return _norm(value) in accepted or _norm(value.label) in accepted
    try:
        return _norm(value) in accepted
    except TypeError:
        return False


def _search(pattern: re.Pattern[str], ticket: Ticket) -> str | None:
    """'subject matches 'how do I'' for the first field the pattern is found in."""
    for where, text in (("subject", ticket.subject), ("description", ticket.description)):
        if text:
            found = pattern.search(text)
            if found:
                return f"{where} matches '{found.group(0)}'"
    return None


class Matcher:
    """A Condition compiled once; `test` returns None or the reasons it matched."""

    __slots__ = (
        "priorities",
        "statuses",
        "tags_all",
        "tags_any",
        "tags_none",
        "fields",
        "text_any",
        "text_none",
        "text_regex",
        "always",
    )

    def __init__(self, condition: Condition) -> None:
        self.priorities = (
            None
            if condition.priority is None
            else frozenset(None if p == "none" else p for p in condition.priority)
        )
        # Engine statuses and custom status labels, casefolded (labels match case-insensitively).
        self.statuses = None if condition.status is None else frozenset(_norm(s) for s in condition.status)
        self.tags_all = frozenset(condition.tags_all)
        self.tags_any = frozenset(condition.tags_any)
        self.tags_none = frozenset(condition.tags_none)
        self.fields = tuple(
            (name, frozenset(_norm(v) for v in values)) for name, values in condition.fields.items()
        )
        self.text_any = _phrases(condition.text_any)
        self.text_none = _phrases(condition.text_none)
        self.text_regex = re.compile(condition.text_regex, re.IGNORECASE) if condition.text_regex else None
        self.always = not (
            self.priorities is not None
            or self.statuses is not None
            or self.tags_all
            or self.tags_any
            or self.tags_none
            or self.fields
            or self.text_any
            or self.text_none
            or self.text_regex
        )

    def test(self, ticket: Ticket, priority: str | None, status: str,
             custom_status: str | None = None) -> list[str] | None:
        """None if the condition fails, else the reasons worth telling (may be empty).

        `custom_status`: the label of the custom status the ticket is in, which a
        `status:` condition may name instead of the engine status."""
        if self.always:
            return []
        reasons: list[str] = []
        if self.priorities is not None and priority not in self.priorities:
            return None
        if self.statuses is not None and status not in self.statuses and (
                not custom_status or _norm(custom_status) not in self.statuses):
            return None
        tags = ticket.tags
        if self.tags_all and not self.tags_all <= tags:
            return None
        if self.tags_any and self.tags_any.isdisjoint(tags):
            return None
        if self.tags_none and not self.tags_none.isdisjoint(tags):
            return None
        for name, accepted in self.fields:
            if not _field_matches(ticket.fields.get(name), accepted):
                return None
        if self.text_none is not None and _search(self.text_none, ticket):
            return None
        if self.text_any is not None:
            reason = _search(self.text_any, ticket)
            if reason is None:
                return None
            reasons.append(reason)
        if self.text_regex is not None:
            reason = _search(self.text_regex, ticket)
            if reason is None:
                return None
            reasons.append(reason)
        return reasons
