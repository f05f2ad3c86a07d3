"""SLA clocks: first_response, resolution, next_update and next_reply, driven by a ticket's timeline."""

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

    `labels[i]` is the custom status label (casefolded) of `spans[i]`, or None;
    `label` the current one. Statuses given to `pauses` and `_since` match a
    span by its engine status or its label.
    """

    __slots__ = (
        "status",
        "spans",
        "labels",
        "label",
        "first_agent",
        "last_agent",
        "last_human_agent",
        "last_public_author",
        "created",
        "now",
        "first_done",
        "events",
    )

    def __init__(self, ticket: Ticket, now: int, status: str, aliases: dict[str, str]) -> None:
        self.created = ticket.created_at
        self.now = now
        self.events = ticket.events
        spans: list[tuple[int, str]] = [(ticket.created_at, "open")]
        labels: list[str | None] = [None]
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
                label = _fold(event.custom_status)
                if (value, label) != (spans[-1][1], labels[-1]):
                    spans.append((max(at, spans[-1][0]), value))
                    labels.append(label)
        current = _fold(ticket.custom_status)
        if truncated:
            status = spans[-1][1]
        elif (status, current) != (spans[-1][1], labels[-1]):
            spans.append((max(last_event_at, spans[-1][0]), status))
            labels.append(current)
        self.status = status
        self.spans = spans
        self.labels = labels
        self.label = labels[-1]
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
        for i, (start, _status) in enumerate(spans):
            if not self.within(i, statuses):
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


    def within(self, index: int, statuses: frozenset[str]) -> bool:
        """Whether span `index` is in `statuses`, by engine status or custom status label."""
        label = self.labels[index]
        return self.spans[index][1] in statuses or (label is not None and label in statuses)


def _fold(label: str | None) -> str | None:
    return label.casefold() if label else None


def due_of(target: Target, start: int, pauses=()) -> tuple[int, int]:
    """(due, business seconds allowed) of `target`'s clock started at `start`, stopped during `pauses`.

    A budget in business days is due at the same local time on the Nth open
    day; pauses move that due by the open time they cover before it.
    """
    calendar = target.calendar
    if target.days is None:
        return calendar.add(start, target.budget, pauses), target.budget
    plain = calendar.add_days(start, target.days)
    budget = calendar.position(plain) - calendar.position(start)
    if not pauses:
        return plain, budget
    due = calendar.add(start, budget, pauses)
    return (due if due > plain else plain), budget


def _covered(pauses, start: int, end: int) -> bool:
    """Whether the sorted, merged `pauses` cover all of [start, end)."""
    for p_start, p_end in pauses:
        if p_start <= start < p_end:
            return end <= p_end
    return False


def _result(
    target: Target, start: int, achieved: int | None, pauses, paused_since: int | None, now: int
) -> TargetResult:
    """The clock of `target` started at `start`, stopped during `pauses`.

    Achieved in time means at or before the due, or with the clock paused
    from the due until it was achieved: a pause that begins the instant the
    budget runs out leaves 0 left, not a breach.
    """
    calendar = target.calendar
    due, budget = due_of(target, start, pauses)
    if achieved is not None:
        in_time = achieved <= due or _covered(pauses, due, achieved)
        return TargetResult(
            "met" if in_time else "breached", due, budget, calendar.name, achieved_at=achieved
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
    last = len(history.spans) - 1
    if not history.within(last, statuses):
        return None
    start = history.spans[last][0]
    for index in range(last, -1, -1):
        if not history.within(index, statuses):
            break
        start = history.spans[index][0]
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
    """From the latest public agent comment to the next, until solved or a stop tag appears.

    With `from: created` the timer runs from creation while no agent has written yet.
    """
    if history.status in DONE_STATUSES:
        return None
    start = history.last_agent
    if start is None:
        if target.start_from != "created":
            return None
        start = history.created
    if target.until_tags and not target.until_tags.isdisjoint(tags):
        return None
    pauses = history.pauses(target.pause_on, start) if target.pause_on else ()
    paused = _since(history, target.pause_on)
    return _result(target, start, None, pauses, paused, history.now)


def _reply_cycle(history: History, creation_counts: bool) -> tuple[int, int | None] | None:
    """(start, achieved or None) of the ticket's current next-reply cycle, else its last one.

    A cycle starts at the oldest public customer comment not yet answered and
    ends at the next public agent comment, or when the ticket is solved. The
    customer's opening message (the ticket's creation) starts the first cycle
    only when `creation_counts` (no first_response target covers it).
    """
    done_entries = [
        at
        for i, (at, status) in enumerate(history.spans)
        if status in DONE_STATUSES and (i == 0 or history.spans[i - 1][1] not in DONE_STATUSES)
    ]
    created, now = history.created, history.now
    open_since: int | None = created if creation_counts else None
    answered = creation_counts
    last: tuple[int, int | None] | None = None
    d = 0
    for event in history.events:
        at = event.at
        if at > now:
            break
        if event.type != "comment" or not event.public or at < created:
            continue
        while d < len(done_entries) and done_entries[d] <= at:
            if open_since is not None and done_entries[d] >= open_since:
                last, open_since = (open_since, done_entries[d]), None
            answered = True
            d += 1
        if event.author == "agent":
            if open_since is not None:
                last, open_since = (open_since, at), None
            answered = True
        elif open_since is None and answered:
            open_since = at
    while d < len(done_entries):
        if open_since is not None and done_entries[d] >= open_since:
            last, open_since = (open_since, done_entries[d]), None
        d += 1
    if open_since is not None:
        if history.status in DONE_STATUSES:  # written while solved, and still solved
            return open_since, open_since
        return open_since, None
    return last


def next_reply(target: Target, history: History, creation_counts: bool) -> TargetResult | None:
    """From the oldest unanswered public customer comment to the next public agent comment.

    Every customer message after an answer starts a new cycle; the result is
    the current cycle (running or paused), else the last one (met or breached),
    else None when the customer has not written since the first reply.
    """
    cycle = _reply_cycle(history, creation_counts)
    if cycle is None:
        return None
    start, achieved = cycle
    pauses = history.pauses(target.pause_on, start, achieved) if target.pause_on else ()
    paused = None
    if achieved is None and target.pause_on:
        paused = _since(history, target.pause_on)
    return _result(target, start, achieved, pauses, paused, history.now)
