"""Registry of helpdesk connectors: name -> factory(settings) returning a connectors.base.Helpdesk."""

from __future__ import annotations

from collections.abc import Callable, Mapping

from connectors.base import Helpdesk
from connectors.freshdesk import FreshdeskConnector
from connectors.zendesk import ZendeskConnector

# Each factory takes environment-style settings (os.environ or the app config)
# and returns a ready connector; the key is the connector's `name`.
# tests/test_zendesk_connector.py fails when a module defining a connector is missing here.
CONNECTORS: dict[str, Callable[[Mapping[str, str]], Helpdesk]] = {
    "zendesk": ZendeskConnector.from_settings,
    "freshdesk": FreshdeskConnector.from_settings,
}
