"""Rule simulation over history: replay speed, and vendor calls to read the history on Zendesk.

1. Replay: generated history documents (tickets over 30 days with replies,
   pending waits, customer answers, solves) replayed through the rules in force
   and a proposed change (an auto-close, a holiday, a stricter target), both in
   one process. Baseline: one engine evaluation per ticket at the window's end
   (what `python -m engine evaluate` costs), to show what a replay adds.
2. Fetch: the Zendesk sandbox filled with generated tickets and audits, read
   by the history reader over HTTP through the incremental exports; vendor
   calls per ticket.
"""

from __future__ import annotations

import argparse
import logging
import platform
import random
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from engine.evaluate import evaluate
from engine.rulefile import load_texts
from engine.ticket import Event, Ticket
from jobs.simulate import Mapping_, prepare, simulate

CLOUDTALK = Path(__file__).resolve().parent.parent / "rules" / "examples" / "cloudtalk.yaml"
START = datetime(2026, 10, 5, 0, 0, tzinfo=UTC)  # a Monday
DAYS = 30
GOAL_RATE = 5000
GOAL_CALLS = 0.02

RULES = """
version: 1
calendars:
  office:
    timezone: Europe/Berlin
    hours: {mon-fri: ["09:00-17:00"]}
    holidays: {country: DE%s}
  always: {timezone: UTC, hours: 24/7}
levels:
  P1: [urgent]
  P2: [high]
  P3: [normal, low]
reclassify:
  - id: default-priority
    when: {priority: none}
    set: normal
  - id: outage-is-urgent
    when: {text_any: [outage, down]}
    set: urgent
policies:
  - id: pro
    when: {fields: {plan: pro}}
    calendar: office
    targets:
      first_response: {P1: {within: 1h, calendar: always}, P2: 4h, P3: %s}
      resolution: {P1: 8h, P2: 24h, P3: 40h}
      next_update: {P1: 4h, P2: 8h, P3: 16h}
  - id: basic
    calendar: office
    targets:
      first_response: 16h
escalations:
  - id: breach-to-tier2
    on: {breach: first_response}
    do: {assign_group: tier2, add_tags: [sla_breached]}
%s
"""
AUTO_CLOSE = """
auto_close:
  - id: close-pending
    when: {status: pending}
    after: %s
    calendar: office
    reply: Closing for now; reply to reopen.
"""


def rule_sets():
    base = load_texts([("base.yaml", RULES % ("", "8h", AUTO_CLOSE % "72h"))])
    proposed = load_texts([("new.yaml", RULES % (", dates: [2026-10-16]", "6h", AUTO_CLOSE % "40h"))])
    return base, proposed


def cloudtalk_sets():
    """The CloudTalk example policy, and the same with an extra office holiday."""
    text = CLOUDTALK.read_text()
    holiday = text.replace("      country: SK\n", "      country: SK\n      dates: [2026-10-16]\n", 1)
    assert holiday != text
    return load_texts([("cloudtalk.yaml", text)]), load_texts([("cloudtalk-next.yaml", holiday)])


def generate(count: int, seed: int = 7, plans: tuple[str, ...] = ("pro", "pro", "basic")) -> list[dict]:
    """History documents in jobs/history.py's format."""
    rng = random.Random(seed)
    start = int(START.timestamp())
    docs = []
    for n in range(count):
        created = start + rng.randrange(DAYS * 86_400)
        t = created
        events: list[dict] = []
        for _ in range(rng.choice((1, 1, 2, 2, 3))):
            t += rng.randrange(600, 40 * 3600)
            events.append({"at": t, "type": "comment", "author": "agent", "public": True, "bot": False})
            if rng.random() < 0.6:
                events.append({"at": t, "type": "status", "status": "pending", "bot": False})
                if rng.random() < 0.7:
                    t += rng.randrange(600, 100 * 3600)
                    events.append({"at": t, "type": "comment", "author": "customer", "public": True,
                                   "bot": False})
                    events.append({"at": t, "type": "status", "status": "open", "bot": False})
                else:
                    break
        if rng.random() < 0.5:
            t += rng.randrange(600, 20 * 3600)
            events.append({"at": t, "type": "status", "status": "solved", "bot": False})
        docs.append({
            "id": str(n + 1), "url": None, "created_at": created, "updated_at": t,
            "subject": rng.choice(("Calls failing", "Site down", "How do I export?", "Billing question")),
            "description": "", "events": events,
            "initial": {"status": "open", "priority": rng.choice((None, "low", "normal", "high", "urgent")),
                        "group": None, "tags": [], "fields": {"plan": rng.choice(plans)}},
        })
    return docs


def final_ticket(prep) -> Ticket:
    """The ticket as its whole timeline leaves it (what one sync would read)."""
    events, status = [], prep.status
    for at, kind, a, b in prep.events:
        if kind == "comment":
            events.append(Event(at, "comment", a, b))
        elif kind == "status":
            status = a
            events.append(Event(at, "status", status=a))
    return Ticket(prep.id, status, prep.created, prep.priority, prep.subject, prep.description, prep.tags,
                  prep.fields, tuple(events), prep.group)


def bench_replay(count: int, label: str, base, proposed, plans: tuple[str, ...]) -> None:
    docs = generate(count, plans=plans)
    window = int(START.timestamp()), int((START + timedelta(days=DAYS + 10)).timestamp())
    began = time.perf_counter()
    pairs, evaluations = simulate(docs, base, proposed, *window, "zendesk")
    replay_s = time.perf_counter() - began
    changed = sum(1 for pair in pairs if pair.changes)
    closes = sum(len(pair.proposed.closes) for pair in pairs)
    # Baseline: one evaluation per ticket of its final state, both rule sets.
    finals = [final_ticket(prepare(doc, Mapping_({}, {}))) for doc in docs]
    began = time.perf_counter()
    for ticket in finals:
        evaluate(ticket, base, window[1])
        evaluate(ticket, proposed, window[1])
    single_s = time.perf_counter() - began
    rate, single = count / replay_s, count / single_s
    print(f"replay, {label}:")
    print(f"  {count:,} tickets through 2 rule sets in {replay_s:.2f} s = {rate:,.0f} tickets/s"
          f" ({evaluations / count:.1f} evaluations a ticket; {changed:,} tickets change,"
          f" {closes:,} auto-closes proposed)")
    print(f"  baseline, one evaluation per ticket and rule set: {single:,.0f} tickets/s;"
          f" replay costs {single / rate:.1f}x that")
    print(f"  goal >= {GOAL_RATE:,} tickets/s on one core: {'met' if rate >= GOAL_RATE else 'NOT met'}")


def bench_fetch(count: int) -> None:
    """Fill the Zendesk sandbox's state directly, then read it over HTTP with the history reader."""
    from connectors.zendesk.history import ZendeskHistoryReader
    from sandbox.zendesk import SANDBOX_TOKEN, create_sandbox, serve_in_thread
    from sandbox.zendesk_state import CUSTOMER_ID, HUMAN_AGENT_ID, SANDBOX_EMAIL

    now = {"at": START}
    sandbox = create_sandbox(clock=lambda: now["at"])
    state = sandbox.state
    rng = random.Random(11)
    began = time.perf_counter()
    audits = 0
    with state.lock:
        for _ in range(count):
            now["at"] = START + timedelta(seconds=rng.randrange(DAYS * 86_400))
            ticket, _audit = state.create({"subject": "Help", "requester_id": CUSTOMER_ID, "status": "open",
                                           "comment": {"body": "Help", "author_id": CUSTOMER_ID}}, "http://x/")
            tid = ticket["id"]
            audits += 1
            for step in range(rng.choice((1, 2, 3))):
                now["at"] += timedelta(seconds=rng.randrange(600, 30 * 3600))
                status = "pending" if step % 2 == 0 else "open"
                author = HUMAN_AGENT_ID if step % 2 == 0 else CUSTOMER_ID
                state.update(tid, {"comment": {"body": "text", "author_id": author}, "status": status},
                             author=author, safe=False)
                audits += 1
    seeded = time.perf_counter() - began
    url, stop = serve_in_thread(sandbox)
    try:
        # Calls are counted, not paced: a real account's 10 export calls a minute are not what
        # is measured here (at a 30% share they make 3 pages, 3,000 audits, a minute).
        reader = ZendeskHistoryReader("", SANDBOX_EMAIL, SANDBOX_TOKEN, api_url=url)
        began = time.perf_counter()
        docs, _ = reader.read(int(START.timestamp()))
        read_s = time.perf_counter() - began
    finally:
        stop()
    calls = len(state.requests)
    print(f"fetch: {len(docs):,} Zendesk tickets, {audits:,} audits (seeded in {seeded:.1f} s) read in"
          f" {calls} calls ({read_s:.1f} s on the sandbox) = {calls / len(docs):.4f} calls per ticket")
    per_ticket = 2 + (audits / count > 1)  # GET ticket + GET audits (+ a page), as fetch_ticket reads
    print(f"  baseline, the connector's per-ticket read (ticket + audits): {per_ticket} calls per ticket;"
          f" ratio {per_ticket / (calls / len(docs)):,.0f}x")
    verdict = "met" if calls / len(docs) <= GOAL_CALLS else "NOT met"
    print(f"  goal <= {GOAL_CALLS} calls per ticket: {verdict}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.simulate", description=__doc__)
    parser.add_argument("--tickets", type=int, default=100_000, help="tickets to replay")
    parser.add_argument("--fetch-tickets", type=int, default=100_000, help="tickets to read from the sandbox")
    parser.add_argument("--quick", action="store_true", help="10k tickets each")
    args = parser.parse_args(argv)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no line per sandbox request
    if args.quick:
        args.tickets = args.fetch_tickets = 10_000
    print(f"python {platform.python_version()} on {platform.machine()}, one thread")
    bench_replay(args.tickets, "three targets, escalation, auto-close; change: auto-close, holiday, target",
                 *rule_sets(), ("pro", "pro", "basic"))
    bench_replay(args.tickets, "rules/examples/cloudtalk.yaml; change: a holiday", *cloudtalk_sets(),
                 ("professional", "advanced", "basic"))
    bench_fetch(args.fetch_tickets)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
