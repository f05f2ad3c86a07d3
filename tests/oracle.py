"""A slow, obviously correct business-time oracle: one minute at a time, straight from the calendar's spec."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, tzinfo

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
    openings: (local date, start, end): that date's own open intervals, in place
        of the week's (or of 24/7); the date is then not a holiday. `end` may
        pass midnight, as for weekly intervals.
    """

    zone: tzinfo
    weekly: tuple[tuple[int, int, int], ...] = ()
    holidays: frozenset[date] = frozenset()
    closures: tuple[tuple[date, int, int], ...] = ()
    always: bool = False
    openings: tuple[tuple[date, int, int], ...] = ()

    def __post_init__(self) -> None:
        for _, start, end in self.openings:
            assert 0 <= start < DAY and start < end <= 2 * DAY and start % MINUTE == 0 and end % MINUTE == 0
        for weekday, start, end in self.weekly:
            assert 0 <= weekday <= 6 and 0 <= start < DAY and start < end <= 2 * DAY, (weekday, start, end)
            assert start % MINUTE == 0 and end % MINUTE == 0, "oracle boundaries must be whole minutes"
        for _, start, end in self.closures:
            assert 0 <= start < end <= DAY and start % MINUTE == 0 and end % MINUTE == 0


def local_time(spec: Spec, t: int) -> tuple[date, int]:
    """The local date of UTC epoch second `t` and the seconds since that date's midnight."""
    local = datetime.fromtimestamp(t, spec.zone)
    return local.date(), local.hour * 3600 + local.minute * 60 + local.second


def _shifts(spec: Spec, day: date) -> list[tuple[int, int]]:
    """The open intervals that start on local date `day` (seconds after its midnight)."""
    opened = [(start, end) for d, start, end in spec.openings if d == day]
    if opened or any(d == day for d, _, _ in spec.openings):
        return opened
    if spec.always:
        return [(0, DAY)]
    return [(start, end) for weekday, start, end in spec.weekly if weekday == day.weekday()]


def is_open(spec: Spec, t: int) -> bool:
    """Whether the calendar is open at UTC epoch second `t`, from the definition."""
    day, seconds = local_time(spec, t)
    opening_days = {d for d, _, _ in spec.openings}
    if day in spec.holidays and day not in opening_days:
        return False
    for closed_day, start, end in spec.closures:
        if closed_day == day and start <= seconds < end:
            return False
    # Opened today, or opened yesterday and still running past midnight.
    if any(start <= seconds < end for start, end in _shifts(spec, day)):
        return True
    yesterday = day - timedelta(days=1)
    return any(start <= seconds + DAY < end for start, end in _shifts(spec, yesterday))


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


def _instant(spec: Spec, day: date, seconds: int) -> int:
    """UTC epoch seconds of local `day` at `seconds` after midnight (datetime's reading of gaps and folds)."""
    naive = datetime.combine(day, time()) + timedelta(seconds=seconds)
    return int(naive.replace(tzinfo=spec.zone).timestamp())


def add_days(spec: Spec, start: int, days: int) -> int:
    """'N business days', from its definition, a minute at a time.

    From the first open minute at or after `start` (its local date D and time
    of day T), the Nth later local date with any open minute; there, T if the
    calendar is open in the minute before or the minute from T; else the end
    of the last open minute before T that day; else the day's first open minute.
    """
    assert start % MINUTE == 0 and days > 0
    t = start
    while not is_open(spec, t):
        t += MINUTE
        assert t - start < MAX_SCAN
    day, tod = local_time(spec, t)
    found = 0
    while True:
        day += timedelta(days=1)
        lo, hi = _instant(spec, day, 0), _instant(spec, day + timedelta(days=1), 0)
        if any(is_open(spec, m) for m in range(lo, hi, MINUTE)):
            found += 1
            if found == days:
                minutes = [m for m in range(lo, hi, MINUTE) if is_open(spec, m)]
                break
        assert day - local_time(spec, start)[0] < timedelta(days=MAX_SCAN // DAY)
    due = _instant(spec, day, tod)
    if due in minutes or (due > lo and due - MINUTE in minutes):
        return due
    before = [m for m in minutes if m < due]
    return before[-1] + MINUTE if before else minutes[0]
