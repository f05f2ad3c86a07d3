"""Business calendars and exact business-time arithmetic, with pauses, on UTC epoch seconds.

A calendar is open when the local wall-clock time falls inside one of its
weekly intervals and the local date is not a holiday or closure. A business
hour is therefore 60 real minutes inside open wall-clock time: on DST change
days a 09:00-17:00 day is still 8 real hours, and a night shift spanning the
change is an hour shorter or longer, as a clock on the wall would show.

Open time is precomputed per calendar as sorted UTC intervals with a running
total of open seconds, so `add` and `elapsed` are two binary searches each,
whatever the span.
"""

from __future__ import annotations

from bisect import bisect_left, bisect_right
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone, tzinfo

DAY = 86_400
WEEK = 7 * DAY
_EPOCH_ORDINAL = date(1970, 1, 1).toordinal()
# Far enough for any SLA: beyond this, a target is a configuration error.
_MAX_YEARS = 200

Interval = tuple[int, int]
HolidayLookup = Callable[[int], Iterable[date]]


class CalendarError(ValueError):
    """A calendar that cannot answer (no open time at all, or a span beyond its horizon)."""


@dataclass(frozen=True, slots=True)
class WeeklyInterval:
    """Open from `start` to `end` seconds after local midnight of `weekday` (0 = Monday).

    `end` may pass 86400: a night shift opening Monday 22:00 and closing
    Tuesday 06:00 is (0, 79200, 108000).
    """

    weekday: int
    start: int
    end: int


def wall_seconds(day: date, seconds: int = 0) -> int:
    """Seconds since 1970-01-01 00:00 of a naive local date and time of day."""
    return (day.toordinal() - _EPOCH_ORDINAL) * DAY + seconds


def _merge(intervals: Iterable[Interval]) -> list[Interval]:
    merged: list[list[int]] = []
    for start, end in sorted(intervals):
        if end <= start:
            continue
        if merged and start <= merged[-1][1]:
            if end > merged[-1][1]:
                merged[-1][1] = end
        else:
            merged.append([start, end])
    return [(start, end) for start, end in merged]


def _subtract(opens: list[Interval], closed: list[Interval]) -> list[Interval]:
    """`opens` minus `closed`; both sorted and merged."""
    out: list[Interval] = []
    j = 0
    for start, end in opens:
        while j < len(closed) and closed[j][1] <= start:
            j += 1
        k = j
        cur = start
        while k < len(closed) and closed[k][0] < end:
            if closed[k][0] > cur:
                out.append((cur, closed[k][0]))
            cur = max(cur, closed[k][1])
            k += 1
        if cur < end:
            out.append((cur, end))
    return out


def _offset(zone: tzinfo, epoch: int) -> int:
    return int(datetime.fromtimestamp(epoch, zone).utcoffset().total_seconds())


def offset_segments(zone: tzinfo, start: int, end: int) -> list[tuple[int, int, int]]:
    """(from, to, utc offset in seconds) pieces of constant offset covering [start, end).

    Transitions are found by probing every 6 hours and bisecting to the second,
    which is exact for every zone in the IANA database (no zone changes offset
    twice within six hours).
    """
    if isinstance(zone, timezone):
        return [(start, end, _offset(zone, start))]
    segments = []
    seg_start = start
    current = _offset(zone, start)
    probe = start
    step = 6 * 3600
    while probe < end:
        nxt = min(probe + step, end)
        off = _offset(zone, nxt) if nxt < end else current
        if off != current:
            lo, hi = probe, nxt  # offset(lo) == current, offset(hi) != current
            while hi - lo > 1:
                mid = (lo + hi) // 2
                if _offset(zone, mid) == current:
                    lo = mid
                else:
                    hi = mid
            segments.append((seg_start, hi, current))
            seg_start, current = hi, _offset(zone, hi)
        probe = nxt
    segments.append((seg_start, end, current))
    return segments


class Calendar:
    """Open business time of one named calendar.

    Args:
        name: the calendar's name in the rule file.
        zone: an IANA zone or a fixed offset.
        weekly: the open intervals of a week; empty with `always=True` for 24/7.
        holidays: given a year, the local dates closed all day.
        closures: local date -> closed (start, end) seconds of that day.
        always: open at every instant (holidays and closures still apply).
        openings: local date -> open (start, end) seconds replacing the week's
            hours of that date (an end past 86400 runs into the next date); the
            date is open then even if it is a holiday. Closures still apply.
    """

    def __init__(
        self,
        name: str,
        zone: tzinfo,
        weekly: Sequence[WeeklyInterval] = (),
        holidays: HolidayLookup | None = None,
        closures: dict[date, list[Interval]] | None = None,
        always: bool = False,
        openings: dict[date, list[Interval]] | None = None,
    ) -> None:
        self.name = name
        self.zone = zone
        self.always = always
        self._weekly = tuple(weekly)
        self._holidays = holidays
        self._closures = dict(closures or {})
        self._openings = {day: list(pieces) for day, pieces in (openings or {}).items()}
        if not always and not any(w.end > w.start for w in self._weekly):
            raise CalendarError(f"calendar {name!r} has no open hours")
        # Plain 24/7 needs no table: open time is real time.
        self.trivial = always and holidays is None and not self._closures and not self._openings
        self._years: tuple[int, int] | None = None
        self._lo = self._hi = 0
        self._starts: list[int] = []
        self._ends: list[int] = []
        self._cum: list[int] = []  # open seconds before interval i
        self._cum_end: list[int] = []  # open seconds up to the end of interval i
        self._base = 0  # position of the table's start

    # -- precomputation -------------------------------------------------

    def _closed_dates(self, first: int, last: int) -> set[date]:
        dates: set[date] = set()
        if self._holidays is not None:
            for year in range(first, last + 1):
                dates.update(self._holidays(year))
        return dates

    def _wall_open(self, first: date, last: date) -> list[Interval]:
        """Open wall-clock intervals of the local dates first..last (naive epoch seconds)."""
        raw: list[Interval] = []
        day = first
        one = timedelta(days=1)
        openings = self._openings
        while day <= last:
            base = wall_seconds(day)
            if openings and day in openings:
                raw.extend((base + a, base + b) for a, b in openings[day])
            elif self.always:
                raw.append((base, base + DAY))
            else:
                weekday = day.weekday()
                raw.extend((base + w.start, base + w.end) for w in self._weekly if w.weekday == weekday)
            day += one
        closed = [
            (wall_seconds(d), wall_seconds(d) + DAY)
            for d in self._closed_dates(first.year, last.year)
            if first <= d <= last and d not in openings
        ]
        for day, pieces in self._closures.items():
            if first <= day <= last:
                closed.extend((wall_seconds(day, a), wall_seconds(day, b)) for a, b in pieces)
        return _subtract(_merge(raw), _merge(closed))

    def _build(self, first_year: int, last_year: int) -> None:
        lo = wall_seconds(date(first_year, 1, 1))
        hi = wall_seconds(date(last_year + 1, 1, 1))
        # Local dates a little wider than the UTC span: offsets are under a day,
        # and night shifts reach into the next date.
        wall = self._wall_open(date(first_year - 1, 12, 29), date(last_year + 1, 1, 3))
        starts: list[int] = []
        ends: list[int] = []
        for seg_start, seg_end, off in offset_segments(self.zone, lo - 2 * DAY, hi + 2 * DAY):
            w_lo, w_hi = seg_start + off, seg_end + off
            i = bisect_right(wall, (w_lo, w_lo)) - 1
            i = max(i, 0)
            while i < len(wall) and wall[i][0] < w_hi:
                a, b = max(wall[i][0], w_lo), min(wall[i][1], w_hi)
                if a < b:
                    a, b = max(a - off, lo), min(b - off, hi)
                    if a < b:
                        if ends and ends[-1] == a:
                            ends[-1] = b
                        else:
                            starts.append(a)
                            ends.append(b)
                i += 1
        cum, cum_end, total = [], [], 0
        for a, b in zip(starts, ends, strict=True):
            cum.append(total)
            total += b - a
            cum_end.append(total)
        if self._years is not None:
            # Keep every position the old table gave: shift the new totals so
            # that the old table's start keeps its position.
            i = bisect_right(starts, self._lo) - 1
            old_lo_pos = 0 if i < 0 else cum[i] + min(self._lo, ends[i]) - starts[i]
            shift = self._base - old_lo_pos
            cum = [c + shift for c in cum]
            cum_end = [c + shift for c in cum_end]
            self._base = shift
        self._years = (first_year, last_year)
        self._lo, self._hi = lo, hi
        self._starts, self._ends, self._cum, self._cum_end = starts, ends, cum, cum_end

    def _cover(self, epoch: int) -> None:
        year = datetime.fromtimestamp(epoch, UTC).year
        if self._years is None:
            self._build(year - 1, year + 2)
            return
        first, last = self._years
        if year - first > _MAX_YEARS * 2 or last - year > _MAX_YEARS * 2:
            raise CalendarError(f"calendar {self.name!r}: instant out of range")
        self._build(min(first, year - 1), max(last, year + 1))

    # -- queries --------------------------------------------------------

    def position(self, t: int) -> int:
        """Open seconds from the start of the table to `t` (a monotone clock)."""
        if self.trivial:
            return t
        if not self._lo <= t < self._hi:
            self._cover(t)
        i = bisect_right(self._starts, t) - 1
        if i < 0:
            return self._base
        end = self._ends[i]
        return self._cum[i] + ((t if t < end else end) - self._starts[i])

    def at_position(self, pos: int, not_before: int) -> int:
        """The earliest instant >= `not_before` whose position is `pos`."""
        if self.trivial:
            return pos
        while True:
            if self._cum_end and pos <= self._cum_end[-1]:
                i = bisect_left(self._cum_end, pos)
                t = self._starts[i] + (pos - self._cum[i])
                return t if t > not_before else not_before
            first, last = self._years  # type: ignore[misc]
            if last - first > _MAX_YEARS:
                raise CalendarError(f"calendar {self.name!r}: span beyond {_MAX_YEARS} years")
            # Extending keeps earlier positions: the table only grows at the end.
            self._build(first, last + max(2, (last - first)))

    def next_open(self, t: int) -> int:
        """`t` if the calendar is open then, else the instant it next opens."""
        if self.trivial or self.is_open(t):
            return t
        return self.at_position(self.position(t) + 1, t) - 1

    def add_days(self, start: int, days: int) -> int:
        """The same local time of day on the `days`-th open date after the start's.

        A start outside open time counts from the next opening. An open date is
        a local date with any open time. When that date's open time does not
        include the time of day, the due is clamped into it: its first opening
        if the time comes earlier, else the end of the last open interval
        before the time (a shorter day, or a lunch break).
        """
        if days <= 0:
            return start
        begin = self.next_open(start)
        local = datetime.fromtimestamp(begin, self.zone)
        day = local.date()
        tod = local.hour * 3600 + local.minute * 60 + local.second
        one = timedelta(days=1)
        position = self.position
        lo = self._wall_instant(wall_seconds(day + one))
        found = 0
        for _ in range(366 * _MAX_YEARS):
            day += one
            hi = self._wall_instant(wall_seconds(day + one))
            if position(hi) > position(lo):
                found += 1
                if found == days:
                    return self._clamp(lo, self._wall_instant(wall_seconds(day, tod)))
            lo = hi
        raise CalendarError(f"calendar {self.name!r}: no {days} open days within {_MAX_YEARS} years")

    def _clamp(self, day_start: int, t: int) -> int:
        """`t` if open then or just closing; else the end of the open time before it since
        `day_start`; else, with none, the next opening."""
        if self.is_open(t) or (t > day_start and self.is_open(t - 1)):
            return t
        pos = self.position(t)
        if pos == self.position(day_start):
            return self.next_open(t)
        return self.at_position(pos, day_start)

    def _wall_instant(self, wall: int) -> int:
        """UTC epoch seconds of naive local wall seconds (the earlier one when a time occurs twice;
        a time skipped by a DST change moves forward by the change)."""
        days, seconds = divmod(wall, DAY)
        naive = datetime.combine(date.fromordinal(days + _EPOCH_ORDINAL), datetime.min.time()) + timedelta(
            seconds=seconds
        )
        return int(naive.replace(tzinfo=self.zone).timestamp())

    def is_open(self, t: int) -> bool:
        return self.position(t + 1) > self.position(t)

    def elapsed(self, start: int, end: int, pauses: Sequence[Interval] = ()) -> int:
        """Open seconds in [start, end), less those inside `pauses` (sorted, disjoint)."""
        if end <= start:
            return 0
        pos = self.position
        total = pos(end) - pos(start)
        for p_start, p_end in pauses:
            if p_end <= start:
                continue
            if p_start >= end:
                break
            total -= pos(p_end if p_end < end else end) - pos(p_start if p_start > start else start)
        return total

    def add(self, start: int, seconds: int, pauses: Sequence[Interval] = ()) -> int:
        """The instant at which `seconds` of open, unpaused time after `start` are used up."""
        if seconds <= 0:
            return start
        cur, remaining = start, seconds
        for p_start, p_end in pauses:
            if p_end <= cur:
                continue
            if p_start > cur:
                available = self.position(p_start) - self.position(cur)
                if available >= remaining:
                    break
                remaining -= available
            cur = p_end
        return self.at_position(self.position(cur) + remaining, cur)


def merge_pauses(pauses: Iterable[Interval]) -> list[Interval]:
    """Sorted, disjoint pause intervals."""
    return _merge(pauses)
