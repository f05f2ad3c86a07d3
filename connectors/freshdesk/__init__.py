"""Freshdesk: the connector (client), its webhook events (events) and ticket mapping (tickets)."""

from connectors.freshdesk.client import FreshdeskConnector

__all__ = ["FreshdeskConnector"]
