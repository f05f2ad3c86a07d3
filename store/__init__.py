"""Persistence for Deskpilot: webhook inbox, per-ticket work queue, snapshots, actions, cursors."""

from store.core import DEFAULT_DATABASE_URL, Store
from store.queue import Claim

__all__ = ["DEFAULT_DATABASE_URL", "Claim", "Store"]
