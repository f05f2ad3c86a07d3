"""Custom status labels in the pure engine: `status:` conditions and `pause_on` name a helpdesk's
custom status by its agent label (case-insensitive) beside the engine statuses."""

from __future__ import annotations

import pytest

from engine.evaluate import evaluate
from engine.rulefile import RuleFileError, load_rules
from engine.ticket import Event, Ticket
from tests.engine_helpers import at

RULES = """
version: 1
calendars: {c: {timezone: UTC, hours: 24/7}}
policies:
  - id: standard
    calendar: c
    targets:
      resolution: {within: 10h, pause_on: [Waiting on Vendor]}
escalations:
  - id: vendor-chase
    when: {status: waiting on vendor}
    on: {breach: resolution}
    do: {add_tags: [vendor_chase]}
"""


def rules(tmp_path, text: str = RULES):
    (tmp_path / "rules.yaml").write_text(text)
    return load_rules(tmp_path)


def ticket(*events: Event, label: str | None) -> Ticket:
    return Ticket(id="1", status="on_hold", created_at=at("2024-03-04T00:00:00"), events=events,
                  custom_status=label)


def test_pause_on_a_label_stops_the_clock_only_in_that_custom_status(tmp_path):
    # Two custom statuses of the hold category: only "Waiting on vendor" is named.
    events = (Event(at("2024-03-04T02:00:00"), "status", status="on_hold", custom_status="Waiting on vendor"),
              Event(at("2024-03-04T06:00:00"), "status", status="on_hold", custom_status="On-hold"))
    result = evaluate(ticket(*events, label="On-hold"), rules(tmp_path), at("2024-03-04T09:00:00"))
    # 2h open, 4h paused, then running again from 06:00: 10h of budget are used up at 14:00.
    assert result.targets["resolution"].state == "running"
    assert result.targets["resolution"].due == at("2024-03-04T14:00:00")

    still = ticket(events[0], label="Waiting on vendor")
    waiting = evaluate(still, rules(tmp_path), at("2024-03-04T09:00:00"))
    assert waiting.targets["resolution"].state == "paused"


def test_a_status_condition_matches_the_label_in_any_case(tmp_path):
    ruleset = rules(tmp_path)
    late = at("2024-03-05T12:00:00")
    # Breached at 10:00, before either custom status was entered at 12:00.
    entered = at("2024-03-04T12:00:00")
    vendor = ticket(Event(entered, "status", status="on_hold", custom_status="Waiting on VENDOR"),
                    label="Waiting on VENDOR")
    assert "vendor-chase" in {a.rule for a in evaluate(vendor, ruleset, late).actions}
    other = ticket(Event(entered, "status", status="on_hold", custom_status="On-hold"), label="On-hold")
    assert "vendor-chase" not in {a.rule for a in evaluate(other, ruleset, late).actions}


def test_engine_statuses_still_match_without_a_label(tmp_path):
    text = RULES.replace("status: waiting on vendor", "status: on_hold")
    decision = evaluate(ticket(label=None), rules(tmp_path, text), at("2024-03-05T12:00:00"))
    assert "vendor-chase" in {a.rule for a in decision.actions}


@pytest.mark.parametrize("word, hint", [
    ("pendng", "'pending'"), ("soved", "'solved'"), ("", "a status is"),
])
def test_a_near_miss_of_an_engine_status_is_a_typo_not_a_label(tmp_path, word, hint):
    with pytest.raises(RuleFileError) as raised:
        rules(tmp_path, RULES.replace("status: waiting on vendor", f"status: [{word!r}]"))
    assert hint in str(raised.value)


def test_a_label_that_spells_an_engine_status_is_accepted(tmp_path):
    # Zendesk's default custom status of the hold category is labelled "On-hold".
    ruleset = rules(tmp_path, RULES.replace("[Waiting on Vendor]", "[On-hold]"))
    target = ruleset.policies[0].targets["resolution"]
    assert any("on-hold" in t.pause_on for t in target.values())


def test_the_rule_set_lists_the_labels_it_names(tmp_path):
    assert rules(tmp_path).status_labels() == {"waiting on vendor"}
    assert rules(tmp_path, RULES.replace("status: waiting on vendor", "status: on_hold")).status_labels() == {
        "waiting on vendor"}  # still named by pause_on
