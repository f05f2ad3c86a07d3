"""`python -m jobs.run`: web, worker and clock in one process (the embedded SQLite default).

With `--demo` (or HELPDESK_SANDBOX=1) it also starts the local sandbox helpdesk,
points the webhooks at itself, and (`--demo`) seeds tickets from the example
policies so the bot's decisions and writes show in the log. Without either, the
helpdesk's credentials must be set.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import signal
import sys
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import requests

from config import Settings
from console.sample import seed_demo_console
from jobs.budget import BudgetLimits, WriteBudget
from jobs.runtime import ConnectorCache, RulesHolder, build_store, process_settings
from jobs.worker import Worker

log = logging.getLogger("deskpilot.run")

# Tickets seeded into the sandbox by --demo: one per CloudTalk situation.
DEMO_TICKETS = [
    {"subject": "How do I forward calls to my mobile?", "body": "Need this before Monday.",
     "priority": "urgent", "plan": "professional"},
    {"subject": "All outbound calls fail in production", "body": "Every call drops after 2 seconds.",
     "priority": "urgent", "plan": "advanced"},
    {"subject": "Call recordings are late", "body": "Recordings appear an hour later than usual.",
     "priority": None, "plan": "professional"},
    {"subject": "Invoice address", "body": "Please update our billing address.",
     "priority": "low", "plan": "basic"},
]


class Service:
    """The processes of the Procfile, as threads of one process."""

    def __init__(
        self,
        settings: Settings,
        host: str,
        port: int,
        workers: int = 1,
        sandbox_port: int | None = None,
        clock: bool = True,
    ) -> None:
        self.settings = settings
        self.host, self.port = host, port
        self.stop_event = threading.Event()
        self.rules = RulesHolder(settings.rules_path)
        self.store = build_store(settings)
        self._stops: list[Callable[[], None]] = []
        self._threads: list[threading.Thread] = []
        self.workers = workers
        self.sandbox = None
        self.sandbox_port = sandbox_port
        self.clock = clock
        self.base_url = ""

    def start(self) -> None:
        from app import create_app
        from sandbox import serve_in_thread

        app = create_app(
            {"SETTINGS": self.settings, "STORE": self.store, "RULES": self.rules, "RUN_SCHEDULER": False,
             "CONSOLE_INSECURE_COOKIES": self.settings.sandbox}  # the sandbox is plain http://127.0.0.1
        )
        self.base_url, stop = serve_in_thread(app, self.host, self.port)
        self._stops.append(stop)
        helpdesk = self.settings.helpdesk
        log.info("webhooks at %s/webhooks/%s, health at %s/healthz", self.base_url, helpdesk, self.base_url)
        if self.settings.sandbox:
            self._start_sandbox(serve_in_thread)
        connectors = ConnectorCache(self.settings)
        budget = WriteBudget(self.store, BudgetLimits.from_settings(self.settings))
        for n in range(self.workers):
            worker = Worker(
                self.store, connectors, self._rules, budget=budget,
                worker_id=f"embedded-{n}", max_attempts=self.settings.worker_max_attempts,
                lease_seconds=self.settings.worker_lease_seconds,
            )
            thread = threading.Thread(
                target=worker.run_forever, args=(self.stop_event,), name=f"worker-{n}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        if self.clock:
            self._start_clock()

    def _rules(self):
        return self.rules.rules

    def _start_clock(self) -> None:
        try:
            clock = importlib.import_module("jobs.clock")
        except ModuleNotFoundError as err:
            if err.name != "jobs.clock":
                raise
            return
        scheduler = clock.build_scheduler(self.settings, self.store, self.rules)
        scheduler.start()
        self._stops.append(lambda: scheduler.shutdown(wait=False))

    def _start_sandbox(self, serve_in_thread) -> None:
        """Serve the sandbox helpdesk and send its webhooks to our own endpoint.

        `sandbox_port=0` (tests) picks a free port; the settings then point at it.
        """
        helpdesk = self.settings.helpdesk
        key = f"{helpdesk}_api_url"
        api = urlsplit(getattr(self.settings, key))
        port = api.port if self.sandbox_port is None else self.sandbox_port
        if helpdesk == "zendesk":
            from sandbox.zendesk import create_sandbox
        else:
            from sandbox.freshdesk import create_sandbox
        self.sandbox = create_sandbox(
            webhook_url=f"{self.base_url}/webhooks/{helpdesk}",
            webhook_secret=self.settings.webhook_secret(helpdesk),
        )
        base, stop = serve_in_thread(self.sandbox, api.hostname or "127.0.0.1", port or 0)
        self._stops.append(stop)
        self.settings = self.settings.model_copy(update={key: base})
        log.info("no %s credentials set: using the local sandbox at %s", helpdesk, base)

    def close(self) -> None:
        self.stop_event.set()
        for thread in self._threads:
            thread.join(timeout=5)
        for stop in reversed(self._stops):
            stop()


def _plan_field(settings: Settings) -> str | int | None:
    holder = RulesHolder(settings.rules_path)
    mapping = holder.rules.helpdesk.get(settings.helpdesk) if holder.status.loaded else None
    return mapping.fields.get("plan") if mapping else None


def seed_demo(settings: Settings) -> list[str]:
    """Create the demo tickets in the sandbox through its vendor-compatible API."""
    plan_field = _plan_field(settings)
    ids = []
    for demo in DEMO_TICKETS:
        if settings.helpdesk == "zendesk":
            from sandbox.zendesk_state import CUSTOMER_ID

            ticket: dict = {
                "subject": demo["subject"], "priority": demo["priority"], "requester_id": CUSTOMER_ID,
                "comment": {"body": demo["body"], "author_id": CUSTOMER_ID},
            }
            if plan_field is not None:
                ticket["custom_fields"] = [{"id": int(plan_field), "value": demo["plan"]}]
            response = requests.post(
                f"{settings.zendesk_api_url}/api/v2/tickets.json", json={"ticket": ticket},
                auth=(f"{settings.zendesk_email}/token", settings.zendesk_api_token), timeout=10,
            )
            response.raise_for_status()
            ids.append(str(response.json()["ticket"]["id"]))
        else:
            # Freshdesk numbers priorities 1 (low) to 4 (urgent); it requires one.
            number = {"low": 1, "normal": 2, "high": 3, "urgent": 4}.get(demo["priority"] or "normal")
            ticket = {
                "subject": demo["subject"], "description": demo["body"], "email": "customer@example.com",
                "priority": number, "status": 2,
            }
            if plan_field is not None:
                ticket["custom_fields"] = {str(plan_field): demo["plan"]}
            response = requests.post(
                f"{settings.freshdesk_api_url}/api/v2/tickets", json=ticket,
                auth=(settings.freshdesk_api_key, "X"), timeout=10,
            )
            response.raise_for_status()
            ids.append(str(response.json()["id"]))
        log.info("demo: created ticket %s %r (priority %s, plan %s)", ids[-1], demo["subject"],
                 demo["priority"], demo["plan"])
    return ids


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m jobs.run", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--workers", type=int, default=2, help="worker threads")
    parser.add_argument("--demo", action="store_true",
                        help="run against the local sandbox helpdesk, seed tickets and show the bot working")
    parser.add_argument("--exit-after", type=float, metavar="SECONDS",
                        help="stop after this many seconds (default: run until interrupted)")
    args = parser.parse_args(argv)
    settings = process_settings(sandbox=args.demo)
    service = Service(settings, args.host, args.port, workers=args.workers)
    signal.signal(signal.SIGTERM, lambda *_: service.stop_event.set())
    service.start()
    try:
        if args.demo:
            seed_demo(service.settings)
            seed_demo_console(service)  # console history, a dead letter, the demo admin
        deadline = None if args.exit_after is None else time.monotonic() + args.exit_after
        while not service.stop_event.is_set():
            if deadline is not None and time.monotonic() >= deadline:
                break
            service.stop_event.wait(0.2)
    except KeyboardInterrupt:
        log.info("interrupted")
    finally:
        service.close()
        log.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
