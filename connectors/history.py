"""What the vendors' history readers share (connectors/zendesk/history.py, connectors/freshdesk/history.py).

A reader turns a helpdesk's tickets into history documents (jobs/history.py
describes the format) through its vendor connector, so it speaks through the
one HTTP layer (connectors/http.py) with the connector's ticket mapping and
author semantics; `pace` keeps its calls to a share of the API budget.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any


class NoPace:
    """Counts calls and never waits (a reader built without an API share)."""

    calls = 0

    def before(self, kind: str) -> None:
        self.calls += 1

    def after(self, kind: str, headers: Mapping[str, str]) -> None:
        pass


def epoch(value: Any) -> int:
    """UTC epoch seconds of a vendor timestamp ("2024-03-01T09:30:00Z")."""
    return int(datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp())


def stamp(moment: int) -> str:
    """The vendor timestamp of UTC epoch seconds."""
    return datetime.fromtimestamp(moment, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class HistoryReader:
    """The parts of a reader that do not depend on the vendor.

    `connector` is the vendor's connector, built with `pace` (its Http layer
    tells `pace` of every call); `root` the account's web root for ticket links.
    """

    source = ""
    lag = 0  # seconds at the end of a read the vendor may not show yet

    def __init__(self, connector: Any, root: str, pace: Any) -> None:
        self.connector = connector
        self.root = root.rstrip("/")
        self.account = self.root
        self.pace = pace

    def close(self) -> None:
        self.connector.close()
