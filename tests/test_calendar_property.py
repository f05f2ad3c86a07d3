"""Business-time arithmetic against the minute-by-minute oracle: random calendars, named DST edge cases."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from functools import cache
from zoneinfo import ZoneInfo

import holidays as holidays_lib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.calendar import Calendar, WeeklyInterval
from engine.rulefile import load_texts
from tests import oracle

H = 3600
DAY = 86_400
WEEK_MINUTES = 7 * 1440
FIRST, LAST = datetime(2025, 1, 1, tzinfo=UTC), datetime(2028, 1, 1, tzinfo=UTC)
DST_ZONES = tuple(ZoneInfo(name) for name in (
    "Europe/Berlin", "America/Denver", "America/New_York", "Australia/Sydney", "Europe/London",
))
FIXED_ZONES = (
    UTC,
    timezone(timedelta(hours=5, minutes=30)),
    timezone(-timedelta(hours=3, minutes=30)),
    timezone(timedelta(hours=13, minutes=45)),
)
ZONES = (*DST_ZONES, *FIXED_ZONES)
# Fixed seed, no example database: the same examples on every run and machine.
PROPERTY = settings(
    derandomize=True, database=None, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


def epoch(value: datetime) -> int:
    return int(value.timestamp())


def local(zone: tzinfo, day: date, hour: int = 0, minute: int = 0) -> int:
    """UTC epoch seconds of a local wall time (the first one, if it occurs twice)."""
    return epoch(datetime.combine(day, time(hour, minute), tzinfo=zone))


@cache
def transitions(zone: tzinfo) -> tuple[int, ...]:
    """UTC instants at which `zone` changes offset in 2025-2027, to the minute."""
    found = []
    t, end = epoch(FIRST), epoch(LAST)
    offset = datetime.fromtimestamp(t, zone).utcoffset()
    while t < end:
        if datetime.fromtimestamp(t + H, zone).utcoffset() != offset:
            m = t
            while datetime.fromtimestamp(m, zone).utcoffset() == offset:
                m += 60
            found.append(m)
            offset = datetime.fromtimestamp(m, zone).utcoffset()
        t += H
    return tuple(found)


# -- strategies -----------------------------------------------------------------------


def _minutes(lo: int, hi: int, step: int = 1) -> st.SearchStrategy[int]:
    """Seconds on multiples of `step` minutes within [lo, hi] minutes."""
    return st.integers(lo // step, hi // step).map(lambda m: m * step * 60)


@st.composite
def day_shifts(draw) -> list[tuple[int, int]]:
    """One day's open intervals (seconds after midnight; an end past 86400 is a night shift)."""
    shape = draw(st.sampled_from(["day", "split", "night", "random"]))
    if shape == "day":
        start = draw(_minutes(6 * 60, 11 * 60, 15))
        return [(start, start + draw(_minutes(60, 10 * 60, 15)))]
    if shape == "split":  # a lunch break
        start = draw(_minutes(7 * 60, 10 * 60, 15))
        lunch = draw(_minutes(11 * 60 + 30, 13 * 60, 15))
        back = lunch + draw(_minutes(30, 90, 15))
        return [(start, lunch), (back, back + draw(_minutes(2 * 60, 6 * 60, 15)))]
    if shape == "night":
        start = draw(_minutes(18 * 60, 23 * 60, 30))
        return [(start, DAY + draw(_minutes(0, 8 * 60, 30)))]
    count = draw(st.integers(1, 3))
    marks = sorted(draw(st.sets(st.integers(0, 1440), min_size=2 * count, max_size=2 * count)))
    shifts = [(marks[2 * i] * 60, marks[2 * i + 1] * 60) for i in range(count)]
    if shifts[-1][1] < DAY and draw(st.booleans()):  # the last one runs past midnight
        start, _ = shifts[-1]
        shifts[-1] = (start, DAY + draw(_minutes(1, 10 * 60)))
    return shifts


@dataclass
class Case:
    spec: oracle.Spec
    start: int
    minutes: int  # the duration to add
    pauses: list[tuple[int, int]]
    probe: int  # a second instant, for elapsed

    def calendar(self) -> Calendar:
        spec = self.spec
        closures: dict[date, list[tuple[int, int]]] = {}
        for day, start, end in spec.closures:
            closures.setdefault(day, []).append((start, end))
        openings: dict[date, list[tuple[int, int]]] = {}
        for day, start, end in spec.openings:
            openings.setdefault(day, []).append((start, end))
        holiday_set = spec.holidays
        return Calendar(
            "prop", spec.zone,
            [WeeklyInterval(*w) for w in spec.weekly],
            holidays=lambda year: {d for d in holiday_set if d.year == year},
            closures=closures, always=spec.always, openings=openings,
        )


@st.composite
def starts(draw, zone: tzinfo) -> int:
    """A minute mark in 2025-2027, often near a DST change, on a weekend or near local midnight."""
    kind = draw(st.sampled_from(["dst", "dst", "weekend", "midnight", "any"]))
    days = (LAST - FIRST).days
    day = FIRST.date() + timedelta(days=draw(st.integers(0, days - 8)))
    if kind == "dst" and transitions(zone):
        return draw(st.sampled_from(transitions(zone))) + draw(_minutes(-3 * 1440, 1440))
    if kind == "weekend":
        saturday = day + timedelta(days=(5 - day.weekday()) % 7 + draw(st.integers(0, 1)))
        return local(zone, saturday) + draw(_minutes(0, 1439))
    if kind == "midnight":
        return local(zone, day) + draw(_minutes(-90, 90))
    return epoch(FIRST) + draw(_minutes(0, days * 1440 - 1))


def _several(draw, strategy: st.SearchStrategy, most: int) -> list:
    """0..most draws, the count chosen evenly (hypothesis alone favours empty lists)."""
    return [draw(strategy) for _ in range(draw(st.sampled_from(range(most + 1))))]


@st.composite
def cases(draw, zone: tzinfo, max_days_of_open: int = 14) -> Case:
    start = draw(starts(zone))
    near = datetime.fromtimestamp(start, zone).date()
    always = draw(st.integers(0, 7)) == 3  # about one in eight (0 and 7 come up often)
    weekly: list[tuple[int, int, int]] = []
    if not always:
        for weekday in sorted(draw(st.sets(st.integers(0, 6), min_size=1, max_size=7))):
            weekly += [(weekday, a, b) for a, b in draw(day_shifts())]

    def days_after(first: int, last: int) -> st.SearchStrategy[date]:
        return st.integers(first, last).map(lambda n: near + timedelta(days=n))

    holidays = frozenset(_several(draw, days_after(-2, 2 * max_days_of_open), 4))
    closures = []
    for day in _several(draw, days_after(-1, 7), 3):
        # Whole hours plus a few minutes, and short, medium or long: small
        # random minutes would mostly close the night, when nothing is open.
        begin = draw(st.integers(0, 23)) * H + draw(st.sampled_from([0, 15, 30, 47])) * 60
        low, high = draw(st.sampled_from([(1, 59), (60, 240), (241, 1440)]))
        closures.append((day, begin, min(DAY, begin + draw(_minutes(low, high)))))
    openings = []
    for day in sorted(set(_several(draw, days_after(-1, max_days_of_open), 3))):
        # A date's own hours (an extra Saturday, a short Christmas Eve), often on a holiday.
        openings += [(day, a, b) for a, b in draw(day_shifts())]
    if openings and draw(st.booleans()):
        holidays = holidays | {openings[0][0]}
    spec = oracle.Spec(zone, tuple(weekly), holidays, tuple(closures), always, tuple(openings))
    # Up to `max_days_of_open` days' worth of this calendar's open time (weekly
    # intervals may overlap; the sum still bounds the real time to scan).
    per_week = WEEK_MINUTES if always else sum(b - a for _, a, b in weekly) // 60
    longest = max(1, min(max_days_of_open * 1440, per_week * max_days_of_open // 7))
    # Minutes, hours, days or weeks, evenly: hypothesis alone favours small numbers.
    low, high = draw(st.sampled_from([(1, 60), (61, 480), (481, 3 * 1440), (3 * 1440 + 1, longest)]))
    minutes = draw(st.integers(min(low, longest), min(high, longest)))
    raw = []
    for begin in _several(draw, _minutes(-720, 2 * max_days_of_open * 1440), 3):
        raw.append((start + begin, start + begin + draw(_minutes(1, 3 * 1440))))
    pauses: list[tuple[int, int]] = []
    for a, b in sorted(raw):  # sorted and disjoint, as the engine requires
        if pauses and a <= pauses[-1][1]:
            pauses[-1] = (pauses[-1][0], max(b, pauses[-1][1]))
        else:
            pauses.append((a, b))
    probe = start + draw(_minutes(0, (max_days_of_open + 7) * 1440))
    return Case(spec, start, minutes, pauses, probe)


# -- properties -----------------------------------------------------------------------


# Every zone gets its share of examples (hypothesis draws unevenly from a list).
@pytest.mark.parametrize("zone", ZONES, ids=str)
@settings(PROPERTY, max_examples=12)
@given(data=st.data())
def test_add_and_elapsed_agree_with_the_oracle(zone: tzinfo, data: st.DataObject):
    case = data.draw(cases(zone))
    calendar, spec, a, d = case.calendar(), case.spec, case.start, case.minutes * 60
    due = calendar.add(a, d, case.pauses)
    assert due == oracle.add(spec, a, d, case.pauses)
    assert calendar.elapsed(a, due, case.pauses) == d
    probe = min(case.probe, due + DAY)
    assert calendar.elapsed(a, probe, case.pauses) == oracle.elapsed(spec, a, probe, case.pauses)
    assert calendar.is_open(a) == oracle.is_open(spec, a)


@pytest.mark.parametrize("zone", ZONES, ids=str)
@settings(PROPERTY, max_examples=16)
@given(data=st.data(), jitter=st.integers(0, 59), cut=st.integers(0, 10**6), more=st.integers(0, 10**6))
def test_add_is_monotone_and_elapsed_is_additive(zone: tzinfo, data: st.DataObject, jitter: int, cut: int,
                                                  more: int):
    case = data.draw(cases(zone))
    # Engine against itself, so instants need not be whole minutes here.
    calendar, a, d = case.calendar(), case.start + jitter, case.minutes * 60 + jitter
    pauses = case.pauses
    assert calendar.add(a, 0, pauses) == a
    due = calendar.add(a, d, pauses)
    assert calendar.elapsed(a, due, pauses) == d
    assert calendar.elapsed(a, due - 1, pauses) == d - 1  # the earliest such instant
    shorter = calendar.add(a, cut % d, pauses)
    assert a <= shorter < due
    assert calendar.add(a, d + 1 + more, pauses) > due
    b = a + cut % max(1, due - a + 1)
    c = due + more
    assert calendar.elapsed(a, b, pauses) + calendar.elapsed(b, c, pauses) == calendar.elapsed(a, c, pauses)
    assert calendar.elapsed(c, a, pauses) == 0


@pytest.mark.parametrize("zone", ZONES, ids=str)
@settings(PROPERTY, max_examples=6)
@given(data=st.data(), days=st.integers(1, 6))
def test_business_days_agree_with_the_oracle(zone: tzinfo, data: st.DataObject, days: int):
    """'N business days' (with its pauses) against the definition, minute by minute."""
    case = data.draw(cases(zone))
    calendar, spec, a = case.calendar(), case.spec, case.start
    plain = calendar.add_days(a, days)
    assert plain == oracle.add_days(spec, a, days)
    budget = calendar.elapsed(a, plain)
    assert budget == oracle.elapsed(spec, a, plain)
    paused = calendar.add(a, budget, case.pauses)
    assert paused == oracle.add(spec, a, budget, case.pauses)
    assert (plain == a) is False and calendar.add_days(a, days + 1) > plain


# -- named edge cases -----------------------------------------------------------------

BERLIN, NEW_YORK = ZoneInfo("Europe/Berlin"), ZoneInfo("America/New_York")
NIGHTS = tuple((d, 22 * H, 30 * H) for d in range(7))  # daily 22:00-06:00
DAYS = tuple((d, 9 * H, 17 * H) for d in range(7))  # daily 09:00-17:00


def _at(text: str) -> int:
    return epoch(datetime.fromisoformat(text.replace("Z", "+00:00")))


def _calendar(spec: oracle.Spec) -> Calendar:
    return Case(spec, 0, 0, [], 0).calendar()


@pytest.mark.parametrize(
    ("case", "zone", "weekly", "opens", "closes", "hours"),
    [
        ("Berlin spring forward, night shift", BERLIN, NIGHTS, "2026-03-28T21:00Z", "2026-03-29T04:00Z", 7),
        ("Berlin fall back, night shift", BERLIN, NIGHTS, "2026-10-24T20:00Z", "2026-10-25T05:00Z", 9),
        ("New York spring forward, night", NEW_YORK, NIGHTS, "2026-03-08T03:00Z", "2026-03-08T10:00Z", 7),
        ("New York fall back, night", NEW_YORK, NIGHTS, "2026-11-01T02:00Z", "2026-11-01T11:00Z", 9),
        ("Berlin spring forward, day", BERLIN, DAYS, "2026-03-29T07:00Z", "2026-03-29T15:00Z", 8),
        ("Berlin fall back, day", BERLIN, DAYS, "2026-10-25T08:00Z", "2026-10-25T16:00Z", 8),
        ("New York spring forward, day", NEW_YORK, DAYS, "2026-03-08T13:00Z", "2026-03-08T21:00Z", 8),
        ("New York fall back, day", NEW_YORK, DAYS, "2026-11-01T14:00Z", "2026-11-01T22:00Z", 8),
    ],
)
def test_dst_change_days(case, zone, weekly, opens, closes, hours):
    spec = oracle.Spec(zone, weekly)
    calendar = _calendar(spec)
    opens, closes = _at(opens), _at(closes)
    assert closes - opens == hours * H, case
    # The whole shift, seen from two hours either side.
    assert calendar.elapsed(opens - 2 * H, closes + 2 * H) == hours * H, case
    assert oracle.elapsed(spec, opens - 2 * H, closes + 2 * H) == hours * H, case
    assert calendar.add(opens - 2 * H, hours * H) == closes, case
    assert calendar.add(opens, 1) == opens + 1, case
    assert not calendar.is_open(opens - 1) and calendar.is_open(opens), case
    assert calendar.is_open(closes - 1) and not calendar.is_open(closes), case
    # One more second is the first second of the next day's shift.
    wall = datetime.fromtimestamp(opens, zone)
    next_open = local(zone, wall.date() + timedelta(days=1), wall.hour)
    assert calendar.add(opens, hours * H + 1) == next_open + 1, case


def test_holidays_on_dst_change_days_close_23_and_25_hours():
    spec = oracle.Spec(NEW_YORK, always=True, holidays=frozenset({date(2026, 3, 8), date(2026, 11, 1)}))
    calendar = _calendar(spec)
    a, b = _at("2026-03-01T00:00Z"), _at("2026-12-01T00:00Z")
    assert calendar.elapsed(a, b) == b - a - 23 * H - 25 * H
    # Closed from local midnight (EST, then EDT) to local midnight (EDT, then EST).
    assert calendar.add(_at("2026-03-08T05:00Z") - 1, 2) == _at("2026-03-09T04:00Z") + 1
    assert calendar.add(_at("2026-11-01T04:00Z") - 1, 2) == _at("2026-11-02T05:00Z") + 1


@pytest.mark.parametrize("warm_first", [None, 2031, 2034])
def test_ten_years_of_office_hours(warm_first):
    """Ten years Mon-Fri 09:00-17:00 Berlin with German holidays, counted day by day."""
    public = holidays_lib.country_holidays("DE", years=range(2025, 2035))
    calendar = Calendar(
        "office", BERLIN, [WeeklyInterval(d, 9 * H, 17 * H) for d in range(5)],
        holidays=lambda year: set(holidays_lib.country_holidays("DE", years=year)),
    )
    if warm_first is not None:  # grow the calendar's table from a later year backwards
        calendar.elapsed(local(BERLIN, date(warm_first, 6, 1)), local(BERLIN, date(warm_first, 7, 1)))
    workdays = [
        date(2025, 1, 1) + timedelta(days=n) for n in range((date(2035, 1, 1) - date(2025, 1, 1)).days)
    ]
    workdays = [d for d in workdays if d.weekday() < 5 and d not in public]
    a, b = local(BERLIN, date(2025, 1, 1)), local(BERLIN, date(2035, 1, 1))
    assert calendar.elapsed(a, b) == len(workdays) * 8 * H
    assert calendar.add(a, len(workdays) * 8 * H) == local(BERLIN, workdays[-1], 17)
    assert calendar.add(a, len(workdays) * 8 * H - 1) == local(BERLIN, workdays[-1], 17) - 1
    middle = local(BERLIN, date(2030, 3, 31), 12)  # the Sunday of the 2030 spring change
    assert calendar.elapsed(a, middle) + calendar.elapsed(middle, b) == calendar.elapsed(a, b)


OFFICE = oracle.Spec(BERLIN, tuple((d, 9 * H, 17 * H) for d in range(5)))  # Mon-Fri 09:00-17:00


@pytest.mark.parametrize(
    ("case", "pause", "seconds", "due"),
    [
        ("used up exactly as the pause starts", ("09:00", "11:00"), 2 * H, "2026-06-01T09:00Z"),
        ("one second more waits out the pause", ("09:00", "11:00"), 2 * H + 1, "2026-06-01T11:00:01Z"),
        ("paused at the start", ("06:00", "10:00"), H, "2026-06-01T11:00Z"),
        ("pause over the evening changes nothing", ("15:00", "23:00"), 8 * H, "2026-06-01T15:00Z"),
        ("pause into the next morning", ("14:00", "08:00"), 8 * H, "2026-06-02T09:00Z"),
    ],
)
def test_pauses(case, pause, seconds, due):
    """Monday 2026-06-01 09:00 Berlin (07:00Z), office hours, one pause given in UTC."""
    start = _at("2026-06-01T07:00Z")
    begin, end = (_at(f"2026-06-01T{hhmm}Z") for hhmm in pause)
    pauses = [(begin, end if end > begin else end + DAY)]
    calendar = _calendar(OFFICE)
    assert calendar.add(start, seconds, pauses) == _at(due), case
    assert calendar.elapsed(start, _at(due), pauses) == seconds, case
    if seconds % 60 == 0:
        assert oracle.add(OFFICE, start, seconds, pauses) == _at(due), case


# -- the rule-file path -------------------------------------------------------------

RULE_FILE = """\
version: 1
calendars:
  support:
    timezone: Europe/Berlin
    hours:
      mon-fri: ["08:00-12:00", "13:00-17:30"]
      sat: ["22:00-06:00"]
    holidays:
      country: DE
      subdivision: BY
      dates: [2026-12-31]
      closures:
        - date: 2026-12-23
          hours: ["12:00-24:00"]
  night:
    timezone: "-03:30"
    hours:
      daily: ["20:00-04:00"]
  yearend:
    timezone: America/New_York
    hours:
      mon-fri: ["08:00-18:00"]
      sat: ["22:00-02:00"]
    holidays:
      yearly: ["12-24..01-01", "07-04", "02-29"]
      ranges: ["2026-11-26..2026-11-27", "2027-03-12..2027-03-15"]
      openings:
        - {date: 2026-12-31, hours: ["10:00-14:00"]}
        - {date: 2027-03-14, hours: ["01:00-04:00"]}
        - {date: 2026-11-28, hours: ["20:00-01:00"]}
"""


def _rule_file_specs() -> dict[str, oracle.Spec]:
    bavaria = set(holidays_lib.country_holidays("DE", subdiv="BY", years=range(2025, 2029)))
    support = oracle.Spec(
        BERLIN,
        tuple((d, 8 * H, 12 * H) for d in range(5)) + tuple((d, 13 * H, 17 * H + 1800) for d in range(5))
        + ((5, 22 * H, 30 * H),),
        holidays=frozenset(bavaria | {date(2026, 12, 31)}),
        closures=((date(2026, 12, 23), 12 * H, DAY),),
    )
    minus_0330 = timezone(-timedelta(hours=3, minutes=30))
    night = oracle.Spec(minus_0330, tuple((d, 20 * H, 28 * H) for d in range(7)))
    closed: set[date] = set()
    for year in range(2025, 2030):
        closed |= {date(year, 12, 24) + timedelta(days=n) for n in range(9)}
        closed.add(date(year, 7, 4))
    closed |= {date(2028, 2, 29), date(2026, 11, 26), date(2026, 11, 27)}
    closed |= {date(2027, 3, 12) + timedelta(days=n) for n in range(4)}
    yearend = oracle.Spec(
        NEW_YORK,
        tuple((d, 8 * H, 18 * H) for d in range(5)) + ((5, 22 * H, 26 * H),),
        holidays=frozenset(closed),
        openings=(
            (date(2026, 12, 31), 10 * H, 14 * H),
            (date(2027, 3, 14), 1 * H, 4 * H),  # across the spring-forward gap
            (date(2026, 11, 28), 20 * H, 25 * H),  # an extra Saturday evening, past midnight
        ),
    )
    return {"support": support, "night": night, "yearend": yearend}


@pytest.mark.parametrize(
    ("name", "start", "minutes"),
    [
        ("support", "2026-12-22T10:17Z", 9 * 60),  # into the closure and past Christmas
        ("support", "2026-12-30T15:00Z", 5 * 60),  # over the extra holiday and New Year
        ("support", "2026-10-23T15:00Z", 40 * 60),  # the fall-back Saturday night shift
        ("support", "2026-03-27T16:00Z", 45 * 60),  # the spring-forward Saturday night shift
        ("night", "2026-06-30T23:59Z", 20 * 60),
        ("yearend", "2026-12-22T20:00Z", 14 * 60),  # closed across the year end, open on Dec 31
        ("yearend", "2027-12-23T15:00Z", 8 * 60),  # the yearly closure of the next year end
        ("yearend", "2026-11-25T20:00Z", 9 * 60),  # a range, then an extra Saturday evening
        ("yearend", "2027-03-11T21:00Z", 4 * 60),  # a range around an opening on the DST day
        ("yearend", "2028-02-25T21:00Z", 20 * 60),  # Feb 29 closed in a leap year
    ],
)
def test_rule_file_calendar_matches_the_oracle(name, start, minutes):
    calendar = load_texts([("x.yaml", RULE_FILE)]).calendars[name]
    spec = _rule_file_specs()[name]
    a = _at(start)
    due = calendar.add(a, minutes * 60)
    assert due == oracle.add(spec, a, minutes * 60)
    assert calendar.elapsed(a, due + 3 * DAY) == oracle.elapsed(spec, a, due + 3 * DAY)
    pauses = [(a + 60 * H, a + 80 * H)]
    assert calendar.add(a, minutes * 60, pauses) == oracle.add(spec, a, minutes * 60, pauses)
    for days in (1, 2, 5):
        assert calendar.add_days(a, days) == oracle.add_days(spec, a, days), days


# -- next reply over random timelines ------------------------------------------------------

REPLY_SPEC = oracle.Spec(
    BERLIN, tuple((d, 9 * H, 17 * H) for d in range(5)),
    holidays=frozenset({date(2026, 12, 25), date(2027, 1, 1)}),
    openings=((date(2026, 12, 24), 9 * H, 12 * H),),
)
REPLY_RULES = """\
version: 1
calendars:
  office:
    timezone: Europe/Berlin
    hours: {{mon-fri: ["09:00-17:00"]}}
    holidays: {{dates: [2026-12-25, 2027-01-01], openings: [{{date: 2026-12-24, hours: ["09:00-12:00"]}}]}}
policies:
  - id: p
    calendar: office
    targets:
      next_reply: {{within: {hours}h, pause_on: [on_hold]}}
{first_response}"""


@cache
def _reply_rules(hours: int, with_first_response: bool):
    extra = "      first_response: 1h\n" if with_first_response else ""
    return load_texts([("reply.yaml", REPLY_RULES.format(hours=hours, first_response=extra))])


def _oracle_next_reply(created, events, now, budget, creation_counts):
    """The next-reply clock from its definition: cycles from the timeline, minutes from the oracle."""
    spans = [(created, "open")]
    for at, kind, _ in events:
        if kind == "status" and _ != spans[-1][1]:
            spans.append((at, _))

    def status_at(t):
        return [s for a, s in spans if a <= t][-1]

    entries = [a for i, (a, s) in enumerate(spans) if s == "solved" and i and spans[i - 1][1] != "solved"]
    open_since = created if creation_counts else None
    answered, last = creation_counts, None
    timeline = sorted([(a, 0, "solve") for a in entries] + [(a, 1, who) for a, k, who in events
                                                            if k == "comment"])
    for at, _, what in timeline:
        if what == "solve":
            if open_since is not None and at >= open_since:
                last, open_since = (open_since, at), None
            answered = True
        elif what == "agent":
            if open_since is not None:
                last, open_since = (open_since, at), None
            answered = True
        elif what == "customer" and open_since is None and answered:
            open_since = at
    if open_since is not None:
        cycle = (open_since, open_since) if spans[-1][1] == "solved" else (open_since, None)
    elif last is None:
        return None
    else:
        cycle = last
    start, achieved = cycle
    until = now if achieved is None else achieved
    paused_minutes = [m for m in range(start, until, 60) if status_at(m) == "on_hold"]
    pauses = [(m, m + 60) for m in paused_minutes]
    due = oracle.add(REPLY_SPEC, start, budget, pauses)
    if achieved is not None:
        in_time = achieved <= due or all(status_at(m) == "on_hold" for m in range(due, achieved, 60))
        return (due, "met" if in_time else "breached")
    if spans[-1][1] == "on_hold":
        since = spans[-1][0]
        return (due, "breached") if due < since else (None, "paused")
    return (due, "breached" if due < now else "running")


@st.composite
def reply_timelines(draw):
    created = draw(starts(BERLIN))
    t, events = created, []
    for _ in range(draw(st.integers(0, 9))):
        t += draw(_minutes(0, 2 * 1440, 1))
        kinds = ["customer", "customer", "agent", "private", "on_hold", "open", "solved"]
        kind = draw(st.sampled_from(kinds))
        if kind in ("customer", "agent"):
            events.append((t, "comment", kind))
        elif kind == "private":
            events.append((t, "private", "agent"))
        else:
            events.append((t, "status", kind))
    now = t + draw(_minutes(0, 2 * 1440))
    return created, events, now


@settings(PROPERTY, max_examples=60)
@given(timeline=reply_timelines(), hours=st.integers(1, 12), with_first_response=st.booleans())
def test_next_reply_agrees_with_the_oracle(timeline, hours, with_first_response):
    from engine.evaluate import evaluate
    from engine.ticket import Event, Ticket

    created, events, now = timeline
    statuses = [value for _, kind, value in events if kind == "status"]
    ticket = Ticket(
        id="1", status=statuses[-1] if statuses else "open", created_at=created, priority="normal",
        events=tuple(
            Event(at, "status", status=value) if kind == "status"
            else Event(at, "comment", author=value, public=kind == "comment")
            for at, kind, value in events
        ),
    )
    result = evaluate(ticket, _reply_rules(hours, with_first_response), now).targets.get("next_reply")
    expected = _oracle_next_reply(created, events, now, hours * H, not with_first_response)
    assert (None if result is None else (result.due, result.state)) == expected


# -- calendars chosen by a ticket field ------------------------------------------------------

LOS_ANGELES, AMSTERDAM, BRISBANE = (ZoneInfo(n) for n in ("America/Los_Angeles", "Europe/Amsterdam",
                                                           "Australia/Brisbane"))
REGIONS = {
    "amer": oracle.Spec(LOS_ANGELES, tuple((d, 5 * H, 17 * H) for d in range(5)),
                        holidays=frozenset({date(2026, 11, 26), date(2026, 12, 25)})),
    "emea": oracle.Spec(AMSTERDAM, tuple((d, 8 * H, 18 * H) for d in range(5)),
                        holidays=frozenset(date(y, 12, 24) + timedelta(days=n)
                                           for y in range(2024, 2028) for n in range(9))),
    "apac": oracle.Spec(BRISBANE, tuple((d, 9 * H, 21 * H) for d in range(5)),
                        openings=((date(2026, 12, 19), 9 * H, 13 * H),)),
}
REGION_RULES = """\
version: 1
calendars:
  amer:
    timezone: America/Los_Angeles
    hours: {{mon-fri: ["05:00-17:00"]}}
    holidays: {{dates: [2026-11-26, 2026-12-25]}}
  emea:
    timezone: Europe/Amsterdam
    hours: {{mon-fri: ["08:00-18:00"]}}
    holidays: {{yearly: ["12-24..01-01"]}}
  apac:
    timezone: Australia/Brisbane
    hours: {{mon-fri: ["09:00-21:00"]}}
    holidays: {{openings: [{{date: 2026-12-19, hours: ["09:00-13:00"]}}]}}
policies:
  - id: regional
    calendar: {{field: region, map: {{AMER: amer, EMEA: emea, APAC: apac}}, default: amer}}
    targets:
      first_response: {budget}
"""


@cache
def _region_rules(budget: str):
    return load_texts([("regions.yaml", REGION_RULES.format(budget=budget))])


@settings(PROPERTY, max_examples=60)
@given(
    created=starts(AMSTERDAM),
    region=st.sampled_from(["AMER", "EMEA", "APAC", "emea", "Apac", None, "LATAM", ["APAC"]]),
    hours=st.integers(1, 40),
    days=st.integers(0, 4),
)
def test_region_calendars_agree_with_the_oracle(created, region, hours, days):
    from engine.evaluate import evaluate
    from engine.ticket import Ticket

    name = {"amer": "amer", "emea": "emea", "apac": "apac"}.get(
        (region[0] if isinstance(region, list) else region or "").lower(), "amer"
    )
    budget = f"{days} business days" if days else f"{hours}h"
    fields = {} if region is None else {"region": region}
    ticket = Ticket(id="1", status="open", created_at=created, priority="normal", fields=fields)
    result = evaluate(ticket, _region_rules(budget), created).targets["first_response"]
    spec = REGIONS[name]
    expected = oracle.add_days(spec, created, days) if days else oracle.add(spec, created, hours * H)
    assert (result.calendar, result.due) == (name, expected)
