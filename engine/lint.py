"""`engine check` warnings: rule files that load but will not do what their author expects."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine import yamlsafe
from engine.conditions import Matcher
from engine.rulefile import _Source
from engine.rules import CalendarChoice
from engine.ruleset import RuleSet


@dataclass(frozen=True, slots=True)
class RuleWarning:
    file: str
    line: int
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


def _warn(src: _Source, loc: tuple[Any, ...], message: str) -> RuleWarning:
    line, path = yamlsafe.locate(src.doc.root, loc)
    return RuleWarning(src.name, line, path, message)


def _conditions(src: _Source):
    """(location, Condition) of every `when` in the file."""
    for section in ("reclassify", "policies", "escalations", "auto_close"):
        for index, rule in enumerate(getattr(src.model, section)):
            yield (section, index, "when"), rule.when


def _calendar_choices(src: _Source):
    """(location, CalendarChoice) of every calendar chosen by a ticket field."""
    for index, policy in enumerate(src.model.policies):
        if isinstance(policy.calendar, CalendarChoice):
            yield ("policies", index, "calendar"), policy.calendar
        for name, matrix in policy.targets.items():
            loc = ("policies", index, "targets", name)
            cells = [(loc, matrix.all)]
            cells += [((*loc, key), spec) for key, spec in (matrix.by_priority or {}).items()]
            for cell_loc, spec in cells:
                if spec is not None and isinstance(spec.calendar, CalendarChoice):
                    yield (*cell_loc, "calendar"), spec.calendar


def _field_names(src: _Source) -> set[str]:
    names = {name for _, condition in _conditions(src) for name in condition.fields}
    names |= {choice.field for _, choice in _calendar_choices(src)}
    for target_fields in src.model.sla_fields.values():
        names |= {n for n in (target_fields.due, target_fields.state) if n}
    return names


def _unmapped_fields(rules: RuleSet, sources: list[_Source]) -> list[RuleWarning]:
    out: list[RuleWarning] = []
    for vendor, mapping in sorted(rules.helpdesk.items()):
        mapped = set(mapping.fields)
        if vendor == "freshdesk":
            # Freshdesk tickets carry unmapped custom fields under their own names (cf_...).
            mapped |= {n for src in sources for n in _field_names(src) if n.startswith("cf_")}
        section = f"helpdesk.{vendor}.fields"
        for src in sources:
            for loc, condition in _conditions(src):
                for name in condition.fields:
                    if name not in mapped:
                        out.append(_warn(src, (*loc, "fields", name), (
                            f"field {name!r} is not mapped in {section}: tickets from {vendor.title()}"
                            " never carry it, so this condition never matches"
                        )))
            for loc, choice in _calendar_choices(src):
                if choice.field not in mapped:
                    out.append(_warn(src, (*loc, "field"), (
                        f"field {choice.field!r} is not mapped in {section}: tickets from {vendor.title()}"
                        " never carry it, so the calendar is always the default"
                    )))
            for target, names in src.model.sla_fields.items():
                for key in ("due", "state"):
                    name = getattr(names, key)
                    if name and name not in mapped:
                        out.append(_warn(src, ("sla_fields", target, key), (
                            f"field {name!r} is not mapped in {section}: the bot cannot write it"
                        )))
    return out


def _shadowing_policies(sources: list[_Source]) -> list[RuleWarning]:
    policies = [(src, index, policy) for src in sources for index, policy in enumerate(src.model.policies)]
    for position, (src, index, policy) in enumerate(policies):
        later = [p.id for _, _, p in policies[position + 1:]]
        if later and Matcher(policy.when).always:
            names = ", ".join(repr(name) for name in later)
            return [_warn(src, ("policies", index, "id"), (
                f"policy {policy.id!r} matches every ticket, so the policies after it never apply: {names}"
                " (give it a `when`, or move it last)"
            ))]
    return []


def _empty_levels(sources: list[_Source]) -> list[RuleWarning]:
    return [
        _warn(src, ("levels", name), f"level {name!r} names no priorities: targets under it never apply")
        for src in sources
        for name, priorities in src.model.levels.items()
        if not priorities
    ]


def _choices_without_default(sources: list[_Source]) -> list[RuleWarning]:
    return [
        _warn(src, loc, (
            f"no `default`: tickets whose {choice.field!r} is empty or not one of"
            f" {', '.join(sorted(choice.map)) if choice.map else 'the calendar names'}"
            " get no target from this calendar"
        ))
        for src in sources
        for loc, choice in _calendar_choices(src)
        if choice.default is None
    ]


def warnings(rules: RuleSet, sources: list[_Source]) -> list[RuleWarning]:
    """What `engine check` warns about, in file order."""
    found = (
        _empty_levels(sources)
        + _shadowing_policies(sources)
        + _choices_without_default(sources)
        + _unmapped_fields(rules, sources)
    )
    order = {src.name: n for n, src in enumerate(sources)}
    return sorted(found, key=lambda w: (order.get(w.file, 0), w.line))
