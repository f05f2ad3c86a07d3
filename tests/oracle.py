"""A slow, obviously correct business-time oracle: one minute at a time, straight from the calendar's spec."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, tzinfo

MINUTE = 60
DAY = 86_400
# add() gives up after this much real time: the property tests never need more.
MAX_SCAN = 5 * 366 * DAY


@dataclass(frozen=True)
class Spec:
    """What a calendar means, written plainly; every boundary is a whole minute.

    weekly: (weekday, start, end) seconds after local midnight of that weekday
        (0 = Monday); `end` may pass midnight (at most into the next day).
    holidays: local dates closed all day.
    closures: (local date, start, end) seconds of that date that are closed.
    always: open at every instant that is not a holiday or closure.
    """

    zone: tzinfo
    weekly: tuple[tuple[int, int, int], ...] = ()
    holidays: frozenset[date] = frozenset()
    closures: tuple[tuple[date, int, int], ...] = ()
    always: bool = False

    def __post_init__(self) -> None:
        for weekday, start, end in self.weekly:
            assert 0 <= weekday <= 6 and 0 <= start < DAY and start < end <= 2 * DAY, (weekday, start, end)
            assert start % MINUTE == 0 and end % MINUTE == 0, "oracle boundaries must be whole minutes"
        for _, start, end in self.closures:
            assert 0 <= start < end <= DAY and start % MINUTE == 0 and end % MINUTE == 0


def local_time(spec: Spec, t: int) -> tuple[date, int]:
    """The local date of UTC epoch second `t` and the seconds since that date's midnight."""
    local = datetime.fromtimestamp(t, spec.zone)
    return local.date(), local.hour * 3600 + local.minute * 60 + local.second


def is_open(spec: Spec, t: int) -> bool:
    """Whether the calendar is open at UTC epoch second `t`, from the definition."""
    day, seconds = local_time(spec, t)
    if day in spec.holidays:
        return False
    for closed_day, start, end in spec.closures:
        if closed_day == day and start <= seconds < end:
            return False
    if spec.always:
        return True
    weekday = day.weekday()
    for open_weekday, start, end in spec.weekly:
        # Opened today, or opened yesterday and still running past midnight.
        if open_weekday == weekday and start <= seconds < end:
            return True
        if open_weekday == (weekday - 1) % 7 and start <= seconds + DAY < end:
            return True
    return False


def _paused(pauses: Sequence[tuple[int, int]], t: int) -> bool:
    return any(start <= t < end for start, end in pauses)


def counts(spec: Spec, t: int, pauses: Sequence[tuple[int, int]]) -> bool:
    """Whether the minute starting at `t` counts: open and not paused."""
    return is_open(spec, t) and not _paused(pauses, t)


def elapsed(spec: Spec, start: int, end: int, pauses: Sequence[tuple[int, int]] = ()) -> int:
    """Open, unpaused seconds in [start, end): one minute at a time."""
    assert start % MINUTE == 0 and end % MINUTE == 0
    return sum(MINUTE for t in range(start, end, MINUTE) if counts(spec, t, pauses))


def add(spec: Spec, start: int, seconds: int, pauses: Sequence[tuple[int, int]] = ()) -> int:
    """The end of the minute in which `seconds` of open, unpaused time after `start` are used up."""
    assert start % MINUTE == 0 and seconds % MINUTE == 0 and seconds >= 0
    left = seconds
    t = start
    while left > 0:
        if t - start > MAX_SCAN:
            raise AssertionError(f"no {seconds}s of open time within {MAX_SCAN // DAY} days of {start}")
        if counts(spec, t, pauses):
            left -= MINUTE
        t += MINUTE
    return t
