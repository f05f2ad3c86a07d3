"""Zendesk: the connector (client), its webhook events (events) and ticket mapping (tickets)."""

from connectors.zendesk.client import ZendeskConnector

__all__ = ["ZendeskConnector"]
