"""Webhook intake under gunicorn beside a bare Flask endpoint, and Zendesk API calls per processed ticket."""

from __future__ import annotations

import argparse
import http.client
import itertools
import json
import logging
import os
import platform
import re
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.pool import NullPool

from app import SIGNATURE_HEADER, TIMESTAMP_HEADER
from config import VARIABLES, load_settings
from connectors.signature import sign
from connectors.zendesk.events import normalize
from engine.rulefile import load_rules
from jobs.run import DEMO_TICKETS, Service
from jobs.runtime import build_connector
from jobs.worker import Worker
from sandbox import serve_in_thread
from sandbox.zendesk import create_sandbox
from sandbox.zendesk_state import CUSTOMER_ID
from store import Store
from store.engine import normalize_url
from store.models import inbox_events

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = ROOT / "tests" / "fixtures" / "zendesk"
# Event types the receiver queues (so every request reaches the database), as Zendesk sends them.
EVENT_FIXTURES = ("ticket_comment_added.json", "ticket_status_changed.json", "ticket_priority_changed.json",
                  "ticket_custom_field_changed.json", "ticket_tags_changed.json", "ticket_created.json")
PATH = "/webhooks/zendesk"
POSTGRES_ENV = "TEST_DATABASE_URL"
GOAL_RATIO = 0.5
GOAL_READS = 2
TICKET_READ = re.compile(r"^/api/v2/tickets/\d+\.json$")  # one per evaluation of a ticket
SHOW_MANY = "/api/v2/tickets/show_many.json"  # one per batch, `ids` naming the tickets evaluated
# Mon 23 Nov 2026 09:00 in Bratislava: office hours, so every policy has a clock running.
NOW = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


# -- load generator ------------------------------------------------------------------------------


@dataclass
class Load:
    """What one target did: latencies of acknowledged requests, failures, CPU seconds used."""

    target: str
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: Counter = field(default_factory=Counter)
    acked: set[str] = field(default_factory=set)  # event ids answered 202 "queued"
    client_cpu: float = 0.0  # this process (the load generator)
    server_cpu: float | None = 0.0  # gunicorn's master and workers; None where /proc is missing
    machine_cpu: float | None = 0.0  # everything on the machine, other people's work included
    stored: int | None = None  # acknowledged events found in the inbox afterwards

    @property
    def rps(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """Milliseconds at quantile q (nearest rank) of the acknowledged requests."""
        ordered = sorted(self.latencies)
        return 1000 * ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else 0.0

    def add(self, run: Load) -> None:
        """Fold in another run against the same target: times summed, latencies pooled."""
        self.seconds += run.seconds
        self.latencies += run.latencies
        self.failures.update(run.failures)
        self.acked |= run.acked
        self.client_cpu += run.client_cpu
        self.server_cpu = _plus(self.server_cpu, run.server_cpu)
        self.machine_cpu = _plus(self.machine_cpu, run.machine_cpu)


def _plus(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a + b


def signed_webhooks(count: int, secret: str, tickets: int = 1000) -> list[tuple[str, bytes, dict[str, str]]]:
    """`count` Zendesk event deliveries, (event id, body, headers), each with a unique event id.

    The bodies are the fixtures' payloads with a fresh id and time, spread over
    `tickets` ticket ids, and signed now: send them within the receiver's
    300-second replay window.
    """
    templates = [json.loads((FIXTURES / name).read_text()) for name in EVENT_FIXTURES]
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out = []
    for n in range(count):
        body = dict(templates[n % len(templates)])
        event_id = str(uuid.uuid4())
        body["id"], body["time"] = event_id, stamp
        body["detail"] = dict(body["detail"], id=str(1 + n % tickets))
        raw = json.dumps(body).encode()
        headers = {"Content-Type": "application/json; charset=utf-8", "User-Agent": "Zendesk Webhook",
                   TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, raw)}
        out.append((event_id, raw, headers))
    return out


def drive(port: int, deliveries: Sequence[tuple[str, bytes, dict[str, str]]], concurrency: int,
          server_pid: int | None = None) -> Load:
    """POST every delivery to 127.0.0.1:`port` from `concurrency` threads, one connection each.

    Connections are kept alive when the server allows it (gthread) and reopened
    when it closes them (sync workers close after every response).
    """
    load = Load("")
    lock = threading.Lock()
    counter = itertools.count()  # next() is atomic under the GIL: a lock-free work queue
    start = threading.Barrier(concurrency + 1)

    def client() -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        latencies, failures, acked = [], Counter(), []
        start.wait()
        while (index := next(counter)) < len(deliveries):
            event_id, body, headers = deliveries[index]
            began = time.perf_counter()
            try:
                conn.request("POST", PATH, body=body, headers=headers)
                response = conn.getresponse()
                answer = response.read()
            except (OSError, http.client.HTTPException) as err:
                conn.close()  # the next request() connects again
                failures[type(err).__name__] += 1
                continue
            if response.status == 202 and b'"queued"' in answer:
                latencies.append(time.perf_counter() - began)
                acked.append(event_id)
            else:
                failures[f"HTTP {response.status}"] += 1
        conn.close()
        with lock:
            load.latencies += latencies
            load.failures.update(failures)
            load.acked.update(acked)

    threads = [threading.Thread(target=client, name=f"load-{n}", daemon=True) for n in range(concurrency)]
    for thread in threads:
        thread.start()
    before = (time.process_time(), process_tree_cpu(server_pid), machine_cpu())
    began = time.perf_counter()
    start.wait()
    for thread in threads:
        thread.join()
    load.seconds = time.perf_counter() - began
    after = (time.process_time(), process_tree_cpu(server_pid), machine_cpu())
    load.client_cpu = after[0] - before[0]
    load.server_cpu = None if None in (before[1], after[1]) else after[1] - before[1]
    load.machine_cpu = None if None in (before[2], after[2]) else after[2] - before[2]
    return load


def process_tree_cpu(pid: int | None) -> float | None:
    """User + system CPU seconds of `pid` and its children, from /proc (None elsewhere)."""
    if pid is None:
        return None
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        ticks = 0
        for each in (str(pid), *children):
            # After the ")" that closes the command name, utime and stime are the 12th and 13th fields.
            fields = Path(f"/proc/{each}/stat").read_text().rpartition(")")[2].split()
            ticks += int(fields[11]) + int(fields[12])
    except (OSError, ValueError, IndexError):
        return None
    return ticks / os.sysconf("SC_CLK_TCK")


def machine_cpu() -> float | None:
    """CPU seconds all processors spent busy (not idle, not waiting for I/O) since boot, from /proc/stat."""
    try:
        ticks = [int(value) for value in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    except (OSError, ValueError):
        return None
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf("SC_CLK_TCK")


# -- servers and databases ------------------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    """An app for gunicorn to serve: its import spec, environment and webhook secret."""

    label: str
    spec: str
    env: dict[str, str]
    secret: str = "unused"  # noqa: S105 - the bare app checks no signature
    database_url: str | None = None


def bare_target() -> Target:
    env = {key: value for key, value in os.environ.items() if key not in VARIABLES}
    return Target("bare Flask", "benchmarks.bare_app:create_app()", env)


def deskpilot_target(label: str, database_url: str) -> Target:
    """`app:create_app()` with fake Zendesk credentials and a random ZENDESK_WEBHOOK_SECRET."""
    secret = secrets.token_urlsafe(24)
    env = {key: value for key, value in os.environ.items() if key not in VARIABLES}
    env.update(HELPDESK="zendesk", ZENDESK_SUBDOMAIN="bench", ZENDESK_EMAIL="bench@bench.invalid",
               ZENDESK_API_TOKEN="bench-token", ZENDESK_WEBHOOK_SECRET=secret,  # noqa: S106
               DATABASE_URL=database_url, RULES_PATH=str(ROOT / "rules"), LOG_LEVEL="INFO")
    load_settings(env, env_file=None)  # a ConfigError names the variable here, not in gunicorn's log
    return Target(f"deskpilot {label}", "app:create_app()", env, secret, database_url)


CONFIG = ROOT / "gunicorn.conf.py"  # what the Procfile's `web:` line runs


@dataclass(frozen=True)
class Gunicorn:
    """How every target is served: the Procfile's gunicorn, `--config gunicorn.conf.py`.

    That is the threaded worker class webserver.ThreadWorker with WEB_CONCURRENCY
    processes x WEB_THREADS threads (2 x 16 unless set), the app preloaded. `workers`
    and `threads` set those two variables for every target alike; None keeps the
    environment's value, or the config's default. Only the bind address and the log
    level are given on the command line (they win over the file).
    """

    workers: int | None = None
    threads: int | None = None

    def sizes(self) -> tuple[int, int]:
        """(processes, threads per process) the config file will read."""
        workers = self.workers if self.workers is not None else int(os.environ.get("WEB_CONCURRENCY", "2"))
        threads = self.threads if self.threads is not None else int(os.environ.get("WEB_THREADS", "16"))
        return workers, threads

    def describe(self) -> str:
        workers, threads = self.sizes()
        return (f"gunicorn.conf.py: {workers} webserver.ThreadWorker processes x {threads} threads "
                "(WEB_CONCURRENCY x WEB_THREADS), preloaded")

    def environment(self, env: dict[str, str]) -> dict[str, str]:
        workers, threads = self.sizes()
        out = {key: value for key, value in env.items() if key not in ("HOST", "PORT")}
        out.update(WEB_CONCURRENCY=str(workers), WEB_THREADS=str(threads))
        out.pop("PROMETHEUS_MULTIPROC_DIR", None)  # each server makes its own (gunicorn.conf.py)
        return out

    @contextmanager
    def serve(self, targets: Sequence[Target], workdir: Path) -> Iterator[list[tuple[int, int]]]:
        """Run one gunicorn per target, each on a free port, until all answer GET /healthz.

        Yields [(port, pid)] in the order of `targets`; logs go to workdir/gunicorn-N.log.
        """
        procs: list[tuple[int, subprocess.Popen, Path]] = []
        try:
            for n, target in enumerate(targets):
                port, log_path = free_port(), workdir / f"gunicorn-{n}.log"
                # No control socket: gunicorn 27 puts it at one path per user, which
                # several gunicorns running at once would fight over.
                command = [sys.executable, "-m", "gunicorn", "--config", str(CONFIG),
                           "--bind", f"127.0.0.1:{port}", "--no-control-socket", "--log-level", "warning",
                           target.spec]
                with open(log_path, "ab") as log:
                    procs.append((port, subprocess.Popen(command, cwd=ROOT, env=self.environment(target.env),
                                                         stdout=log, stderr=log), log_path))
            for port, proc, log_path in procs:
                _wait_healthy(port, proc, log_path)
            yield [(port, proc.pid) for port, proc, _ in procs]
        finally:
            for _, proc, _ in procs:  # all at once: each master takes a second or two to stop
                proc.send_signal(signal.SIGTERM)
            for _, proc, _ in procs:
                try:
                    proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _wait_healthy(port: int, proc: subprocess.Popen, log_path: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", "/healthz")
            if conn.getresponse().status == 200:
                return
        except (OSError, http.client.HTTPException):
            pass  # not listening yet
        finally:
            conn.close()
        time.sleep(0.1)
    tail = log_path.read_text(errors="replace")[-2000:]
    raise RuntimeError(f"gunicorn on port {port} did not answer GET /healthz with 200; the end of its "
                       f"log ({log_path}):\n{tail}")


@contextmanager
def postgres_database(admin_url: str) -> Iterator[str]:
    """A uniquely named database on the server at `admin_url` (TEST_DATABASE_URL), dropped afterwards."""
    admin = sa.create_engine(normalize_url(admin_url), isolation_level="AUTOCOMMIT", poolclass=NullPool)
    name = f"deskpilot_bench_{uuid.uuid4().hex[:12]}"
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}" TEMPLATE template0')
        try:
            yield normalize_url(admin_url).set(database=name).render_as_string(hide_password=False)
        finally:
            with admin.connect() as conn:
                conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()


def inbox_event_ids(database_url: str) -> set[str]:
    store = Store(database_url)
    try:
        with store.engine.connect() as conn:
            query = sa.select(inbox_events.c.dedupe_key).where(inbox_events.c.source == "zendesk")
            return set(conn.execute(query).scalars())
    finally:
        store.engine.dispose()


# -- part 1: acknowledged webhooks per second ----------------------------------------------------


def bench_intake(server: Gunicorn, targets: Sequence[Target], requests: int, concurrency: int,
                 rounds: int, workdir: Path) -> list[Load]:
    """Serve every target at once and load them in turns, `rounds` times, so that other work on
    the machine weighs on each alike; then count each database's acknowledged events."""
    loads = [Load(target.label) for target in targets]
    with server.serve(targets, workdir) as running:
        for target, load, (port, _pid) in zip(targets, loads, running, strict=True):
            # Warm-up, not timed: workers import lazily and connect to the database on first use.
            warm = drive(port, signed_webhooks(4 * concurrency, target.secret), concurrency)
            load.acked |= warm.acked
            load.failures.update(warm.failures)
        for _ in range(rounds):
            for target, load, (port, pid) in zip(targets, loads, running, strict=True):
                deliveries = signed_webhooks(max(1, requests // rounds), target.secret)
                load.add(drive(port, deliveries, concurrency, server_pid=pid))
    for target, load in zip(targets, loads, strict=True):
        if target.database_url:
            load.stored = len(load.acked & inbox_event_ids(target.database_url))
    return loads


# -- part 2: vendor calls per processed ticket ----------------------------------------------------


@dataclass
class CallRound:
    """Zendesk API calls made while one round of events was processed."""

    name: str
    tickets: int
    events: int
    evaluations: int  # tickets read (GET tickets/{id}.json, or an id of a show_many)
    reads: int  # every GET: ticket, audits, and users/me once per connector
    writes: int  # every PUT
    written: int  # tickets with at least one PUT
    ideal: int  # evaluations if every burst were processed in one claim
    errors: int = 0

    def per_ticket(self, count: int) -> float:
        return count / self.tickets if self.tickets else 0.0


def count_calls(name: str, tickets: int, events: int, requests: Sequence[dict], ideal: int | None = None,
                errors: int = 0) -> CallRound:
    """A CallRound from sandbox request-log entries (POSTs, our own ticket creations, are left out)."""
    gets = [r for r in requests if r["method"] == "GET"]
    puts = [r for r in requests if r["method"] == "PUT"]
    written = len({r["path"] for r in puts})
    # A ticket read on its own, or one of the ids of a batched read (show_many).
    evaluations = sum(1 for r in gets if TICKET_READ.match(r["path"])) + sum(
        len([i for i in str((r.get("query") or {}).get("ids") or "").split(",") if i])
        for r in gets if r["path"] == SHOW_MANY)
    return CallRound(name, tickets, events, evaluations, len(gets), len(puts), written,
                     tickets if ideal is None else ideal, errors)


def _ticket_body(n: int, plan_field: int) -> dict:
    """The n-th sandbox ticket: the demo situations in turn (three need a write, one does not)."""
    demo = DEMO_TICKETS[n % len(DEMO_TICKETS)]
    return {"ticket": {"subject": demo["subject"], "priority": demo["priority"], "requester_id": CUSTOMER_ID,
                       "comment": {"body": demo["body"], "author_id": CUSTOMER_ID},
                       "custom_fields": [{"id": plan_field, "value": demo["plan"]}]}}


def enqueue_burst(store: Store, ticket_ids: Sequence[str], burst: int) -> int:
    """`burst` events per ticket stored as the receiver stores them (fixture payloads, unique ids)."""
    templates = [json.loads((FIXTURES / name).read_text()) for name in EVENT_FIXTURES[:-1]]
    count = 0
    for ticket_id in ticket_ids:
        for n in range(burst):
            body = dict(templates[n % len(templates)], id=str(uuid.uuid4()))
            body["detail"] = dict(body["detail"], id=ticket_id)
            event = normalize(body, json.dumps(body).encode(), {})
            count += store.enqueue(source="zendesk", dedupe_key=event.dedupe_key, ticket_id=event.ticket_id,
                                   event_type=event.event_type, payload=event.payload(body), received_at=NOW)
    return count


def bench_calls(database_url: str, tickets: int, burst: int) -> list[CallRound]:
    """Bursts stored in the inbox, drained by a Worker against the in-process Zendesk sandbox.

    Round 1 decides fresh tickets; round 2 sends another burst once they are
    in their decided state, where nothing may be written.
    """
    rules = load_rules(ROOT / "rules" / "deskpilot.yaml")
    sandbox = create_sandbox(clock=lambda: NOW)
    base, stop = serve_in_thread(sandbox)
    store = Store(database_url)
    try:
        store.migrate()
        settings = load_settings({"HELPDESK": "zendesk", "ZENDESK_API_URL": base,
                                  "DATABASE_URL": database_url}, env_file=None, sandbox=True)
        worker = Worker(store, build_connector(settings, rules), lambda: rules, clock=lambda: NOW,
                        worker_id="bench")
        client, auth = sandbox.test_client(), (f"{settings.zendesk_email}/token", settings.zendesk_api_token)
        plan_field = int(rules.helpdesk["zendesk"].fields["plan"])
        ids = [str(client.post("/api/v2/tickets.json", json=_ticket_body(n, plan_field), auth=auth)
                   .json["ticket"]["id"]) for n in range(tickets)]
        rounds = []
        for name in ("burst", "repeat burst"):
            events = enqueue_burst(store, ids, burst)
            mark, errors = len(sandbox.state.requests), 0
            while outcomes := worker.run_once(limit=10):
                errors += sum(1 for outcome in outcomes if outcome.error)
            rounds.append(count_calls(name, tickets, events, sandbox.state.requests[mark:], errors=errors))
        return rounds
    finally:
        store.engine.dispose()
        stop()


def bench_live(database_url: str, tickets: int, timeout: float = 60) -> CallRound:
    """The whole loop as `python -m jobs.run` runs it: sandbox webhooks, inbox, two worker threads.

    Each new ticket sends one `created` event; each write of the bot comes back
    as a burst of echo events (one per changed field and comment), delivered one
    by one while the workers run. Ideal: one evaluation per ticket, plus one per
    echo burst.
    """
    settings = load_settings({"HELPDESK": "zendesk", "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING",
                              "RULES_PATH": str(ROOT / "rules")}, env_file=None, sandbox=True)
    service = Service(settings, "127.0.0.1", 0, workers=2, sandbox_port=0, clock=False)
    service.start()
    try:
        client = service.sandbox.test_client()
        auth = (f"{settings.zendesk_email}/token", settings.zendesk_api_token)
        plan_field = int(service.rules.rules.helpdesk["zendesk"].fields["plan"])
        for n in range(tickets):
            client.post("/api/v2/tickets.json", json=_ticket_body(n, plan_field), auth=auth)
        _wait_quiet(service, timeout)
        calls = count_calls("live, with echoes", tickets, len(inbox_event_ids(database_url)),
                            service.sandbox.state.requests, errors=service.store.health()["dead_letters"])
        calls.ideal = tickets + calls.written
        return calls
    finally:
        service.close()
        service.store.engine.dispose()


def _wait_quiet(service: Service, timeout: float) -> None:
    """Until every webhook is delivered and the queue is empty, three checks in a row."""
    deadline, calm = time.monotonic() + timeout, 0
    while calm < 3:
        if time.monotonic() > deadline:
            raise RuntimeError(f"the embedded service is still busy after {timeout:g}s: "
                               f"{service.store.health()}")
        service.sandbox.wait_idle(timeout=2)
        health = service.store.health()
        calm = calm + 1 if health["backlog"] == 0 and health["inbox_pending"] == 0 else 0
        time.sleep(0.2)


# -- report --------------------------------------------------------------------------------------


def _cores(seconds: float | None, wall: float) -> str:
    return "-" if seconds is None or not wall else f"{seconds / wall:.2f}"


def print_intake(loads: Sequence[Load], server: Gunicorn, concurrency: int, rounds: int) -> None:
    import gunicorn

    print(f"Webhook intake: gunicorn {gunicorn.__version__}, the Procfile's config ({server.describe()}), "
          f"{concurrency} client threads, {rounds} interleaved rounds; {os.cpu_count()} CPUs, "
          f"Python {platform.python_version()}, load average {os.getloadavg()[0]:.1f} at the end")
    print(f"{'target':<22}{'acked':>7}{'req/s':>8}{'p50 ms':>8}{'p99 ms':>8}{'failed':>7}"
          f"{'client':>8}{'server':>8}{'machine':>9}{'ratio':>7}  inbox")
    bare = loads[0].rps
    for load in loads:
        ratio = "-" if load is loads[0] else f"{load.rps / bare:.2f}" if bare else "?"
        inbox = "-" if load.stored is None else f"{load.stored}/{len(load.acked)} stored"
        print(f"{load.target:<22}{len(load.latencies):>7}{load.rps:>8.0f}{load.percentile(0.5):>8.1f}"
              f"{load.percentile(0.99):>8.1f}{sum(load.failures.values()):>7}"
              f"{_cores(load.client_cpu, load.seconds):>8}{_cores(load.server_cpu, load.seconds):>8}"
              f"{_cores(load.machine_cpu, load.seconds):>9}{ratio:>7}  {inbox}")
    print(f"client/server/machine: CPU cores busy (load generator, gunicorn, everything); "
          f"ratio: req/s against the bare app's, goal >= {GOAL_RATIO}")
    for load in loads:
        if load.failures:
            print(f"  {load.target} failures: {dict(load.failures)}")


def print_calls(rounds: Sequence[CallRound], burst: int) -> None:
    print(f"Zendesk API calls per ticket ({burst} events per ticket per burst; goal: reads <= {GOAL_READS} "
          "per burst, no writes when nothing changes)")
    print(f"{'round':<20}{'tickets':>8}{'events':>8}{'evals/t':>9}{'ideal/t':>9}{'reads/t':>9}"
          f"{'writes/t':>10}{'written':>9}{'errors':>8}")
    for r in rounds:
        print(f"{r.name:<20}{r.tickets:>8}{r.events:>8}{r.per_ticket(r.evaluations):>9.2f}"
              f"{r.per_ticket(r.ideal):>9.2f}{r.per_ticket(r.reads):>9.2f}{r.per_ticket(r.writes):>10.2f}"
              f"{r.written:>9}{r.errors:>8}")
    print("evals: tickets read (GET tickets/{id}.json, or one id of a show_many; audits only for a ticket "
          "changed since its snapshot, from the newest audit it holds; users/me once per process); "
          "ideal: one evaluation per burst")


def problems(loads: Sequence[Load], rounds: Sequence[CallRound]) -> list[str]:
    """Correctness failures (not speed): lost acknowledged webhooks, writes that change nothing."""
    out = [f"{load.target}: {len(load.acked) - load.stored} acknowledged webhooks missing from the inbox"
           for load in loads if load.stored is not None and load.stored < len(load.acked)]
    out += [f"{r.name}: {r.writes} writes to tickets already in their decided state"
            for r in rounds if r.name == "repeat burst" and r.writes]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.webhooks", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, a few seconds")
    parser.add_argument("--requests", type=int, help="timed webhooks per target (default 3000; quick 300)")
    parser.add_argument("--rounds", type=int, help="interleaved rounds (default 3; quick 1)")
    parser.add_argument("--concurrency", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--workers", type=int,
                        help="gunicorn processes, as WEB_CONCURRENCY (default: its value, else 2)")
    parser.add_argument("--threads", type=int,
                        help="threads per process, as WEB_THREADS (default: its value, else 16)")
    parser.add_argument("--tickets", type=int, help="tickets for the call counts (default 40; quick 8)")
    parser.add_argument("--burst", type=int, default=5, help="events per ticket per burst (default 5)")
    args = parser.parse_args(argv)
    # One line per request from the embedded servers of the call-count rounds drowns the tables.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    requests = args.requests or (300 if args.quick else 3000)
    rounds = args.rounds or (1 if args.quick else 3)
    tickets = args.tickets or (8 if args.quick else 40)
    server = Gunicorn(args.workers, args.threads)
    postgres = os.environ.get(POSTGRES_ENV)
    with tempfile.TemporaryDirectory(prefix="deskpilot-bench-") as tmp, ExitStack() as stack:
        workdir = Path(tmp)
        targets = [bare_target(), deskpilot_target("sqlite", f"sqlite:///{workdir / 'intake.db'}")]
        if postgres:
            targets.append(deskpilot_target("postgresql", stack.enter_context(postgres_database(postgres))))
        loads = bench_intake(server, targets, requests, args.concurrency, rounds, workdir)
        print_intake(loads, server, args.concurrency, rounds)
        if not postgres:
            print(f"  (set {POSTGRES_ENV} to measure PostgreSQL as well)")
        print()
        calls = bench_calls(f"sqlite:///{workdir / 'calls.db'}", tickets, args.burst)
        calls.append(bench_live(f"sqlite:///{workdir / 'live.db'}", tickets))
        print_calls(calls, args.burst)
    found = problems(loads, calls)
    for problem in found:
        print(f"error: {problem}", file=sys.stderr)
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
