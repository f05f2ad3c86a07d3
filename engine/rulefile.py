"""Load rule files: parse safely, validate with pydantic, resolve names, compile; all or nothing."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterable
from dataclasses import replace
from datetime import date, timedelta, timezone, tzinfo
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import holidays as holidays_lib
from pydantic import ValidationError

from engine import yamlsafe
from engine.calendar import Calendar, CalendarError, WeeklyInterval
from engine.conditions import Matcher
from engine.rules import BusinessDays, CalendarChoice, CalendarModel, Policy, RuleFile, parse_days
from engine.ruleset import (
    DEFAULT_PAUSES,
    AutoCloseRule,
    CalendarByField,
    EscalationRule,
    PolicyRule,
    ReclassifyRule,
    RuleSet,
    Target,
)
from engine.ticket import PRIORITIES

RULE_SUFFIXES = (".yaml", ".yml")
_OFFSET = re.compile(r"^([+-])(\d{2}):(\d{2})$")


class RuleFileError(ValueError):
    """A rule file that cannot be used. str() is one line: file:line: field: what was expected."""

    def __init__(self, file: str, line: int, field: str, message: str) -> None:
        where = f"{file}:{line}" if line else file
        super().__init__(f"{where}: {field}: {message}" if field else f"{where}: {message}")
        self.file, self.line, self.field, self.message = file, line, field, message


class _Source:
    """One parsed file, to report errors at the right line."""

    def __init__(self, name: str, doc: yamlsafe.Document, model: RuleFile) -> None:
        self.name, self.doc, self.model = name, doc, model

    def error(self, loc: tuple[Any, ...], message: str) -> RuleFileError:
        line, path = yamlsafe.locate(self.doc.root, loc)
        return RuleFileError(self.name, line, path, message)


def _pydantic_error(name: str, doc: yamlsafe.Document, err: ValidationError) -> RuleFileError:
    first = err.errors(include_url=False)[0]
    loc = tuple(first["loc"])
    line, path = yamlsafe.locate(doc.root, loc)
    message = first["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    unknown = re.match(r"unknown key '([^']*)'", message)
    if unknown:
        found = yamlsafe.key_line(doc.root, loc, unknown.group(1))
        if found:
            line = found
            path = f"{path}.{unknown.group(1)}" if path else unknown.group(1)
    elif first["type"] not in ("value_error", "assertion_error", "missing") and not isinstance(
        first.get("input"), dict | list
    ):
        message = f"{message}, got {first.get('input')!r}"
    if first["type"] == "missing":
        message = f"required key {str(loc[-1])!r} is missing"
    return RuleFileError(name, line, path, message)


def parse_file(name: str, text: str) -> _Source:
    try:
        doc = yamlsafe.load(text)
    except yamlsafe.YamlError as err:
        raise RuleFileError(name, err.line, "", err.message) from None
    if doc.data is None:
        raise RuleFileError(
            name, 0, "", "the rule file is empty (expected a mapping starting with `version: 1`)"
        )
    if not isinstance(doc.data, dict):
        raise RuleFileError(
            name, 1, "", f"expected a mapping of rule sections, got a {type(doc.data).__name__}"
        )
    try:
        model = RuleFile.model_validate(doc.data)
    except ValidationError as err:
        raise _pydantic_error(name, doc, err) from None
    return _Source(name, doc, model)


# -- compiling ------------------------------------------------------------------------


def parse_zone(name: str) -> tzinfo:
    match = _OFFSET.match(name.strip())
    if match:
        sign = -1 if match.group(1) == "-" else 1
        hours, minutes = int(match.group(2)), int(match.group(3))
        if hours > 23 or minutes > 59:
            raise ValueError(f"offset {name!r} out of range")
        return timezone(sign * timedelta(hours=hours, minutes=minutes), f"UTC{name.strip()}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(
            f"unknown time zone {name!r}; use an IANA name like 'Europe/Berlin' or an offset like '+02:00'"
        ) from None


def _md(year: int, month: int, day: int, forward: bool) -> date:
    """The month-day in `year`; 02-29 in a common year is 03-01 as a start, 02-28 as an end."""
    try:
        return date(year, month, day)
    except ValueError:
        return date(year, 3, 1) if forward else date(year, 2, 28)


@lru_cache(maxsize=4096)
def _yearly_cached(yearly: tuple, year: int) -> frozenset[date]:
    out: set[date] = set()
    for (m1, d1), (m2, d2) in yearly:
        if (m2, d2) >= (m1, d1):
            spans = [(_md(year, m1, d1, True), _md(year, m2, d2, False))]
        else:  # across the year end: this year's tail and the head carried over from last year
            spans = [
                (date(year, 1, 1), _md(year, m2, d2, False)),
                (_md(year, m1, d1, True), date(year, 12, 31)),
            ]
        for first, last in spans:
            out.update(first + timedelta(days=n) for n in range((last - first).days + 1))
    return frozenset(out)


def yearly_dates(yearly: tuple, year: int) -> frozenset[date]:
    """The local dates of `year` closed by yearly month-day entries ((month, day), (month, day))."""
    return _yearly_cached(yearly, year) if yearly else frozenset()


@lru_cache(maxsize=4096)
def _public_holidays(country: str, subdivision: str | None, year: int) -> frozenset[date]:
    return frozenset(holidays_lib.country_holidays(country, subdiv=subdivision, years=year))


def _compile_calendar(src: _Source, name: str, spec: CalendarModel) -> Calendar:
    loc = ("calendars", name)
    try:
        zone = parse_zone(spec.timezone)
    except ValueError as err:
        raise src.error((*loc, "timezone"), str(err)) from None
    lookup = None
    closures: dict[date, list[tuple[int, int]]] = {}
    openings: dict[date, list[tuple[int, int]]] = {}
    if spec.holidays is not None:
        country, subdivision = spec.holidays.country, spec.holidays.subdivision
        if country:
            try:
                holidays_lib.country_holidays(country, subdiv=subdivision)
            except NotImplementedError as err:
                field = "subdivision" if subdivision else "country"
                raise src.error(
                    (*loc, "holidays", field), f"not known to the holidays package: {err}"
                ) from None
        extra = set(spec.holidays.dates)
        for first, last in spec.holidays.ranges:
            extra.update(first + timedelta(days=n) for n in range((last - first).days + 1))
        extra = frozenset(extra)
        yearly = tuple(spec.holidays.yearly)

        def lookup(
            year: int, country=country, subdivision=subdivision, extra=extra, yearly=yearly
        ) -> Iterable[date]:
            days = _public_holidays(country, subdivision, year) if country else frozenset()
            return days | {d for d in extra if d.year == year} | yearly_dates(yearly, year)

        for opening in spec.holidays.openings:
            openings[opening.date] = list(opening.hours)

        for closure in spec.holidays.closures:
            pieces = closures.setdefault(closure.date, [])
            for start, end in closure.hours:
                pieces.append((start, end))
    weekly = []
    if spec.hours != "24/7":
        for days, ranges in spec.hours.items():
            for day in parse_days(days):
                weekly.extend(WeeklyInterval(day, start, end) for start, end in ranges)
    try:
        return Calendar(name, zone, weekly, lookup, closures, always=spec.hours == "24/7", openings=openings)
    except CalendarError as err:
        raise src.error(loc, str(err)) from None


def _priorities_for(
    src: _Source, loc: tuple[Any, ...], key: str, levels: dict[str, list[str]]
) -> list[str | None]:
    if key in PRIORITIES:
        return [key]
    if key == "none":
        return [None]
    if key in levels:
        return list(levels[key])
    known = ", ".join([*PRIORITIES, "none", *levels])
    raise src.error(loc, f"unknown priority or level {key!r}; expected one of: {known}")


def _calendar(
    src: _Source, loc: tuple[Any, ...], name: str | None, calendars: dict[str, Calendar]
) -> Calendar:
    if name is None:
        raise src.error(loc, "no calendar: name one on the target or on the policy")
    if name not in calendars:
        known = ", ".join(sorted(calendars)) or "none defined"
        raise src.error(loc, f"unknown calendar {name!r}; defined calendars: {known}")
    return calendars[name]


def _seconds(span: int | BusinessDays | None) -> int | None:
    return 0 if isinstance(span, BusinessDays) else span


def _by_field(
    src: _Source, loc: tuple[Any, ...], choice: CalendarChoice, calendars: dict[str, Calendar]
) -> CalendarByField:
    by_value: dict[Any, Calendar] = {}
    for value, name in choice.map.items():
        by_value[value.casefold()] = _calendar(src, (*loc, "map", value), name, calendars)
    if not choice.map:  # the field's value names the calendar itself
        by_value = {name.casefold(): calendar for name, calendar in calendars.items()}
    default = None
    if choice.default is not None:
        default = _calendar(src, (*loc, "default"), choice.default, calendars)
    return CalendarByField(choice.field, by_value, default)


def _compile_policy(src: _Source, index: int, policy: Policy, calendars, levels) -> PolicyRule:
    targets: dict[str, dict[str | None, Target]] = {}
    if isinstance(policy.calendar, CalendarChoice):  # names checked even with no target using them
        _by_field(src, ("policies", index, "calendar"), policy.calendar, calendars)
    elif policy.calendar is not None:
        _calendar(src, ("policies", index, "calendar"), policy.calendar, calendars)
    for target_name, matrix in policy.targets.items():
        loc = ("policies", index, "targets", target_name)
        cells: list[tuple[tuple[Any, ...], str | None, list[str | None], Any]] = []
        if matrix.all is not None:
            cells.append((loc, None, [*PRIORITIES, None], matrix.all))
        for key, spec in (matrix.by_priority or {}).items():
            priorities = _priorities_for(src, (*loc, key), key, levels)
            cells.append(((*loc, key), key if key in levels else None, priorities, spec))
        by_priority: dict[str | None, Target] = {}
        for cell_loc, level, priorities, spec in cells:
            if spec is None:
                continue
            if spec.calendar:
                calendar_loc = (*cell_loc, "calendar")
            else:
                calendar_loc = ("policies", index, "calendar") if policy.calendar else cell_loc
            ref = spec.calendar or policy.calendar
            by_field = None
            if isinstance(ref, CalendarChoice):
                by_field = _by_field(src, calendar_loc, ref, calendars)
                calendar = by_field.default
            else:
                calendar = _calendar(src, calendar_loc, ref, calendars)
            days = spec.within.days if isinstance(spec.within, BusinessDays) else None
            if spec.start_from is not None and target_name != "next_update":
                raise src.error(
                    (*cell_loc, "from"), f"only next_update has `from`; {target_name} starts at its own event"
                )
            target = Target(
                name=target_name,
                budget=0 if days is not None else spec.within,
                calendar=calendar,
                pause_on=frozenset(status.casefold() for status in spec.pause_on)
                if spec.pause_on is not None
                else DEFAULT_PAUSES[target_name],
                warn_after=spec.warn_after,
                until_tags=frozenset(spec.until_tags),
                level=level,
                days=days,
                start_from=spec.start_from,
            )
            if by_field is not None:
                chosen = {c.name: c for c in (*by_field.by_value.values(), by_field.default) if c is not None}
                variants = {name: replace(target, calendar=c) for name, c in chosen.items()}
                target = replace(target, by_field=by_field, variants=variants)
            if days is None and spec.warn_after is not None and spec.warn_after >= spec.within:
                raise src.error((*cell_loc, "warn_after"), "warn_after must be shorter than `within`")
            for priority in priorities:
                if priority in by_priority and matrix.all is None:
                    raise src.error(cell_loc, f"priority {priority or 'none'!r} has two targets")
                by_priority[priority] = target
        targets[target_name] = by_priority
    return PolicyRule(policy.id, policy.name or policy.id, Matcher(policy.when), targets)


def _check_ids(sources: list[_Source]) -> None:
    seen: dict[str, str] = {}
    for src in sources:
        for section in ("reclassify", "policies", "escalations", "auto_close"):
            for index, rule in enumerate(getattr(src.model, section)):
                if rule.id in seen:
                    raise src.error(
                        (section, index, "id"), f"duplicate rule id {rule.id!r} (also in {seen[rule.id]})"
                    )
                seen[rule.id] = f"{src.name} {section}"


def compile_sources(sources: list[_Source], version: str) -> RuleSet:
    rules = RuleSet(version=version, files=[s.name for s in sources])
    levels: dict[str, list[str]] = {}
    for src in sources:
        for name, spec in src.model.calendars.items():
            if name in rules.calendars:
                raise src.error(("calendars", name), f"calendar {name!r} is defined twice")
            rules.calendars[name] = _compile_calendar(src, name, spec)
        for name, priorities in src.model.levels.items():
            if name in levels and levels[name] != priorities:
                raise src.error(("levels", name), f"level {name!r} is defined twice differently")
            levels[name] = priorities
        rules.status_aliases.update(src.model.status_aliases)
    _check_ids(sources)
    for src in sources:
        model, cals = src.model, rules.calendars
        rules.reclassify += [
            ReclassifyRule(r.id, Matcher(r.when), r.set, r.explain) for r in model.reclassify
        ]
        rules.policies += [_compile_policy(src, i, p, cals, levels) for i, p in enumerate(model.policies)]
        for i, esc in enumerate(model.escalations):
            on = esc.on
            kind = (
                "immediate"
                if on is None
                else next(
                    k for k in ("breach", "warning", "before_breach", "after_created") if getattr(on, k)
                )
            )
            calendar = (
                _calendar(src, ("escalations", i, "on", "calendar"), on.calendar, cals)
                if kind == "after_created"
                else None
            )
            rules.escalations.append(
                EscalationRule(
                    id=esc.id,
                    when=Matcher(esc.when),
                    kind=kind,
                    target=None if on is None else (on.breach or on.warning or on.before_breach),
                    within=None if on is None else (on.within or _seconds(on.after_created)),
                    days=on.after_created.days
                    if on is not None and isinstance(on.after_created, BusinessDays)
                    else None,
                    calendar=calendar,
                    unless_tags=frozenset(esc.unless_tags),
                    add_tags=tuple(esc.do.add_tags),
                    assign_group=esc.do.assign_group,
                    set_priority=esc.do.set_priority,
                    note=esc.do.note,
                )
            )
        for i, rule in enumerate(model.auto_close):
            rules.auto_close.append(
                AutoCloseRule(
                    id=rule.id,
                    when=Matcher(rule.when),
                    after=0 if isinstance(rule.after, BusinessDays) else rule.after,
                    after_days=rule.after.days if isinstance(rule.after, BusinessDays) else None,
                    calendar=_calendar(src, ("auto_close", i, "calendar"), rule.calendar, cals),
                    set_status=rule.set_status,
                    reply=rule.reply,
                    add_tags=tuple(rule.add_tags),
                    remind_before=rule.remind_before,
                    reminder=rule.reminder,
                )
            )
        for target, names in model.sla_fields.items():
            rules.sla_fields[target] = {k: v for k, v in names.model_dump().items() if v}
        if model.helpdesk is not None:
            for vendor in ("zendesk", "freshdesk"):
                mapping = getattr(model.helpdesk, vendor)
                if mapping is not None:
                    rules.helpdesk[vendor] = mapping
    return rules


def compile_texts(files: list[tuple[str, str]]) -> tuple[RuleSet, list[_Source]]:
    """The rule set of files given as (name, text) pairs, and their parsed sources."""
    digest = hashlib.sha256()
    sources = []
    for name, text in files:
        digest.update(json.dumps([Path(name).name, text]).encode())
        sources.append(parse_file(name, text))
    return compile_sources(sources, digest.hexdigest()[:12]), sources


def load_texts(files: list[tuple[str, str]]) -> RuleSet:
    """Compile rule files given as (name, text) pairs, in the order given."""
    return compile_texts(files)[0]


def rule_paths(path: str | Path) -> list[Path]:
    """The rule files at `path`: the file itself, or a directory's *.yaml/*.yml (not recursive)."""
    root = Path(path)
    if not root.exists():
        raise RuleFileError(str(path), 0, "", "no such file or directory")
    if root.is_file():
        return [root]
    files = sorted(p for p in root.iterdir() if p.is_file() and p.suffix in RULE_SUFFIXES)
    if not files:
        raise RuleFileError(str(path), 0, "", "no rule files (*.yaml, *.yml) in this directory")
    return files


def load_rules(path: str | Path) -> RuleSet:
    """Load a rule file or a directory of them. Raises RuleFileError; never half-loads."""
    return compile_texts(read_rule_files(path))[0]


def read_rule_files(path: str | Path) -> list[tuple[str, str]]:
    """(name, text) of the rule files at `path`. Raises RuleFileError."""
    files = []
    for file in rule_paths(path):
        try:
            text = file.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise RuleFileError(str(file), 0, "", "not UTF-8 text") from None
        except OSError as err:
            raise RuleFileError(str(file), 0, "", f"cannot read: {err.strerror}") from None
        files.append((str(file), text))
    return files
