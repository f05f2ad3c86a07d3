"""SLA clocks: first_response, resolution and next_update, driven by a ticket's timeline."""

from __future__ import annotations

from engine.decision import TargetResult
from engine.ruleset import Target
from engine.ticket import AUTHORS, DONE_STATUSES, Ticket

_FOREVER = 2**62


class History:
    """What the clocks need from a ticket's events, as of `now` (later events are ignored).

    The status before the first status event is `open` (policies.md: not
    paused). When the ticket's current status differs from the last status
    event (the helpdesk sent no event for the change, e.g. a customer reply
    reopening a pending ticket), the change is placed at the latest event
    after that status event, or at the status event itself.
    """

    __slots__ = (
        "status",
        "spans",
        "first_agent",
        "last_agent",
        "last_human_agent",
        "last_public_author",
        "created",
        "now",
        "first_done",
    )

    def __init__(self, ticket: Ticket, now: int, status: str, aliases: dict[str, str]) -> None:
        self.created = ticket.created_at
        self.now = now
        spans: list[tuple[int, str]] = [(ticket.created_at, "open")]
        first_agent = last_agent = last_human_agent = None
        last_public_author = None
        last_event_at = ticket.created_at
        truncated = False
        for event in ticket.events:
            at = event.at
            if at > now:
                truncated = True
                break
            last_event_at = at
            if event.type == "comment":
                if event.public and event.author in AUTHORS:
                    last_public_author = event.author
                    if event.author == "agent" and at >= ticket.created_at:
                        last_agent = at
                        if not event.bot:
                            last_human_agent = at
                        if first_agent is None:
                            first_agent = at
            elif event.type == "status":
                value = aliases.get(event.status, event.status) if aliases else event.status
                if value != spans[-1][1]:
                    spans.append((max(at, spans[-1][0]), value))
        if truncated:
            status = spans[-1][1]
        elif status != spans[-1][1]:
            spans.append((max(last_event_at, spans[-1][0]), status))
        self.status = status
        self.spans = spans
        self.first_agent = first_agent
        self.last_agent = last_agent
        self.last_human_agent = last_human_agent
        self.last_public_author = last_public_author
        self.first_done = next((start for start, s in spans if s in DONE_STATUSES), None)

    def pauses(self, statuses: frozenset[str], since: int, until: int | None = None) -> list[tuple[int, int]]:
        """Intervals after `since` (up to `until`, default now) spent in `statuses`."""
        end_all = self.now if until is None else until
        out: list[tuple[int, int]] = []
        spans = self.spans
        for i, (start, status) in enumerate(spans):
            if status not in statuses:
                continue
            end = spans[i + 1][0] if i + 1 < len(spans) else end_all
            if end > end_all:
                end = end_all
            if start < since:
                start = since
            if end > start:
                if out and out[-1][1] >= start:
                    out[-1] = (out[-1][0], end)
                else:
                    out.append((start, end))
        return out


def _result(
    target: Target, start: int, achieved: int | None, pauses, paused_since: int | None, now: int
) -> TargetResult:
    """The clock of `target` started at `start`, stopped during `pauses`."""
    calendar, budget = target.calendar, target.budget
    due = calendar.add(start, budget, pauses)
    if achieved is not None:
        return TargetResult(
            "met" if achieved <= due else "breached", due, budget, calendar.name, achieved_at=achieved
        )
    if paused_since is not None:
        if due < paused_since:  # the budget ran out before the pause began
            return TargetResult("breached", due, budget, calendar.name)
        return TargetResult("paused", None, budget, calendar.name)
    result = TargetResult("breached" if due < now else "running", due, budget, calendar.name)
    if target.warn_after is not None and result.state == "running":
        result.warn_at = calendar.add(start, target.warn_after, pauses)
        result.warning = result.warn_at <= now
    return result


def _since(history: History, statuses: frozenset[str]) -> int | None:
    """When the ticket entered the run of `statuses` it is in now (pending then
    on_hold is one pause; solved then closed is one resolution), else None."""
    if history.status not in statuses:
        return None
    start = history.spans[-1][0]
    for at, status in reversed(history.spans):
        if status not in statuses:
            break
        start = at
    return start



def first_response(target: Target, history: History) -> TargetResult:
    """From creation to the first public agent comment (or the ticket being solved first)."""
    achieved = history.first_agent
    if history.first_done is not None and (achieved is None or history.first_done < achieved):
        achieved = history.first_done
    pauses = history.pauses(target.pause_on, history.created, achieved) if target.pause_on else ()
    paused = None if achieved is not None else _since(history, target.pause_on)
    return _result(target, history.created, achieved, pauses, paused, history.now)


def resolution(target: Target, history: History) -> TargetResult:
    """From creation until solved/closed; stopped in pause statuses and while solved before a reopen."""
    stopped = target.pause_on | DONE_STATUSES
    achieved = _since(history, DONE_STATUSES)
    pauses = history.pauses(stopped, history.created, achieved)
    paused = None if achieved is not None else _since(history, target.pause_on)
    return _result(target, history.created, achieved, pauses, paused, history.now)


def next_update(target: Target, history: History, tags: frozenset[str]) -> TargetResult | None:
    """From the latest public agent comment to the next, until solved or a stop tag appears."""
    if history.status in DONE_STATUSES or history.last_agent is None:
        return None
    if target.until_tags and not target.until_tags.isdisjoint(tags):
        return None
    start = history.last_agent
    pauses = history.pauses(target.pause_on, start) if target.pause_on else ()
    paused = _since(history, target.pause_on)
    return _result(target, start, None, pauses, paused, history.now)
