"""rules/schema.json validates rule files as admins write them: every shipped file and
every example of docs/rules.md pass, the invalid fixtures fail."""

from __future__ import annotations

import json
import re
from datetime import date, datetime
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from engine import yamlsafe
from engine.cli import schema
from engine.rulefile import load_texts

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "rules"
PUBLISHED = json.loads((ROOT / "rules" / "schema.json").read_text())
VALIDATOR = Draft202012Validator(PUBLISHED)

SHIPPED = sorted([*(ROOT / "rules").glob("*.yaml"), *(ROOT / "rules" / "examples").glob("*.yaml")])
VALID_FIXTURES = [FIXTURES / "basic.yaml", FIXTURES / "reminder.yaml"]
# Invalid fixtures the schema rejects: their mistake is in the file's shape.
REJECTED = [
    "empty", "not_a_mapping", "unknown_key", "bad_duration", "bad_time",
    "bad_business_days", "calendar_choice_without_field", "bad_yearly", "bad_from",
]
# Invalid fixtures only the loader can tell: YAML it refuses to read, or names and
# meanings a schema cannot know (time zones, countries, calendar and level names,
# overlaps, regular expressions, duplicates).
LOADER_ONLY = [
    "malformed", "evil", "alias_bomb", "duplicate_key", "unknown_calendar", "unknown_timezone",
    "overlap", "no_calendar", "bad_regex", "unknown_country", "unknown_level", "duplicate_id",
]


def plain(value: Any) -> Any:
    """The YAML as an editor's JSON view sees it: dates are strings, keys are strings."""
    if isinstance(value, dict):
        return {str(k).lower() if isinstance(k, bool) else str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    if isinstance(value, date | datetime):
        return value.isoformat()
    return value


def errors(text: str) -> list[str]:
    data = plain(yamlsafe.load(text).data)
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in VALIDATOR.iter_errors(data)]


def doc_snippets() -> list[tuple[int, str]]:
    text = (ROOT / "docs" / "rules.md").read_text()
    found = []
    for match in re.finditer(r"^```yaml\n(.*?)^```", text, re.S | re.M):
        found.append((text[: match.start()].count("\n") + 1, match.group(1)))
    return found


def test_published_schema_is_a_valid_schema_and_the_generated_one():
    Draft202012Validator.check_schema(PUBLISHED)
    assert PUBLISHED == schema(), "regenerate: deskpilot schema > rules/schema.json"


@pytest.mark.parametrize("path", SHIPPED + VALID_FIXTURES, ids=lambda p: p.name)
def test_shipped_rule_files_validate(path):
    assert errors(path.read_text()) == []


def test_docs_snippets_validate_and_load():
    snippets = doc_snippets()
    assert len(snippets) >= 4
    for line, text in snippets:
        assert errors(text) == [], f"docs/rules.md:{line}"
        load_texts([(f"docs/rules.md:{line}", text)])  # and the engine takes them as they are


@pytest.mark.parametrize("name", REJECTED)
def test_invalid_fixtures_are_rejected(name):
    assert errors((FIXTURES / f"{name}.yaml").read_text()), name


def test_every_invalid_fixture_is_classified():
    names = {p.stem for p in FIXTURES.glob("*.yaml")} - {p.stem for p in VALID_FIXTURES}
    assert names == set(REJECTED) | set(LOADER_ONLY)


@pytest.mark.parametrize(
    "snippet",
    [
        "policies: [{id: p, calendar: c, targets: {first_response: 4}}]",  # a bare number
        "policies: [{id: p, calendar: c, targets: {first_response: {P1: [1h]}}}]",
        "policies: [{id: p, calendar: c, targets: {first_response: {within: 2h, calender: c}}}]",
        "policies: [{id: p, calendar: {map: {EMEA: emea}}}]",
        "policies: [{id: p, calendar: {field: region, map: {EMEA: emea}, other: x}}]",
        "policies: [{id: p, calendar: c, targets: {next_update: {within: 2h, from: creation}}}]",
        "policies: [{id: p, calendar: c, targets: {next_replies: 2h}}]",
        "calendars: {c: {timezone: UTC, hours: {mon-fri: [[9, 17]]}}}",
        "calendars: {c: {timezone: UTC, hours: 24/7, holidays: {yearly: ['24.12.']}}}",
        "calendars: {c: {timezone: UTC, hours: 24/7, holidays: {ranges: ['2026-12-24 - 2027-01-01']}}}",
        "calendars: {c: {timezone: UTC, hours: 24/7, holidays: {openings: [{date: 2026-12-24}]}}}",
        "escalations: [{id: e, on: {breach: next_replies}, do: {add_tags: [x]}}]",
        "auto_close: [{id: a, when: {}, after: 3, calendar: c, reply: hi}]",
    ],
)
def test_schema_catches_shape_mistakes(snippet):
    assert errors("version: 1\n" + snippet + "\n")


@pytest.mark.parametrize(
    "snippet",
    [
        "policies: [{id: p, calendar: c, targets: {first_response: 2 business days}}]",
        "policies: [{id: p, calendar: c,"
        " targets: {first_response: {P1: 1bd, P2: 1 business day, low: none}}}]",
        "policies: [{id: p, calendar: {field: region, map: {EMEA: emea}, default: c},"
        " targets: {next_reply: {P1: 1h}}}]",
        "policies: [{id: p, calendar: c, targets: {next_update: {P1: {within: 4h, from: created}}}}]",
        "reclassify: [{id: r, when: {priority: none, status: [open, new], fields: {plan: [a, 2]}},"
        " set: low}]",
        "calendars: {c: {timezone: UTC, hours: {mon-fri: '09:00-17:00', sat: ['22:00-06:00']},"
        " holidays: {yearly: ['12-24..01-01'], ranges: ['2026-12-24..2027-01-01'],"
        " openings: [{date: 2026-12-24, hours: ['09:00-12:00']}]}}}",
        "sla_fields: {next_reply: {due: a, state: b}}",
        "helpdesk: {freshdesk: {statuses: {6: on_hold}}}",
    ],
)
def test_schema_accepts_what_the_docs_say(snippet):
    assert errors("version: 1\n" + snippet + "\n") == []
