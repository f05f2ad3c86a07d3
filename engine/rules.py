"""The rule-file format: pydantic models that validate what admins write in YAML."""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass
from datetime import date
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from engine.ticket import PRIORITIES, STATUSES

TARGET_NAMES = ("first_response", "resolution", "next_update", "next_reply")
Priority = Literal["low", "normal", "high", "urgent"]
Status = Literal["new", "open", "pending", "on_hold", "solved", "closed"]


def _status_or_label(value: Any) -> str:
    """An engine status, or the agent label of a helpdesk custom status ("Awaiting vendor"),
    matched case-insensitively; a near miss of an engine status is a typo, not a label."""
    if not isinstance(value, str) or not value.strip():
        raise ValueError("a status is an engine status (" + ", ".join(STATUSES)
                         + ") or a custom status's agent label")
    text = value.strip()
    if text in STATUSES:
        return text
    folded = text.casefold()
    if re.sub(r"[\s_-]+", "_", folded) in STATUSES:
        return text  # "On-hold", "Pending": a label that spells an engine status (Zendesk's defaults)
    close = difflib.get_close_matches(folded, STATUSES, n=1, cutoff=0.8)
    if close:
        raise ValueError(f"{text!r} is not an engine status; did you mean {close[0]!r}? (a custom status "
                         "is named by its agent label)")
    return text


_STATUS_OR_LABEL_SCHEMA: dict[str, Any] = {"anyOf": [
    {"enum": list(STATUSES)},
    {"type": "string", "minLength": 1, "description": "a custom status's agent label (any case)"},
]}
StatusOrLabel = Annotated[str, BeforeValidator(_status_or_label), WithJsonSchema(_STATUS_OR_LABEL_SCHEMA)]
TargetName = Literal["first_response", "resolution", "next_update", "next_reply"]
RuleId = Annotated[str, StringConstraints(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80)]

_DURATION = re.compile(r"^\s*(?:(\d+)\s*h)?\s*(?:(\d+)\s*m)?\s*(?:(\d+)\s*s)?\s*$")


def parse_duration(value: Any) -> int:
    """'2h', '90m', '1h30m', '45s' -> seconds."""
    if isinstance(value, str):
        match = _DURATION.match(value.lower())
        if match and any(match.groups()):
            hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
            total = hours * 3600 + minutes * 60 + seconds
            if total > 0:
                return total
    raise ValueError(
        f"expected a positive duration like '2h', '90m' or '1h30m', got {value!r}"
        " (hours are business hours of the target's calendar)"
    )


# The JSON Schema describes the YAML as admins write it (strings like '2h'),
# not the parsed values: editors validate the file, not the model.
DURATION_PATTERN = r"^\s*(?:\d+\s*[hH])?\s*(?:\d+\s*[mM])?\s*(?:\d+\s*[sS])?\s*$"
DURATION_SCHEMA = {
    "type": "string",
    "pattern": DURATION_PATTERN,
    "minLength": 2,
    "description": "business time: '2h', '90m', '1h30m', '45s'",
}
Duration = Annotated[int, BeforeValidator(parse_duration), WithJsonSchema(DURATION_SCHEMA)]

_BUSINESS_DAYS = re.compile(r"^\s*(\d+)\s*(?:bd|business\s+days?)\s*$")
_PLAIN_DAYS = re.compile(r"^\s*(\d+)\s*(?:d|days?)\s*$")


@dataclass(frozen=True, slots=True)
class BusinessDays:
    """'2 business days': the same local time on the 2nd following open day of the calendar."""

    days: int

    def __str__(self) -> str:
        return f"{self.days} business day{'s' if self.days != 1 else ''}"


def parse_span(value: Any) -> int | BusinessDays:
    """A duration ('2h', '90m') in seconds, or business days ('2 business days', '1 business day', '2bd')."""
    if isinstance(value, str):
        match = _BUSINESS_DAYS.match(value.lower())
        if match:
            days = int(match.group(1))
            if days > 0:
                return BusinessDays(days)
        if _PLAIN_DAYS.match(value.lower()):
            raise ValueError(
                f"{value!r} is ambiguous: write business days ('2 business days', '2bd')"
                " or business hours ('16h')"
            )
    try:
        return parse_duration(value)
    except ValueError:
        raise ValueError(
            f"expected a positive duration like '2h', '90m', '1h30m' or business days like"
            f" '2 business days', '1 business day', '2bd', got {value!r}"
        ) from None


SPAN_SCHEMA = {
    "anyOf": [
        DURATION_SCHEMA,
        {
            "type": "string",
            "pattern": r"^\s*\d+\s*(?:[bB][dD]|[bB]usiness\s+[dD]ays?)\s*$",
            "description": "business days: '2 business days', '1 business day', '2bd'",
        },
    ]
}
Span = Annotated[int | BusinessDays, BeforeValidator(parse_span), WithJsonSchema(SPAN_SCHEMA)]


def _one_or_many(value: Any) -> Any:
    return [value] if isinstance(value, str) or value is None else value


def _one_or_many_schema(item: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [item, {"type": "array", "items": item}]}


class Strict(BaseModel):
    """Every rule-file mapping: unknown keys are errors, values are not coerced."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            allowed = {field.alias or name for name, field in cls.model_fields.items()}
            for key in data:
                if key not in allowed:
                    raise ValueError(f"unknown key {key!r}; expected one of: {', '.join(sorted(allowed))}")
        return data


# -- calendars -----------------------------------------------------------------

_DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME = re.compile(r"^(\d{2}):(\d{2})$")


def parse_days(spec: str) -> list[int]:
    """'mon-fri', 'sat,sun', 'daily', 'fri-mon' -> weekday numbers (Monday 0)."""
    spec = spec.strip().lower()
    if spec in ("daily", "every day", "mon-sun"):
        return list(range(7))
    days: list[int] = []
    for part in spec.split(","):
        part = part.strip()
        if "-" in part:
            first, _, last = part.partition("-")
            if first.strip() not in _DAYS or last.strip() not in _DAYS:
                raise ValueError(f"unknown day range {part!r}; use mon, tue, ... sun, e.g. 'mon-fri'")
            a, b = _DAYS.index(first.strip()), _DAYS.index(last.strip())
            days.extend((a + i) % 7 for i in range((b - a) % 7 + 1))
        elif part in _DAYS:
            days.append(_DAYS.index(part))
        else:
            raise ValueError(f"unknown day {part!r}; use mon, tue, wed, thu, fri, sat, sun or daily")
    return days


def parse_time(text: str, allow_24: bool) -> int:
    match = _TIME.match(text.strip())
    if not match:
        raise ValueError(f"expected a time like '09:00', got {text!r}")
    hours, minutes = int(match.group(1)), int(match.group(2))
    if minutes > 59 or hours > 24 or (hours == 24 and (minutes or not allow_24)):
        raise ValueError(f"{text!r} is not a time of day")
    return hours * 3600 + minutes * 60


def parse_range(text: Any) -> tuple[int, int]:
    """'09:00-17:00' -> (32400, 61200); '22:00-06:00' ends the next day (end > 86400)."""
    if not isinstance(text, str) or "-" not in text:
        raise ValueError(f"expected a time range like '09:00-17:00', got {text!r}")
    first, _, last = text.partition("-")
    start, end = parse_time(first, allow_24=False), parse_time(last, allow_24=True)
    if end == start:
        raise ValueError(f"empty time range {text!r}; for a whole day write '00:00-24:00'")
    if end < start:
        end += 86_400  # a night shift: closes the next day
    return start, end


RANGE_SCHEMA = {
    "type": "string",
    "pattern": r"^\s*\d{2}:\d{2}\s*-\s*\d{2}:\d{2}\s*$",
    "description": "local times 'HH:MM-HH:MM'; an end before the start runs past midnight",
}
TimeRange = Annotated[tuple[int, int], BeforeValidator(parse_range), WithJsonSchema(RANGE_SCHEMA)]


class Closure(Strict):
    """A partial-day closure: closed during `hours` (local) on `date`."""

    date: date
    hours: list[TimeRange] = Field(min_length=1)

    @field_validator("hours")
    @classmethod
    def _same_day(cls, hours: list[tuple[int, int]]) -> list[tuple[int, int]]:
        for start, end in hours:
            if end > 86_400:
                raise ValueError(
                    f"closure {_fmt(start, end)!r} crosses midnight; close each date separately"
                    " (e.g. '22:00-24:00' and the next date '00:00-02:00')"
                )
        return hours


class Opening(Strict):
    """Open during `hours` (local) on `date`, instead of the week's hours of that date."""

    date: date
    hours: list[TimeRange] = Field(min_length=1)


_MONTH_DAY = re.compile(r"^(\d{2})-(\d{2})$")


def _month_day(text: str) -> tuple[int, int]:
    match = _MONTH_DAY.match(text.strip())
    if match:
        month, day = int(match.group(1)), int(match.group(2))
        try:
            date(2000, month, day)  # a leap year: 02-29 is a valid yearly date
            return month, day
        except ValueError:
            pass
    raise ValueError(f"expected a month-day like '12-24', got {text!r}")


def parse_yearly(value: Any) -> tuple[tuple[int, int], tuple[int, int]]:
    """'12-24' -> ((12, 24), (12, 24)); '12-24..01-01' -> a closure every year across the year end."""
    if not isinstance(value, str):
        raise ValueError(f"expected a month-day like '12-24' or a range like '12-24..01-01', got {value!r}")
    first, sep, last = value.partition("..")
    start = _month_day(first)
    return start, (_month_day(last) if sep else start)


def parse_date_range(value: Any) -> tuple[date, date]:
    """'2026-12-24..2027-01-01' (inclusive local dates), or one date."""
    if isinstance(value, date):
        return value, value
    if not isinstance(value, str):
        raise ValueError(f"expected dates like '2026-12-24..2027-01-01', got {value!r}")
    first, sep, last = value.partition("..")
    try:
        start = date.fromisoformat(first.strip())
        end = date.fromisoformat(last.strip()) if sep else start
    except ValueError:
        raise ValueError(f"expected dates like '2026-12-24..2027-01-01', got {value!r}") from None
    if end < start:
        raise ValueError(f"range {value!r} ends before it starts")
    if (end - start).days > 366:
        raise ValueError(f"range {value!r} is longer than a year")
    return start, end


YearlyDates = Annotated[
    tuple[tuple[int, int], tuple[int, int]],
    BeforeValidator(parse_yearly),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\d{2}-\d{2}(?:\.\.\d{2}-\d{2})?\s*$"}),
]
DateRange = Annotated[
    tuple[date, date],
    BeforeValidator(parse_date_range),
    WithJsonSchema({"type": "string", "pattern": r"^\s*\d{4}-\d{2}-\d{2}(?:\.\.\d{4}-\d{2}-\d{2})?\s*$"}),
]


class Holidays(Strict):
    country: str | None = Field(
        None, description="ISO country code for the `holidays` package, e.g. US, DE, SK"
    )
    subdivision: str | None = Field(None, description="state/region code, e.g. BY")
    dates: list[date] = Field(default_factory=list, description="extra whole days closed")
    yearly: list[YearlyDates] = Field(
        default_factory=list,
        description="month-days closed every year: '12-24', or a range '12-24..01-01' (inclusive)",
    )
    ranges: list[DateRange] = Field(
        default_factory=list, description="inclusive local date ranges closed: '2026-12-24..2027-01-01'"
    )
    closures: list[Closure] = Field(default_factory=list, description="partial-day closures")
    openings: list[Opening] = Field(
        default_factory=list,
        description="hours replacing the week's for a date (open even on a holiday): {date, hours}",
    )

    @field_validator("openings")
    @classmethod
    def _one_opening_per_date(cls, openings: list[Opening]) -> list[Opening]:
        seen: set[date] = set()
        for opening in openings:
            if opening.date in seen:
                raise ValueError(f"two openings for {opening.date}; list all its hours in one")
            seen.add(opening.date)
        return openings

    @model_validator(mode="after")
    def _subdivision_needs_country(self) -> Holidays:
        if self.subdivision and not self.country:
            raise ValueError("subdivision needs a country")
        return self


def parse_hours(value: Any) -> Any:
    """'24/7', or {days: [ranges]} with every range parsed; overlaps are errors."""
    if value == "24/7":
        return value
    if not isinstance(value, dict) or not value:
        raise ValueError("expected '24/7' or a mapping of days to open ranges, e.g. mon-fri: ['09:00-17:00']")
    hours: dict[str, list[tuple[int, int]]] = {}
    week: list[tuple[int, int, str]] = []
    for days, ranges in value.items():
        if not isinstance(days, str):
            raise ValueError(f"expected days like 'mon-fri', got {days!r}")
        if isinstance(ranges, str):
            ranges = [ranges]
        if not isinstance(ranges, list) or not ranges:
            raise ValueError(f"{days}: expected a list of ranges like ['09:00-17:00']")
        try:
            parsed = [parse_range(r) for r in ranges]
            weekdays = parse_days(days)
        except ValueError as err:
            raise ValueError(f"{days}: {err}") from None
        hours[days] = parsed
        for day in weekdays:
            for start, end in parsed:
                week.append((day * 86_400 + start, day * 86_400 + end, f"{days} {_fmt(start, end)}"))
    # A Sunday night shift wraps into Monday: compare it on the following week too.
    week += [(a + 7 * 86_400, b + 7 * 86_400, label) for a, b, label in week]
    week.sort()
    for (_, a_end, a_label), (b_start, _, b_label) in zip(week, week[1:], strict=False):
        if b_start < a_end:
            raise ValueError(f"open intervals overlap: {a_label!r} and {b_label!r}")
    return hours


class CalendarModel(Strict):
    timezone: str = Field(description="IANA zone (Europe/Berlin) or fixed offset (+02:00)")
    hours: Annotated[
        Literal["24/7"] | dict[str, list[tuple[int, int]]],
        BeforeValidator(parse_hours),
        WithJsonSchema(
            {
                "anyOf": [
                    {"const": "24/7"},
                    {
                        "type": "object",
                        "minProperties": 1,
                        "propertyNames": {"pattern": r"^[a-z ,-]+$"},
                        "additionalProperties": {
                            "anyOf": [RANGE_SCHEMA, {"type": "array", "items": RANGE_SCHEMA, "minItems": 1}]
                        },
                    },
                ]
            }
        ),
    ] = (
        Field(
            description="'24/7', or days ('mon-fri', 'sat', 'daily') -> open ranges"
            " ('09:00-12:00', '22:00-06:00')"
        )
    )
    holidays: Holidays | None = None


def _fmt(start: int, end: int) -> str:
    end %= 86_400 if end > 86_400 else 86_401
    return f"{start // 3600:02d}:{start % 3600 // 60:02d}-{end // 3600:02d}:{end % 3600 // 60:02d}"


# -- conditions ------------------------------------------------------------------

PriorityOrNone = Priority | Literal["none"] | None


class Condition(Strict):
    """All the given tests must hold. Text tests look at subject and description."""

    priority: Annotated[
        list[PriorityOrNone],
        BeforeValidator(_one_or_many),
        WithJsonSchema(_one_or_many_schema({"enum": ["low", "normal", "high", "urgent", "none", None]})),
    ] | None = Field(
        None, description="one priority or a list; 'none' (or null) matches a ticket with no priority"
    )
    status: Annotated[
        list[StatusOrLabel],
        BeforeValidator(_one_or_many),
        WithJsonSchema(_one_or_many_schema(_STATUS_OR_LABEL_SCHEMA)),
    ] | None = Field(None, description="engine statuses or custom status labels (any case)")
    tags_all: list[str] = Field(default_factory=list)
    tags_any: list[str] = Field(default_factory=list)
    tags_none: list[str] = Field(default_factory=list)
    fields: dict[
        str,
        Annotated[
            list[str | int | float | bool | None],
            BeforeValidator(_one_or_many),
            WithJsonSchema(_one_or_many_schema({"type": ["string", "number", "boolean", "null"]})),
        ],
    ] = (
        Field(default_factory=dict, description="custom field name -> value or list of accepted values")
    )
    text_any: list[Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=list, description="phrases, case-insensitive; one must occur"
    )
    text_none: list[Annotated[str, StringConstraints(min_length=1)]] = Field(default_factory=list)
    text_regex: str | None = Field(None, description="a Python regular expression, case-insensitive")

    @field_validator("text_regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as err:
                raise ValueError(f"invalid regular expression: {err}") from err
        return value


# -- rules -------------------------------------------------------------------------


class Reclassify(Strict):
    id: RuleId
    when: Condition
    set: Priority
    explain: str | None = Field(None, description="why, for the internal note")


class CalendarChoice(Strict):
    """The calendar named by a ticket field's value: `{field: region, map: {EMEA: emea}, default: amer}`."""

    field: Annotated[str, StringConstraints(min_length=1)] = Field(description="custom field name")
    map: dict[str, Annotated[str, StringConstraints(min_length=1)]] = Field(
        default_factory=dict,
        description="field value -> calendar name (values compare case-insensitively);"
        " without a map the value is the calendar's name",
    )
    default: str | None = Field(None, description="calendar for any other value, or no value")

    @field_validator("map", mode="before")
    @classmethod
    def _string_keys(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(k).lower() if isinstance(k, bool) else str(k): v for k, v in value.items()}
        return value


def _calendar_form(value: Any) -> str:
    return "by field" if isinstance(value, dict) else "name"


# A calendar's name, or a choice by a ticket field: tagged, so that an error in
# the mapping form reports that form's problem, not "expected a string".
CalendarRef = Annotated[
    Annotated[str, Tag("name")] | Annotated[CalendarChoice, Tag("by field")], Discriminator(_calendar_form)
]


class TargetSpec(Strict):
    within: Span
    calendar: CalendarRef | None = None
    warn_after: Duration | None = Field(None, description="business time after the start to warn at")
    pause_on: list[StatusOrLabel] | None = Field(
        None, description="statuses or custom status labels that stop the clock (resolution defaults to "
        "pending, on_hold)"
    )
    until_tags: list[str] = Field(default_factory=list, description="next_update stops once any is present")
    start_from: Literal["created", "agent_update"] | None = Field(
        None,
        alias="from",
        description="next_update: `created` starts the timer at creation while no agent has written yet",
    )


def _target_shorthand(value: Any) -> Any:
    return {"within": value} if isinstance(value, str) and value.strip().lower() != "none" else value


TargetValue = Annotated[TargetSpec, BeforeValidator(_target_shorthand)]
# Per priority (or level name): a target, or none/null for "no target".
TargetCell = Annotated[
    TargetSpec | None, BeforeValidator(lambda v: None if v == "none" else _target_shorthand(v))
]


class TargetMatrix(Strict):
    """One target for every priority, or one per priority/level."""

    all: TargetValue | None = None
    by_priority: dict[str, TargetCell] | None = None


def _target_form(value: Any) -> Any:
    if isinstance(value, str) or (isinstance(value, dict) and "within" in value):
        return {"all": value}
    if isinstance(value, dict):
        return {"by_priority": value}
    return value


# Replaced by a $ref to TargetSpec when the schema is assembled (engine.cli.schema).
SPEC_REF_PLACEHOLDER = "x-deskpilot-target-spec"
_SPEC_REF = {SPEC_REF_PLACEHOLDER: True}
_MATRIX_SCHEMA = {
    "anyOf": [
        SPAN_SCHEMA,
        _SPEC_REF,
        {
            "type": "object",
            "description": "priority or level name -> a budget, {within: ...}, or none",
            "propertyNames": {
                "not": {"enum": ["within", "calendar", "warn_after", "pause_on", "until_tags", "from"]}
            },
            "additionalProperties": {"anyOf": [SPAN_SCHEMA, _SPEC_REF, {"const": "none"}, {"type": "null"}]},
        },
    ]
}


class Policy(Strict):
    id: RuleId
    name: str | None = Field(None, description="shown in notes, e.g. 'Professional plan'")
    when: Condition = Field(default_factory=Condition)
    calendar: CalendarRef | None = Field(None, description="default calendar of the targets")
    targets: dict[
        TargetName, Annotated[TargetMatrix, BeforeValidator(_target_form), WithJsonSchema(_MATRIX_SCHEMA)]
    ] = Field(
        default_factory=dict,
        description="per target: one budget ('4h', '2 business days', {within: ...}), or one per priority",
    )


def _calendar_name(value: Any) -> Any:
    if isinstance(value, dict):
        raise ValueError(
            "expected a calendar name here; a calendar chosen by a ticket field is for policies and targets"
        )
    return value


CalendarName = Annotated[str, BeforeValidator(_calendar_name)]


class Trigger(Strict):
    """When an escalation fires; with no trigger it fires as soon as `when` holds."""

    breach: TargetName | None = None
    warning: TargetName | None = None
    before_breach: TargetName | None = None
    within: Duration | None = Field(None, description="with before_breach: business time left")
    after_created: Span | None = Field(None, description="business time or business days since creation")
    calendar: CalendarName | None = Field(None, description="with after_created")

    @model_validator(mode="after")
    def _one_kind(self) -> Trigger:
        kinds = [k for k in ("breach", "warning", "before_breach", "after_created") if getattr(self, k)]
        if len(kinds) != 1:
            raise ValueError("name exactly one of: breach, warning, before_breach, after_created")
        if self.before_breach and not self.within:
            raise ValueError("before_breach needs `within`")
        if self.after_created and not self.calendar:
            raise ValueError("after_created needs a `calendar`")
        return self


class EscalationActions(Strict):
    add_tags: list[str] = Field(default_factory=list)
    assign_group: str | None = None
    set_priority: Priority | None = None
    note: str | None = Field(None, description="extra text for the internal note")

    @model_validator(mode="after")
    def _changes_something(self) -> EscalationActions:
        if not (self.add_tags or self.assign_group or self.set_priority):
            raise ValueError(
                "an escalation needs add_tags, assign_group or set_priority,"
                " so the bot can see it already ran"
            )
        return self


class Escalation(Strict):
    id: RuleId
    when: Condition = Field(default_factory=Condition)
    on: Trigger | None = None
    unless_tags: list[str] = Field(default_factory=list)
    do: EscalationActions




class AutoClose(Strict):
    """Close a ticket after business time with no customer reply since the agent's last public comment."""

    id: RuleId
    when: Condition
    after: Span = Field(description="business time ('72h') or business days ('3 business days')")
    calendar: CalendarName
    set_status: Literal["solved", "closed"] = "solved"
    reply: str = Field(min_length=1, description="public comment posted with the close")
    add_tags: list[str] = Field(default_factory=list)
    remind_before: Duration | None = Field(
        None, description="post `reminder` this much business time before closing"
    )
    reminder: str | None = Field(None, min_length=1, description="public reminder comment")

    @model_validator(mode="after")
    def _reminder(self) -> AutoClose:
        if (self.remind_before is None) != (self.reminder is None):
            raise ValueError("remind_before and reminder go together")
        hours = isinstance(self.after, int)
        if self.remind_before is not None and hours and self.remind_before >= self.after:
            raise ValueError("remind_before must be shorter than `after`")
        return self


class SlaField(Strict):
    due: str | None = None
    state: str | None = None


class HelpdeskMapping(Strict):
    """Account-specific ids: engine names -> the helpdesk's ids."""

    fields: dict[str, str | int] = Field(default_factory=dict)
    groups: dict[str, int | str] = Field(default_factory=dict)
    statuses: dict[int, Status] = Field(default_factory=dict, description="Freshdesk custom status ids")


class Helpdesks(Strict):
    zendesk: HelpdeskMapping | None = None
    freshdesk: HelpdeskMapping | None = None


class RuleFile(Strict):
    """One rule file. Several files in a directory are merged in name order."""

    version: Literal[1] = 1
    calendars: dict[str, CalendarModel] = Field(default_factory=dict)
    levels: dict[str, list[Priority]] = Field(
        default_factory=dict, description="names for groups of priorities, e.g. S1: [urgent, high]"
    )
    status_aliases: dict[str, Status] = Field(
        default_factory=dict, description="helpdesk status names -> engine statuses"
    )
    reclassify: list[Reclassify] = Field(default_factory=list)
    policies: list[Policy] = Field(default_factory=list)
    escalations: list[Escalation] = Field(default_factory=list)
    auto_close: list[AutoClose] = Field(default_factory=list)
    sla_fields: dict[TargetName, SlaField] = Field(
        default_factory=dict, description="custom fields that receive each target's due time and state"
    )
    helpdesk: Helpdesks | None = None

    @field_validator("levels")
    @classmethod
    def _level_names(cls, levels: dict[str, list[str]]) -> dict[str, list[str]]:
        for name in levels:
            if name in PRIORITIES or name in ("all", "none"):
                raise ValueError(f"level name {name!r} clashes with a priority name")
        return levels

    @field_validator("status_aliases")
    @classmethod
    def _aliases(cls, aliases: dict[str, str]) -> dict[str, str]:
        for name in aliases:
            if name in STATUSES:
                raise ValueError(f"{name!r} is already an engine status")
        return aliases
