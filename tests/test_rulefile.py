"""Rule files: every failure mode is one clear line naming file, line and field; nothing half-loads."""

from pathlib import Path

import pytest

from engine.rulefile import RuleFileError, load_rules, load_texts

FIXTURES = Path(__file__).parent / "fixtures" / "rules"


@pytest.mark.parametrize(
    ("fixture", "line", "field", "message"),
    [
        ("empty", 0, "", "the rule file is empty"),
        ("malformed", 5, "", "not valid YAML"),
        ("evil", 2, "", "YAML tag 'tag:yaml.org,2002:python/object/apply:os.system' is not allowed"),
        ("alias_bomb", 7, "", "document too large"),
        ("not_a_mapping", 1, "", "expected a mapping of rule sections"),
        ("duplicate_key", 4, "", "duplicate key 'office' (first at line 3)"),
        ("unknown_key", 4, "policies[0].calender", "unknown key 'calender'; expected one of: calendar, id,"),
        (
            "unknown_calendar",
            6,
            "policies[0].calendar",
            "unknown calendar 'offfice'; defined calendars: office",
        ),
        ("unknown_timezone", 4, "calendars.office.timezone", "unknown time zone 'Europe/Atlantis'"),
        (
            "overlap",
            5,
            "calendars.office.hours",
            "open intervals overlap: 'mon-fri 09:00-12:00' and 'wed 11:00-13:00'",
        ),
        ("no_calendar", 8, "policies[0].targets.first_response.urgent", "no calendar"),
        ("bad_duration", 9, "policies[0].targets.first_response.urgent", "expected a positive duration"),
        ("bad_time", 5, "calendars.office.hours", "mon-fri: expected a time like '09:00', got '9am'"),
        ("bad_regex", 4, "reclassify[0].when.text_regex", "invalid regular expression"),
        ("unknown_country", 6, "calendars.office.holidays.country", "not known to the holidays package"),
        ("unknown_level", 8, "policies[0].targets.first_response.P9", "unknown priority or level 'P9'"),
        ("duplicate_id", 4, "reclassify[1].id", "duplicate rule id 'same'"),
        ("bad_business_days", 9, "policies[0].targets.first_response.low", "'2 days' is ambiguous"),
        ("calendar_choice_without_field", 6, "policies[0].calendar", "required key 'field' is missing"),
        ("bad_yearly", 7, "calendars.office.holidays.yearly[0]", "expected a month-day like '12-24'"),
        ("bad_from", 9, "policies[0].targets.next_update.urgent.from", "Input should be 'created' or"),
    ],
)
def test_invalid_rule_files(fixture, line, field, message):
    path = FIXTURES / f"{fixture}.yaml"
    with pytest.raises(RuleFileError) as caught:
        load_rules(path)
    err = caught.value
    assert (err.file, err.line, err.field) == (str(path), line, field)
    assert message in err.message
    assert "\n" not in str(err)


def test_evil_file_constructs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(RuleFileError):
        load_rules(FIXTURES / "evil.yaml")
    assert not Path("/tmp/deskpilot-pwned").exists()


def test_missing_path():
    with pytest.raises(RuleFileError, match="no such file or directory"):
        load_rules(FIXTURES / "missing.yaml")


def test_directory_without_rule_files(tmp_path):
    with pytest.raises(RuleFileError, match="no rule files"):
        load_rules(tmp_path)


def test_basic_loads():
    rules = load_rules(FIXTURES / "basic.yaml")
    assert set(rules.calendars) == {"office", "nights"}
    assert [p.id for p in rules.policies] == ["everyone"]
    assert len(rules.version) == 12


def test_examples_directory_loads_each_file():
    for path in sorted((FIXTURES.parent.parent.parent / "rules" / "examples").glob("*.yaml")):
        assert load_rules(path).files == [str(path)]


def test_directory_merges_files_in_name_order(tmp_path):
    (tmp_path / "10-calendars.yaml").write_text(
        "version: 1\ncalendars:\n  always: {timezone: UTC, hours: 24/7}\n"
    )
    (tmp_path / "20-policies.yaml").write_text(
        "version: 1\npolicies:\n  - {id: p, calendar: always, targets: {first_response: 1h}}\n"
    )
    (tmp_path / "notes.txt").write_text("ignored")
    rules = load_rules(tmp_path)
    assert [Path(f).name for f in rules.files] == ["10-calendars.yaml", "20-policies.yaml"]
    assert rules.policies[0].targets["first_response"]["urgent"].calendar.name == "always"


def test_bad_second_file_loads_nothing(tmp_path):
    (tmp_path / "a.yaml").write_text("version: 1\ncalendars:\n  always: {timezone: UTC, hours: 24/7}\n")
    (tmp_path / "b.yaml").write_text("version: 1\ncalendars:\n  always: {timezone: UTC, hours: 24/7}\n")
    with pytest.raises(RuleFileError, match="calendar 'always' is defined twice"):
        load_rules(tmp_path)


def test_version_tracks_content():
    text = "version: 1\ncalendars:\n  always: {timezone: UTC, hours: 24/7}\n"
    assert load_texts([("a.yaml", text)]).version == load_texts([("a.yaml", text)]).version
    assert load_texts([("a.yaml", text)]).version != load_texts([("a.yaml", text + "# edited\n")]).version


@pytest.mark.parametrize(
    ("yaml_text", "message"),
    [
        ("version: 2\n", "Input should be 1"),
        ("version: 1\nlevels: {urgent: [high]}\n", "clashes with a priority name"),
        ("version: 1\nstatus_aliases: {open: pending}\n", "already an engine status"),
        (
            "version: 1\ncalendars: {c: {timezone: UTC,"
            " hours: {fri-sun: ['22:00-06:00'], mon: ['05:00-07:00']}}}\n",
            "overlap",
        ),
        ("version: 1\ncalendars: {c: {timezone: '+25:00', hours: 24/7}}\n", "out of range"),
        ("version: 1\ncalendars: {c: {timezone: UTC, hours: {mon: ['09:00-09:00']}}}\n", "empty time range"),
        ("version: 1\nescalations: [{id: e, do: {note: hi}}]\n", "an escalation needs add_tags"),
        (
            "version: 1\ncalendars: {c: {timezone: UTC, hours: 24/7,"
            " holidays: {closures: [{date: 2026-12-23, hours: ['22:00-02:00']}]}}}\n",
            "crosses midnight",
        ),
        (
            "version: 1\nescalations: [{id: e, on: {breach: first_response, warning: resolution},"
            " do: {add_tags: [x]}}]\n",
            "exactly one of",
        ),
        (
            "version: 1\nescalations: [{id: e, on: {after_created: 8h}, do: {add_tags: [x]}}]\n",
            "after_created needs a `calendar`",
        ),
        (
            "version: 1\ncalendars: {c: {timezone: UTC, hours: 24/7}}\n"
            "policies: [{id: p, calendar: c, targets: {resolution: {within: 2h, warn_after: 3h}}}]\n",
            "warn_after must be shorter",
        ),
        ("version: 1\npolicies: [{id: 'bad id', targets: {}}]\n", "String should match pattern"),
        ("version: 1\nreclassify: [{id: r, when: {priority: critical}, set: low}]\n", "Input should be"),
    ],
)
def test_validation_messages(yaml_text, message):
    with pytest.raises(RuleFileError) as caught:
        load_texts([("inline.yaml", yaml_text)])
    assert message in str(caught.value)
    assert str(caught.value).startswith("inline.yaml:")


def test_yaml_12_booleans_keep_words():
    """`on` is a key, and country `NO` is Norway, not false."""
    rules = load_texts(
        [
            (
                "n.yaml",
                "version: 1\ncalendars:\n  oslo:\n    timezone: Europe/Oslo\n"
                "    hours: {mon-fri: ['08:00-16:00']}\n    holidays: {country: NO}\n"
                "escalations:\n  - id: e\n    on: {after_created: 2h, calendar: oslo}\n"
                "    do: {add_tags: [late]}\n",
            )
        ]
    )
    assert rules.escalations[0].kind == "after_created"
