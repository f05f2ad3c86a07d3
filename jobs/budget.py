"""The bot's helpdesk write budget, shared by every worker and clock through the database."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from config import Settings, positive_int
from store import Store
from store.coordination import BudgetGrant
from store.core import StoreTransaction

log = logging.getLogger(__name__)

# Zendesk allows 100 ticket updates a minute per account and 30 updates per
# ticket per 10 minutes ("Update Ticket" endpoint limits,
# https://developer.zendesk.com/api-reference/introduction/rate-limits/#endpoint-rate-limits);
# the defaults stay under both and leave room for the agents' own apps.
DEFAULT_PER_MINUTE = 80
DEFAULT_PER_TICKET = 20
TICKET_WINDOW_SECONDS = 600


class OverBudget(Exception):
    """No write budget left for this ticket now; try again after `retry_after` seconds."""

    def __init__(self, ticket_id: str, retry_after: float) -> None:
        super().__init__(f"write budget used up; ticket {ticket_id} waits {retry_after:.0f}s")
        self.retry_after = retry_after


@dataclass(frozen=True)
class BudgetLimits:
    per_minute: int = DEFAULT_PER_MINUTE
    per_ticket: int = DEFAULT_PER_TICKET
    ticket_window_seconds: int = TICKET_WINDOW_SECONDS

    @classmethod
    def from_settings(cls, settings: Settings) -> BudgetLimits:
        """WRITE_BUDGET_PER_MINUTE and WRITE_BUDGET_PER_TICKET, as read into the process's Settings."""
        return cls(per_minute=settings.write_budget_per_minute, per_ticket=settings.write_budget_per_ticket)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] = os.environ) -> BudgetLimits:
        """WRITE_BUDGET_PER_MINUTE (default 80) and WRITE_BUDGET_PER_TICKET (per 10 minutes, default 20)."""
        return cls(
            per_minute=positive_int(environ, "WRITE_BUDGET_PER_MINUTE", DEFAULT_PER_MINUTE),
            per_ticket=positive_int(environ, "WRITE_BUDGET_PER_TICKET", DEFAULT_PER_TICKET),
        )


class WriteBudget:
    """Reserves ticket updates before they are made; what is not granted waits, never drops.

    Args:
        store: the database every process shares (the counts live there).
        limits: the budget; BudgetLimits.from_env() reads it from the environment.
    """

    def __init__(self, store: Store, limits: BudgetLimits | None = None) -> None:
        self.store = store
        self.limits = limits or BudgetLimits()

    @classmethod
    def from_env(cls, store: Store, environ: Mapping[str, str] = os.environ) -> WriteBudget:
        return cls(store, BudgetLimits.from_env(environ))

    def reserve(self, source: str, wants: Iterable[tuple[str, int]], now: datetime, *,
                tx: StoreTransaction | None = None, carried: bool = False) -> BudgetGrant:
        """Reserve `units` updates for each (ticket_id, units), in order, as far as the budget allows.

        With `tx` the reservation commits with the caller's other writes (StoreTransaction).
        With `carried` the first ticket carries the others (a bulk job's call): if it is
        denied, so are they. Tickets asking for nothing are granted without a query.
        """
        return self._reserve(source, list(wants), now, tx=tx, carried=carried)

    def reserve_jobs(self, source: str, jobs: Sequence[Sequence[tuple[str, int]]], now: datetime, *,
                     tx: StoreTransaction | None = None) -> BudgetGrant:
        """`reserve(carried=True)` for several bulk jobs, in order, in one reservation: each job's
        first ticket carries the job; a job denied leaves the budget to the jobs after it."""
        wants: list[tuple[str, int]] = []
        carriers = []
        for job in jobs:
            if job:
                carriers.append(len(wants))
                wants.extend(job)
        return self._reserve(source, wants, now, tx=tx, carriers=carriers)

    def _reserve(self, source: str, wants: list[tuple[str, int]], now: datetime, *,
                 tx: StoreTransaction | None, carried: bool = False, carriers: Sequence[int] = ()
                 ) -> BudgetGrant:
        limits = self.limits
        if all(units <= 0 for _ticket, units in wants):
            return BudgetGrant(tuple(ticket_id for ticket_id, _units in wants), (), 0.0)
        grant = (self.store if tx is None else tx).take_write_budget(
            source, wants, now, per_minute=limits.per_minute, per_ticket=limits.per_ticket,
            ticket_window_seconds=limits.ticket_window_seconds, carried=carried, carriers=carriers,
        )
        if grant.denied:
            log.info("%s write budget: %d ticket(s) deferred %.0fs (%d/min, %d per ticket per %ds)",
                     source, len(grant.denied), grant.retry_after, limits.per_minute,
                     limits.per_ticket, limits.ticket_window_seconds)
        return grant

    def spend(self, source: str, ticket_id: str, units: int, now: datetime) -> None:
        """Reserve one ticket's updates, or raise OverBudget."""
        grant = self.reserve(source, [(ticket_id, units)], now)
        if grant.denied:
            raise OverBudget(ticket_id, grant.retry_after)

    def refund(self, source: str, ticket_id: str, at: datetime, units: int) -> None:
        """Give back updates reserved at `at` that no vendor call used (a read found nothing to write)."""
        self.store.refund_write_budget(source, ticket_id, at, units)
