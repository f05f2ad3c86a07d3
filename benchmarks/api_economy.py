"""Vendor API calls over a simulated day: calls per external webhook, per ticket, reads per write.

A day on the Zendesk sandbox (sandbox/zendesk.py, whose request log counts every
API call): new tickets from customers, agents' public replies, customers'
answers, agents setting tickets pending and solving them, and the webhooks
all of that sends, including the echoes of the bot's own writes. Every
webhook is normalised as the web process does (connectors.zendesk.events) and
queued in a SQLite store; the worker drains the queue under the default write
budget while the clock runs. Then a reconciliation lists the day's changes.

Run twice in one process: with the API economy (echoes settled without a
read, the budget asked before reading) and, as the baseline, the read-first
worker (Worker(economy=False)). The floor beside them: one read per new
ticket, the writes the bot really makes, nothing for anything else.

Then the scheduled re-checks: the same Zendesk day under rules with more
clocks than rules act on, the clock running on two days, once with a
re-check at every running target's due and warning time (the earlier
schedule, replayed on the stored decisions) and once at the rules' own
moments only: how many re-checks acted and what they cost.

Last, 1,000 due auto-closes swept under the default budget: the ticket/audit
reads per closed ticket (the due read and the post-close check) over the
snapshots the worker stored, over bare snapshots (a next check only), and,
as the baseline in the same process, with one full read per ticket (ticket
and every audit page) before and after the close (OneByOne).

    python -m benchmarks.api_economy [--tickets 200] [--seed 7] [--due 1000]
"""

from __future__ import annotations

import argparse
import base64
import json
import logging
import platform
import random
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from connectors.base import fetch_each
from connectors.freshdesk import FreshdeskConnector
from connectors.freshdesk.events import NormalizedEvent as FreshdeskEvent
from connectors.freshdesk.events import normalize as freshdesk_normalize
from connectors.zendesk import ZendeskConnector
from connectors.zendesk.events import NormalizedEvent, normalize
from engine.rulefile import load_rules, load_texts
from jobs.budget import WriteBudget
from jobs.reconcile import Reconciler
from jobs.worker import Worker
from sandbox import serve_in_thread
from sandbox.freshdesk import SANDBOX_API_KEY as FRESHDESK_KEY
from sandbox.freshdesk import create_sandbox as freshdesk_sandbox
from sandbox.zendesk import SANDBOX_TOKEN, create_sandbox
from sandbox.zendesk_state import CUSTOMER_ID, SANDBOX_EMAIL
from store import Store

RULES_PATH = Path(__file__).resolve().parent.parent / "rules" / "deskpilot.yaml"
RULES = load_rules(RULES_PATH)
# The re-check day: the starter rules with more clocks than rules act on (next reply, not escalated
# nor written to a field; resolution, whose warning is escalated but not its breach), a P1 breach
# escalation and the SLA fields of first response.
TIMED = load_texts([("timed.yaml", RULES_PATH.read_text().replace(
    "when: {fields: {plan: professional}}", "when: {fields: {plan: [professional, enterprise]}}").replace(
    "      first_response: {P1: 3h, P2: 6h, P3: 9h}\n",
    "      first_response: {P1: 3h, P2: 6h, P3: 9h}\n"
    "      next_reply: {P1: 2h, P2: 4h, P3: 8h}\n"
    "      resolution: {P1: {within: 8h, warn_after: 6h}, P2: {within: 16h, warn_after: 12h}, P3: 24h}\n",
) + """
escalations:
  - id: p1-late
    when: {priority: [urgent]}
    on: {breach: first_response}
    do: {add_tags: [p1_late]}
  - id: resolution-warning
    on: {warning: resolution}
    do: {add_tags: [resolution_warning]}
""")])
FIELDS = {name: int(i) for name, i in RULES.helpdesk["zendesk"].fields.items()}
START = datetime(2026, 11, 23, 7, 0, tzinfo=UTC)  # Monday 08:00 in Bratislava
RUN_ON = timedelta(days=2)
GOAL_PER_WEBHOOK = 0.8
GOAL_PER_MINUTE = 700
GOAL_READS_PER_CLOSE = 1.1
SUBJECTS = ["How do I record calls?", "Outage: calls drop", "Invoice question", "Cannot log in",
            "Feature request: export", "Our system is down", "Billing address change"]
PLANS = ["professional", "enterprise", "basic"]


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class Collector:
    """Stands in for the sandbox's webhook sender: keeps each delivery's body."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def send(self, body: bytes) -> None:
        self.bodies.append(body)

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return True


@dataclass
class Day:
    label: str
    tickets: int = 0
    external_webhooks: int = 0
    echo_webhooks: int = 0
    calls: Counter = field(default_factory=Counter)  # GET / PUT ... made by the bot
    echo_calls: int = 0  # bot calls made while only echoes were queued
    writes_made: int = 0  # ticket updates (PUT) by the bot
    reconcile_seen: int = 0
    reconcile_queued: int = 0
    reconcile_calls: int = 0
    rechecks: int = 0  # scheduled re-checks (next_check came) the worker evaluated
    rechecks_acted: int = 0  # ... of which decided something to do
    recheck_calls: int = 0  # vendor calls those re-checks (and their echoes) made
    seconds: float = 0.0

    @property
    def total(self) -> int:
        return sum(self.calls.values())

    @property
    def reads(self) -> int:
        return self.calls["GET"]


def _queue(store: Store, source: str, bodies: list[bytes], now: datetime) -> int:
    queued = 0
    for raw in bodies:
        body = json.loads(raw)
        if source == "zendesk":
            event = normalize(body, raw, {})
        else:
            event = freshdesk_normalize(body, raw, {}, now)
        if isinstance(event, (NormalizedEvent, FreshdeskEvent)):
            queued += store.enqueue(source=source, dedupe_key=event.dedupe_key, ticket_id=event.ticket_id,
                                    event_type=event.event_type, payload=event.payload(body), received_at=now)
    return queued


class ZendeskDay:
    source = "zendesk"

    def __init__(self, clock: Clock) -> None:
        self.app = create_sandbox(clock=clock)
        self.client = self.app.test_client()
        self.auth = (f"{SANDBOX_EMAIL}/token", SANDBOX_TOKEN)

    def connector(self, base: str):
        return ZendeskConnector("sandbox", SANDBOX_EMAIL, SANDBOX_TOKEN, api_url=base, field_ids=FIELDS,
                                sleep=lambda s: None, backoff_base=0)

    def create(self, rng: random.Random) -> int:
        answer = self.client.post("/api/v2/tickets.json", auth=self.auth, json={"ticket": {
            "subject": rng.choice(SUBJECTS), "requester_id": CUSTOMER_ID,
            "priority": rng.choice(["low", "normal", "high", "urgent", None]),
            "comment": {"body": "Hello, we need help.", "author_id": CUSTOMER_ID},
            "custom_fields": [{"id": FIELDS["plan"], "value": rng.choice(PLANS)}]}})
        return answer.json["ticket"]["id"]

    def done(self, tid: int) -> bool:
        return self.app.state.tickets[tid]["status"] in ("solved", "closed")

    def act(self, tid: int, step: str) -> None:
        body = {"agent": {"author": "agent", "body": "Thanks, looking into it.", "public": True},
                "customer": {"author": "customer", "body": "Any news?"},
                "pending": {"author": "agent", "body": "Could you send logs?", "status": "pending"},
                "solve": {"author": "agent", "body": "Fixed.", "status": "solved"}}[step]
        self.client.post(f"/_sandbox/tickets/{tid}/comments", json=body)


class FreshdeskDay:
    source = "freshdesk"

    def __init__(self, clock: Clock) -> None:
        self.app = freshdesk_sandbox(clock=clock)
        self.client = self.app.test_client()
        self.client.environ_base["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(
            f"{FRESHDESK_KEY}:X".encode()).decode()

    def connector(self, base: str):
        fields = RULES.helpdesk["freshdesk"].fields
        return FreshdeskConnector("sandbox", FRESHDESK_KEY, api_url=base, field_names=fields,
                                  sleep=lambda s: None, timeout=5, backoff_base=0)

    def create(self, rng: random.Random) -> int:
        answer = self.client.post("/api/v2/tickets", json={
            "subject": rng.choice(SUBJECTS), "description": "Hello, we need help.",
            "priority": rng.choice([1, 2, 3, 4]), "status": 2, "email": "casey@example.org",
            "custom_fields": {"cf_plan": rng.choice(PLANS)}})
        return answer.json["id"]

    def done(self, tid: int) -> bool:
        return self.app.state.tickets[tid]["status"] in (4, 5)

    def act(self, tid: int, step: str) -> None:
        if step in ("agent", "customer"):
            self.client.post(f"/_sandbox/tickets/{tid}/conversations",
                             json={"author": step, "body": "Any news?" if step == "customer" else "On it."})
        else:
            self.client.put(f"/api/v2/tickets/{tid}", json={"status": 3 if step == "pending" else 4})


def play(tickets: int, seed: int, *, economy: bool, vendor: str = "zendesk", every_due: bool = False,
         rules=RULES, run_on: timedelta = timedelta(hours=1)) -> Day:
    """One simulated day; returns the bot's vendor calls.

    Whenever some ticket's next_check has come the clock queues it, as the
    due-time timer does. `every_due` replays the earlier schedule, a re-check at
    every running target's due + 1 s and warning time besides the rules' own
    moments, so the re-checks it adds can be counted against those that act.
    """
    rng = random.Random(seed)
    clock = Clock()
    world = (ZendeskDay if vendor == "zendesk" else FreshdeskDay)(clock)
    app = world.app
    hooks = Collector()
    app.webhooks = hooks  # type: ignore[assignment]
    base, stop = serve_in_thread(app)
    label = "API economy" if economy else "read-first (baseline)"
    day = Day(f"{vendor}, {label}" + (", more clocks than rules" if rules is TIMED else "")
              + (", re-check at every due (earlier schedule)" if every_due else ""))
    source = world.source
    with tempfile.TemporaryDirectory() as tmp:
        store = Store(f"sqlite:///{tmp}/bench.db")
        store.migrate()
        helpdesk = world.connector(base)
        worker = Worker(store, helpdesk, lambda: rules, clock=clock, budget=WriteBudget(store),
                        economy=economy)
        # Each ticket's life: created, then a few of agent reply / customer answer / pending / solved.
        plan: list[tuple[float, int, str]] = []
        for n in range(tickets):
            at = rng.uniform(0, 8 * 3600)
            plan.append((at, n, "create"))
            t = at
            for step in rng.choice([["agent", "customer", "agent", "solve"],
                                    ["agent", "pending", "customer", "agent", "solve"],
                                    ["customer", "agent", "customer"], ["agent"]]):
                t += rng.uniform(300, 5400)
                plan.append((t, n, step))
        plan.sort()
        ids: dict[int, int] = {}
        started = time.perf_counter()
        for at, n, step in plan:
            clock.now = START + timedelta(seconds=at)
            _recheck(worker, app, hooks, store, clock, day, source, every_due)
            hooks.bodies.clear()
            if step == "create":
                ids[n] = world.create(rng)
                day.tickets += 1
            elif n in ids and not world.done(ids[n]):
                world.act(ids[n], step)
            else:
                continue
            day.external_webhooks += _queue(store, source, hooks.bodies, clock())
            _drain(worker, app, hooks, store, clock, day, source)
            if every_due:
                _every_due(store, clock())
        # The clock runs on: re-checks that fell due, then a reconciliation of the whole day.
        for _ in range(int(run_on / timedelta(minutes=10))):
            clock.now += timedelta(minutes=10)
            _recheck(worker, app, hooks, store, clock, day, source, every_due)
        clock.now += timedelta(minutes=5)
        before = len(app.state.requests)
        report = Reconciler(store, helpdesk, clock=clock, lookback_seconds=86400).run()
        day.reconcile_seen, day.reconcile_queued = report.seen, report.queued
        _drain(worker, app, hooks, store, clock, day, source)
        day.reconcile_calls = len(app.state.requests) - before
        day.seconds = time.perf_counter() - started
        helpdesk.close()
        store.engine.dispose()
    stop()
    return day


def _recheck(worker: Worker, app, hooks: Collector, store: Store, clock: Clock, day: Day, source: str,
             every_due: bool) -> None:
    """Queue the tickets whose next_check has come and drain them, counting what the re-checks did."""
    due = store.due_tickets(clock())
    if not due:
        return
    for due_source, ticket_id in due:
        store.request_sync(due_source, [ticket_id], clock(), "due")
    before = day.total
    outcomes = _drain(worker, app, hooks, store, clock, day, source)
    checked = {o.ticket_id: o for o in outcomes if o.decision is not None and o.ticket_id in
               {tid for _, tid in due}}
    day.rechecks += len(checked)
    day.rechecks_acted += sum(1 for o in checked.values() if o.decision.actions)
    day.recheck_calls += day.total - before
    if every_due:
        _every_due(store, clock())


def _every_due(store: Store, now: datetime) -> None:
    """The earlier schedule: next_check also at each running target's due + 1 s and its warning time."""
    import sqlalchemy as sa

    from store.board import parse_instant
    from store.models import ticket_snapshots as s

    with store.engine.begin() as conn:
        rows = conn.execute(sa.select(s.c.source, s.c.ticket_id, s.c.decision, s.c.next_check)).all()
        for row in rows:
            moments = [row.next_check.replace(tzinfo=UTC)] if row.next_check is not None else []
            for result in ((row.decision or {}).get("targets") or {}).values():
                if not isinstance(result, dict) or result.get("state") != "running":
                    continue
                due, warn = parse_instant(result.get("due")), parse_instant(result.get("warn_at"))
                if due is not None and due >= now:
                    moments.append(due + timedelta(seconds=1))
                if warn is not None and warn > now:
                    moments.append(warn)
            earliest = min(moments) if moments else None
            if earliest != (row.next_check and row.next_check.replace(tzinfo=UTC)):
                conn.execute(sa.update(s).where(s.c.source == row.source, s.c.ticket_id == row.ticket_id)
                             .values(next_check=earliest))


def _drain(worker: Worker, app, hooks: Collector, store: Store, clock: Clock, day: Day, source: str) -> list:
    """Run the worker until nothing is queued; the webhooks its writes cause are queued as echoes.
    Returns the worker's outcomes."""
    done: list = []
    for _ in range(1000):
        hooks.bodies.clear()
        before = len(app.state.requests)
        outcomes = worker.run_once(limit=50)
        done.extend(outcomes)
        made = [r for r in app.state.requests[before:] if r.get("method")]
        for request in made:
            day.calls[request["method"]] += 1
        day.writes_made += sum(1 for r in made if r["method"] in ("PUT", "POST"))
        day.echo_calls += sum(1 for r in made if r["method"] == "GET") if outcomes and all(
            o.echo or not o.decision for o in outcomes) else 0
        day.echo_webhooks += _queue(store, source, hooks.bodies, clock())
        if not outcomes:
            deferred = store.claim("peek", clock() + timedelta(minutes=2), limit=1, lease_seconds=1)
            if not deferred:
                return done
            for claim in deferred:
                store.release(claim, clock())
            clock.now += timedelta(seconds=5)  # a budget deferral: time passes until its window frees
    return done


class OneByOne:
    """The Zendesk connector read as before batched and incremental reads: each ticket on its
    own (GET ticket + every audit page), whatever its stored snapshot holds (the baseline)."""

    def __init__(self, real) -> None:
        self.real, self.name = real, real.name

    def fetch_ticket(self, ticket_id, known=None):
        return self.real.fetch_ticket(ticket_id)

    def fetch_tickets(self, ticket_ids, known=None):
        return fetch_each(self, ticket_ids)

    def __getattr__(self, name):
        return getattr(self.real, name)


def due_closes(count: int, *, stored: str = "worker", one_by_one: bool = False) -> dict[str, float]:
    """`count` Choozle auto-closes falling due at once, swept under the default write budget
    (80 updates a minute) until all are closed: simulated minutes, reads per closed ticket.

    `stored="worker"`: the snapshots the worker stored when the agent proposed the resolution
    (timeline, stamp, resume marker), as on a live account; "bare": a next_check only, so every
    due ticket is read from its first audit. `one_by_one`: the baseline read path (OneByOne).
    """
    from jobs.sweeps import Sweeper
    from tests.sweep_helpers import Clock as SweepClock
    from tests.sweep_helpers import at, choozle, zendesk_world
    from tests.test_sweeps import due_closes as seed

    clock, rules = SweepClock("2026-11-04T16:00:00Z"), choozle()
    with tempfile.TemporaryDirectory() as tmp, zendesk_world(clock) as world:
        store = Store(f"sqlite:///{tmp}/due.db")
        store.migrate()
        ids = seed(store, world, clock, count, via_worker=stored == "worker")
        clock.set("2026-11-09T18:00:00Z")
        moment = at("2026-11-09T18:00:00Z")
        helpdesk = OneByOne(world.connector()) if one_by_one else world.connector()
        sweeper = Sweeper(store, helpdesk, lambda: rules, clock=clock, budget=WriteBudget(store),
                          limit=count)
        before = len(world.app.state.requests)
        closed: set[str] = set()
        started = time.perf_counter()
        sweeps = 0
        while len(closed) < len(ids) and sweeps < 200:
            closed |= set(sweeper.sweep().closed)
            sweeps += 1
            if len(closed) < len(ids):
                clock.advance(30)  # the interval sweep
        made = world.app.state.requests[before:]
        store.engine.dispose()
    reads = [r for r in made if r["method"] == "GET" and "job_statuses" not in r["path"]]
    return {"closed": len(closed), "minutes": (clock() - moment).total_seconds() / 60,
            "reads": len(reads), "show_many": sum(1 for r in reads if r["path"].endswith("show_many.json")),
            "audits": sum(1 for r in reads if r["path"].endswith("/audits.json")),
            "writes": sum(1 for r in made if r["method"] == "PUT"), "seconds": time.perf_counter() - started,
            "sweeps": sweeps}


def report(days: list[Day]) -> None:
    floor = days[1].tickets + days[1].writes_made
    for day in days:
        webhooks = day.external_webhooks
        per_webhook = day.total / webhooks if webhooks else 0.0
        # At 20 external webhooks a second the same mix costs this many calls a minute.
        per_minute = per_webhook * 20 * 60
        print(f"{day.label}:")
        print(f"  external webhooks {webhooks}, echoes {day.echo_webhooks}, tickets {day.tickets}")
        print(f"  vendor calls {day.total} ({dict(day.calls)}), reads {day.reads}, writes {day.writes_made}")
        print(f"  calls per external webhook {per_webhook:.2f} (goal <= {GOAL_PER_WEBHOOK}), "
              f"per ticket {day.total / max(day.tickets, 1):.2f}, "
              f"reads per write {day.reads / max(day.writes_made, 1):.2f}")
        print(f"  calls per minute at 20 webhooks/s {per_minute:.0f} (goal <= {GOAL_PER_MINUTE})")
        print(f"  reconciliation: {day.reconcile_seen} listed, {day.reconcile_queued} queued, "
              f"{day.reconcile_calls} calls; {day.seconds:.1f} s")
        idle = day.rechecks - day.rechecks_acted
        print(f"  scheduled re-checks {day.rechecks}: {day.rechecks_acted} acted, {idle} acted on nothing "
              f"({idle / max(day.rechecks, 1):.0%}); {day.recheck_calls} calls")
    base, new = days[:2]
    print(f"floor: {floor} calls ({floor / max(new.external_webhooks, 1):.2f} per external webhook)")
    print(f"ratio baseline/economy: {base.total / max(new.total, 1):.2f}x fewer calls")


def report_rechecks(every: Day, moments: Day) -> None:
    for day in (every, moments):
        idle = day.rechecks - day.rechecks_acted
        print(f"{day.label}:")
        print(f"  vendor calls {day.total} ({dict(day.calls)}), writes {day.writes_made}")
        print(f"  scheduled re-checks {day.rechecks}: {day.rechecks_acted} acted, {idle} acted on nothing "
              f"({idle / max(day.rechecks, 1):.0%}); {day.recheck_calls} calls")
    print(f"re-checks, every due / rules' moments only: {every.rechecks} / {moments.rechecks} "
          f"({every.recheck_calls} / {moments.recheck_calls} calls); acted {every.rechecks_acted} / "
          f"{moments.rechecks_acted}; calls that day {every.total} / {moments.total} "
          f"({every.total / max(moments.total, 1):.2f}x)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.api_economy",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--tickets", type=int, default=200)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--due", type=int, default=1000, help="due auto-closes to sweep (0: skip)")
    args = parser.parse_args(argv)
    logging.disable(logging.INFO)
    print(f"# API economy, Zendesk and Freshdesk sandboxes, {args.tickets} tickets, "
          f"Python {platform.python_version()}")
    for vendor in ("zendesk", "freshdesk"):
        days = [play(args.tickets, args.seed, economy=False, vendor=vendor),
                play(args.tickets, args.seed, economy=True, vendor=vendor)]
        report(days)
    # The clock runs on for two days after the last event, so the clocks left running come due.
    report_rechecks(play(args.tickets, args.seed, economy=True, every_due=True, rules=TIMED, run_on=RUN_ON),
                    play(args.tickets, args.seed, economy=True, rules=TIMED, run_on=RUN_ON))
    if args.due:
        runs = [("snapshots stored by the worker", due_closes(args.due)),
                ("bare snapshots (next check only)", due_closes(args.due, stored="bare")),
                ("baseline: one read per ticket, all audits", due_closes(args.due, one_by_one=True))]
        for label, due in runs:
            per = max(due["closed"], 1)
            print(f"{args.due} due auto-closes under the default budget, {label}: {due['closed']} closed "
                  f"within {due['minutes']:.1f} simulated minutes ({due['sweeps']} sweeps, "
                  f"{due['seconds']:.1f} s); {due['reads'] / per:.2f} ticket/audit GETs per closed ticket "
                  f"({due['show_many']} show_many, {due['audits']} audits reads) and "
                  f"{due['writes'] / per:.3f} update calls (goal < 2 min, <= {GOAL_READS_PER_CLOSE} reads)")
        print(f"reads per closed ticket, baseline / stored snapshots: "
              f"{runs[2][1]['reads'] / max(runs[0][1]['reads'], 1):.2f}x fewer")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
