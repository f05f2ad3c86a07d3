"""Engine throughput on random CloudTalk tickets, with businesstimedelta as baseline and cross-check."""

from __future__ import annotations

import argparse
import platform
import random
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from datetime import time as clock_time
from pathlib import Path

import businesstimedelta
import holidays
import pytz

from engine.decision import iso_utc
from engine.evaluate import evaluate
from engine.rulefile import load_rules
from engine.ruleset import RuleSet
from engine.ticket import Event, Ticket

RULES = Path(__file__).resolve().parent.parent / "rules" / "examples" / "cloudtalk.yaml"
SEED = 20260101
YEAR_START = int(datetime(2026, 1, 1, tzinfo=UTC).timestamp())
YEAR_END = int(datetime(2027, 1, 1, tzinfo=UTC).timestamp())
HOUR, DAY = 3600, 86_400
GOAL_EVALUATIONS = 50_000  # per second, single core
GOAL_RATIO = 10

PLANS = ("basic", "professional", "advanced")
PRIORITIES = ("low", "normal", "high", "urgent", None)
# (subject, is it a non-production or how-to question that cloudtalk.yaml downgrades from P1?)
SUBJECTS = (
    ("Calls drop after 30 seconds", False),
    ("Cannot log in to the dashboard", False),
    ("Invoice shows the wrong VAT number", False),
    ("Number porting stuck since Monday", False),
    ("IVR plays the wrong greeting", False),
    ("Our staging numbers do not ring", True),
    ("Webhook to the staging server returns 500", True),
    ("How do I export call recordings?", True),
    ("how do i add a new agent", True),
)

# The first-response budget in office hours (Mon-Fri 09:00-17:00 Bratislava,
# Slovak holidays) per plan and effective priority, as cloudtalk.yaml states it;
# None: no office-hours target (basic has none, advanced P1 is 24/7).
OFFICE_HOURS_BUDGET: dict[str, dict[str, int | None]] = {
    "basic": {"urgent": None, "high": None, "normal": None, "low": None},
    "professional": {"urgent": 3, "high": 6, "normal": 9, "low": 9},
    "advanced": {"urgent": None, "high": 3, "normal": 6, "low": 6},
}


@dataclass(slots=True)
class Case:
    ticket: Ticket
    now: int
    office_hours: int | None  # the expected first-response budget in office hours, if any


def _events(rng: random.Random, created: int) -> tuple[list[Event], str]:
    events, status, at = [], "new", created
    for _ in range(rng.randint(0, 6)):
        at += rng.randint(60, 2 * DAY)
        if rng.random() < 0.6:
            author = rng.choice(("customer", "agent"))
            events.append(Event(at, "comment", author=author, public=rng.random() < 0.85))
            if author == "agent" and status == "new":
                status = "open"
        else:
            status = rng.choice(("open", "pending", "on_hold", "solved"))
            events.append(Event(at, "status", status=status))
    return events, status


def make_cases(count: int, seed: int = SEED) -> list[Case]:
    """`count` random tickets over 2026, each with a `now` after its creation."""
    rng = random.Random(seed)
    cases = []
    for number in range(count):
        plan, priority = rng.choice(PLANS), rng.choice(PRIORITIES)
        subject, not_p1 = rng.choice(SUBJECTS)
        created = rng.randrange(YEAR_START, YEAR_END)
        events, status = _events(rng, created)
        ticket = Ticket(
            id=str(number + 1), status=status, created_at=created, priority=priority, subject=subject,
            fields={"plan": plan}, events=tuple(events),
        )
        effective = "normal" if priority is None or (priority == "urgent" and not_p1) else priority
        now = created + rng.randint(0, 10 * DAY)
        cases.append(Case(ticket, now, OFFICE_HOURS_BUDGET[plan][effective]))
    return cases


def best_of(runs: int, work: Callable[[], object]) -> float:
    """The shortest of `runs` timed calls of `work`, after one untimed warm-up call."""
    work()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return min(times)


def office_rule() -> businesstimedelta.Rule:
    """The cloudtalk `office` calendar in businesstimedelta's terms (pytz zone, as it requires)."""
    zone = pytz.timezone("Europe/Bratislava")
    workdays = businesstimedelta.WorkDayRule(
        start_time=clock_time(9), end_time=clock_time(17), working_days=[0, 1, 2, 3, 4], tz=zone
    )
    closed = businesstimedelta.HolidayRule(holidays.country_holidays("SK"), tz=zone)
    return businesstimedelta.Rules([workdays, closed])


def cross_check(
    cases: list[Case], ours: dict[str, int | None], theirs: list[datetime]
) -> tuple[int, list[str]]:
    """(agreements, one line per disagreement naming the ticket)."""
    agreed, lines = 0, []
    for case, their_due in zip(cases, theirs, strict=True):
        ticket, mine = case.ticket, ours[case.ticket.id]
        their = int(their_due.timestamp())
        if mine == their:
            agreed += 1
            continue
        lines.append(
            f"  ticket {ticket.id}: plan={ticket.fields['plan']} priority={ticket.priority}"
            f" subject={ticket.subject!r} created={iso_utc(ticket.created_at)}"
            f" budget={case.office_hours}h: ours={iso_utc(mine)} businesstimedelta={iso_utc(their)}"
        )
    return agreed, lines


def first_response_due(rules: RuleSet, case: Case) -> int | None:
    """Our first-response due, if the decision used the office calendar with the expected budget."""
    result = evaluate(case.ticket, rules, case.now).targets.get("first_response")
    if result is None or result.calendar != "office" or result.budget != (case.office_hours or 0) * HOUR:
        return None
    return result.due


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.engine", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="2,000 tickets, one timed run each")
    parser.add_argument("--tickets", type=int, default=None, help="number of random tickets (default 20,000)")
    args = parser.parse_args(argv)
    count = args.tickets or (2_000 if args.quick else 20_000)
    runs = 1 if args.quick else 3

    rules = load_rules(RULES)
    cases = make_cases(count)
    pairs = [(case.ticket, case.now) for case in cases]
    # One thread in one process: the figures are per core.
    where = f"python {platform.python_version()} on {platform.machine()}, one thread"
    print(f"{where}: {count:,} tickets, best of {runs}")

    def evaluate_all() -> None:
        for ticket, now in pairs:
            evaluate(ticket, rules, now)

    def evaluate_and_serialise() -> None:
        for ticket, now in pairs:
            evaluate(ticket, rules, now).to_dict()

    ours = count / best_of(runs, evaluate_all)
    ours_dict = count / best_of(runs, evaluate_and_serialise)

    office = [case for case in cases if case.office_hours is not None]
    rule = office_rule()
    jobs = [
        (
            datetime.fromtimestamp(case.ticket.created_at, UTC),
            businesstimedelta.BusinessTimeDelta(rule, hours=case.office_hours),
        )
        for case in office
    ]
    theirs_due: list[datetime] = []

    def add_all() -> None:
        theirs_due[:] = [created + delta for created, delta in jobs]

    theirs = len(jobs) / best_of(runs, add_all)

    ours_due = {case.ticket.id: first_response_due(rules, case) for case in office}
    agreed, disagreements = cross_check(office, ours_due, theirs_due)
    ratio = ours / theirs
    print(f"evaluate():                     {ours:12,.0f} evaluations/s")
    print(f"evaluate() + Decision.to_dict(): {ours_dict:11,.0f} evaluations/s")
    print(f"businesstimedelta additions:    {theirs:12,.0f} additions/s ({len(jobs):,} office-hours tickets)")
    print(f"ratio ours / theirs:            {ratio:12,.1f}")
    print(f"cross-check first_response due: {agreed:,} of {len(jobs):,} agree")
    for line in disagreements:
        print(line)
    print(f"goal ours >= {GOAL_EVALUATIONS:,}/s: {'met' if ours >= GOAL_EVALUATIONS else 'NOT met'}")
    print(f"goal ratio >= {GOAL_RATIO}:         {'met' if ratio >= GOAL_RATIO else 'NOT met'}")
    return 1 if disagreements else 0


if __name__ == "__main__":
    sys.exit(main())
