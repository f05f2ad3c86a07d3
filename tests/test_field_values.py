"""Field values as helpdesks send them: multi-select lists and objects in conditions."""

from __future__ import annotations

import pytest

from tests.engine_helpers import decide

FRI_1430 = "2026-11-20T14:30:00Z"


@pytest.mark.parametrize("value, policy", [
    (["professional"], "professional"),
    (["other", "Professional"], "professional"),  # any selected option, case-insensitive
    (["basic"], "basic"),
    (["other"], None),
    ([], None),
    ({"nested": "professional"}, None),  # an object matches nothing and fails nothing
])
def test_multi_select_matches_when_any_option_matches(value, policy):
    decision = decide("cloudtalk", FRI_1430, priority="urgent", fields={"plan": value}, created_at=FRI_1430)
    assert decision.policy == policy


def test_scalar_field_still_matches_exactly():
    decision = decide("cloudtalk", FRI_1430, priority="urgent", fields={"plan": "professional"},
                      created_at=FRI_1430)
    assert decision.policy == "professional"
