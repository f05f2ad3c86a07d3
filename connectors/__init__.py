"""The connector registry: the only way the rest of Deskpilot builds a helpdesk connector.

`build(settings, mapping)` picks the factory named by HELPDESK. A factory takes the
settings object (credentials, API URL), the rule files' `helpdesk:` mapping for that
helpdesk (field, group and status ids) and keyword options (timeouts, sleep), and
returns a connectors.base.Helpdesk.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from connectors.base import ConfigurationError, Helpdesk
from connectors.freshdesk import FreshdeskConnector
from connectors.zendesk import ZendeskConnector

# The key is the connector's `name` (and HELPDESK's value).
# tests/test_zendesk_connector.py fails when a module defining a connector is missing here.
CONNECTORS: dict[str, Callable[..., Helpdesk]] = {
    "zendesk": ZendeskConnector.from_settings,
    "freshdesk": FreshdeskConnector.from_settings,
}


def build(settings: Any, mapping: Any = None, **options: Any) -> Helpdesk:
    """The connector of `settings.helpdesk`, configured from `mapping` (rules' `helpdesk:` entry).

    Every factory also takes `status_aliases` (the rules' helpdesk status labels ->
    engine statuses) and `status_labels` (the custom status labels the rules' conditions
    and pause_on name, which check() looks up) among the options.
    """
    factory = CONNECTORS.get(settings.helpdesk)
    if factory is None:
        raise ConfigurationError(
            f"HELPDESK={settings.helpdesk!r} has no connector; use one of {', '.join(sorted(CONNECTORS))}"
        )
    return factory(settings, mapping, **options)
