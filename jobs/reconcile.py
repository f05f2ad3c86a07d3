"""Reconciliation: ask the helpdesk what changed, so no ticket is left unmanaged by a lost webhook."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from connectors.base import ChangePage, ConnectorError, Helpdesk, RateLimitedError
from engine.ticket import to_epoch
from jobs.runtime import resolve_helpdesk
from jobs.worker import parse_instant, utc_now
from store import Store

log = logging.getLogger(__name__)

# Zendesk: "You can make up to 10 requests per minute to these endpoints"
# (https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/#rate-limits).
EXPORT_REQUESTS_PER_MINUTE = 10
CURSOR = "changes"  # the connector's change cursor (ChangePage.cursor), opaque here
REQUESTS = "change_requests"  # when the last change-list requests were made
REASON = "reconcile"
# How far behind a request's instant Zendesk's export cursor may lag (it leaves
# out the last minute); a parked ticket revived must have been parked before that.
CURSOR_LAG_SECONDS = 120


@dataclass
class ReconcileReport:
    source: str
    skipped: str | None = None
    requests: int = 0  # change-list requests made (Freshdesk: list scans)
    seen: int = 0  # changed tickets listed
    deleted: int = 0  # deleted tickets listed, skipped without a fetch
    queued: int = 0  # of those, newly put in the work queue
    current: int = 0  # listed, but the stored snapshot already holds that updated_at: not queued
    caught_up: bool = False  # the helpdesk has nothing older left to list
    error: str | None = None

    def summary(self) -> str:
        if self.skipped:
            return f"{self.source} reconciliation skipped: {self.skipped}"
        state = "caught up" if self.caught_up else "more to list next run"
        text = (f"{self.source} reconciliation: {self.requests} request(s), {self.seen} changed "
                f"ticket(s), {self.queued} newly queued, {self.current} already current, "
                f"{self.deleted} deleted skipped, {state}")
        return text + (f"; error: {self.error}" if self.error else "")


class Reconciler:
    """Queues (store.request_sync) every ticket the helpdesk says changed since the stored cursor.

    The worker then re-reads and re-decides each one, so a dropped webhook costs
    at most one reconciliation interval. The bot's own writes come back too;
    the worker finds nothing to change on them.

    Args:
        store: the shared database (work queue and cursors).
        helpdesk: a connector, or a no-argument factory returning one.
        clock: returns the current aware instant.
        lookback_seconds: how far back the first run (no cursor yet) starts.
        export_requests_per_minute: change-list requests allowed per minute (Zendesk's
            incremental export limit), counted across runs and processes through the store.

    The cursor is the connector's (Zendesk's export cursor, the latest updated_at
    Freshdesk listed), so the helpdesk's own clock orders the changes.
    """

    def __init__(
        self,
        store: Store,
        helpdesk: Helpdesk | Callable[[], Helpdesk],
        *,
        clock: Callable[[], datetime] = utc_now,
        lookback_seconds: int = 3600,
        export_requests_per_minute: int = EXPORT_REQUESTS_PER_MINUTE,
    ) -> None:
        self.store = store
        self._helpdesk = helpdesk
        self.clock = clock
        self.lookback_seconds = lookback_seconds
        self.export_requests_per_minute = export_requests_per_minute

    def helpdesk(self) -> Helpdesk:
        return resolve_helpdesk(self._helpdesk)

    def run(self) -> ReconcileReport:
        """One reconciliation; at most one runs at a time per helpdesk across processes."""
        helpdesk = self.helpdesk()
        source = helpdesk.name
        with self.store.exclusive(f"reconcile:{source}") as held:
            if not held:
                return ReconcileReport(source, skipped="another reconciliation is running (lock held)")
            report = self._reconcile(helpdesk)
        log.log(logging.WARNING if report.error else logging.INFO, "%s", report.summary())
        return report

    def _reconcile(self, helpdesk: Helpdesk) -> ReconcileReport:
        """Pages of changed tickets from the stored cursor until the helpdesk has no more,
        within EXPORT_REQUESTS_PER_MINUTE. Deleted tickets are skipped, never fetched."""
        source = helpdesk.name
        report = ReconcileReport(source)
        cursor = self.store.get_cursor(source, CURSOR) or None
        # Zendesk refuses a start time within the last minute.
        since = self.clock() - timedelta(seconds=max(self.lookback_seconds, 60))
        recent = self._recent_requests(source)
        # Tickets listed changed after the cursor's instant: one parked before
        # it changed after it was parked, so it gets another go.
        if cursor is None:
            revive_before: datetime | None = since
        elif recent:
            revive_before = datetime.fromtimestamp(max(recent) - CURSOR_LAG_SECONDS, UTC)
        else:
            revive_before = None
        while True:
            now = self.clock()
            window = to_epoch(now) - 60
            recent = [at for at in recent if at > window]
            if len(recent) >= self.export_requests_per_minute:
                log.info("%s: %d change-list requests in the last minute; the rest waits for the next run",
                         source, len(recent))
                break
            recent.append(to_epoch(now))
            self.store.set_cursor(source, REQUESTS, json.dumps(recent), now)
            try:
                page = helpdesk.changed_since(cursor, since)
            except RateLimitedError as err:
                report.error = str(err)
                break
            except ConnectorError as err:
                report.error = (f"{err} (the stored cursor is in sync_cursors as {source}/{CURSOR}; "
                                "delete that row to start again from the look-back)")
                break
            report.requests += 1
            report.seen += len(page.ticket_ids)
            report.deleted += len(page.deleted_ids)
            changed = self._changed(source, page)
            report.current += len(page.ticket_ids) - len(changed)
            report.queued += self.store.request_sync(source, changed, now, REASON,
                                                     revive_dead_before=revive_before)
            if page.cursor:
                cursor = page.cursor
                self.store.set_cursor(source, CURSOR, cursor, now)
            if page.done:
                report.caught_up = True
                break
        return report

    def _changed(self, source: str, page: ChangePage) -> list[str]:
        """The listed tickets whose exported updated_at is newer than their stored snapshot's.

        A ticket listed without an updated_at, never stored, or stored without a
        stamp is queued; so is one whose stamps cannot be compared.
        """
        if not page.updated_at:
            return list(page.ticket_ids)
        stored = self.store.snapshot_stamps(source, page.ticket_ids)
        out = []
        for ticket_id in page.ticket_ids:
            listed = parse_instant(page.updated_at.get(ticket_id))
            known = parse_instant(stored.get(ticket_id))
            if listed is None or known is None or listed > known:
                out.append(ticket_id)
        return out

    def _recent_requests(self, source: str) -> list[int]:
        raw = self.store.get_cursor(source, REQUESTS)
        try:
            values = json.loads(raw) if raw else []
            return [int(value) for value in values]
        except (ValueError, TypeError):
            return []
