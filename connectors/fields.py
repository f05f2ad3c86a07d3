"""Custom field values by the field's type, as the account's field metadata declares it.

Both vendors describe their fields (Zendesk GET /api/v2/ticket_fields, Freshdesk
GET /api/v2/ticket_fields); each connector turns its vendor's description into a
FieldType, and this module reads values for the engine, writes the engine's
values in the field's own format and tells when a write would change nothing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from engine.ticket import Choice

DROPDOWN = "dropdown"
MULTISELECT = "multiselect"
CHECKBOX = "checkbox"
DATE = "date"
INTEGER = "integer"
DECIMAL = "decimal"
TEXT = "text"
KINDS = (DROPDOWN, MULTISELECT, CHECKBOX, DATE, INTEGER, DECIMAL, TEXT)


@dataclass(frozen=True, slots=True)
class FieldType:
    """One custom field: its kind and, for (multi-)select fields, stored value -> title."""

    kind: str = TEXT
    options: Mapping[str, str] = field(default_factory=dict)

    def read(self, raw: Any) -> Any:
        """The engine's value of a stored value (dropdowns as Choice, numbers as numbers)."""
        if raw is None or raw == "":
            return None if self.kind != MULTISELECT else []
        if self.kind == DROPDOWN:
            return self._choice(raw)
        if self.kind == MULTISELECT:
            items = raw if isinstance(raw, list) else [raw]
            return [self._choice(item) for item in items]
        if self.kind == CHECKBOX:
            return _bool(raw)
        if self.kind == INTEGER:
            return _number(raw, integer=True)
        if self.kind == DECIMAL:
            return _number(raw, integer=False)
        if self.kind == DATE:
            return _day(raw) or raw
        return raw

    def write(self, value: Any) -> Any:
        """`value` (as the engine or a rule gives it) in the field's own format."""
        if value is None:
            return None
        if self.kind == DROPDOWN:
            return self._stored(value)
        if self.kind == MULTISELECT:
            items = value if isinstance(value, list | tuple) else [value]
            return [self._stored(item) for item in items]
        if self.kind == CHECKBOX:
            return _bool(value)
        if self.kind == INTEGER:
            return _number(value, integer=True)
        if self.kind == DECIMAL:
            number = _number(value, integer=False)
            return str(number) if isinstance(number, Decimal) else number
        if self.kind == DATE:
            return _day(value) or value
        return value

    def same(self, current: Any, written: Any) -> bool:
        """True when writing `written` (already in the field's format) would change nothing."""
        now = self.write(current) if current not in (None, "", []) else None
        if self.kind == MULTISELECT:
            return sorted(map(str, now or [])) == sorted(map(str, written or []))
        if self.kind == DECIMAL and now is not None and written is not None:
            return _number(now, integer=False) == _number(written, integer=False)
        if self.kind == TEXT and isinstance(now, str) and isinstance(written, str):
            # A due instant written to a text field and read back by another client
            # in another ISO spelling ("+00:00" for "Z") is the same instant.
            moment = _instant(written)
            return now == written or (moment is not None and _instant(now) == moment)
        return now == written

    def _choice(self, raw: Any) -> Any:
        text = str(raw)
        return Choice(text, self.options.get(text, text))

    def _stored(self, value: Any) -> Any:
        """A dropdown option's stored value from its stored value or title (case-insensitive)."""
        text = str(value)
        if text in self.options:
            return text
        folded = text.casefold()
        for stored, title in self.options.items():
            if folded in (stored.casefold(), title.casefold()):
                return stored
        return text


def _bool(value: Any) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "1", "yes"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "0", "no", ""):
        return False
    return bool(value)


def _number(value: Any, *, integer: bool) -> Any:
    if isinstance(value, bool):
        return value
    try:
        number = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return value  # kept as read: a condition on it will not match a number
    if not number.is_finite():
        return value
    if integer:
        return int(number) if number == number.to_integral_value() else value
    as_float = float(number)
    return as_float if math.isfinite(as_float) else number


def _day(value: Any) -> str | None:
    """"2026-11-23" from a date, a datetime or an ISO date/instant string."""
    if isinstance(value, datetime):
        return value.date().isoformat()
    if isinstance(value, date):
        return value.isoformat()
    text = str(value).strip()
    try:
        return date.fromisoformat(text[:10]).isoformat()
    except ValueError:
        return None


def _instant(value: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment if moment.tzinfo is not None else None
