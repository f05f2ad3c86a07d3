"""Webhook in -> inbox -> worker -> helpdesk write -> echo webhook -> no further write, all over HTTP."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
import requests

from config import load_settings
from jobs.run import DEMO_TICKETS, Service, seed_demo

ROOT = Path(__file__).resolve().parent.parent


def wait_quiet(service: Service, seconds: float = 15.0) -> None:
    """Until the sandbox has delivered every webhook and the queue is empty, twice in a row."""
    deadline = time.monotonic() + seconds
    calm = 0
    while time.monotonic() < deadline:
        service.sandbox.wait_idle(timeout=2)
        health = service.store.health()
        calm = calm + 1 if health["backlog"] == 0 and health["inbox_pending"] == 0 else 0
        if calm >= 3:
            return
        time.sleep(0.1)
    raise AssertionError(f"still busy: {service.store.health()}")


@pytest.fixture(params=["zendesk", "freshdesk"])
def service(request, database_url):
    settings = load_settings(
        {"HELPDESK": request.param, "DATABASE_URL": database_url, "RULES_PATH": str(ROOT / "rules")},
        env_file=None, sandbox=True,
    )
    service = Service(settings, "127.0.0.1", 0, workers=2, sandbox_port=0, clock=False)
    service.start()
    yield service
    service.close()


def test_bot_decides_writes_and_converges(service):
    ids = seed_demo(service.settings)
    assert len(ids) == len(DEMO_TICKETS)
    wait_quiet(service)
    state = service.sandbox.state
    puts = [r for r in state.requests if r["method"] == "PUT" and r["status"] == 200]
    written = {r["path"].rstrip("/").removesuffix(".json").rsplit("/", 1)[-1] for r in puts}
    # The how-to ticket is downgraded, the no-priority ticket gets the default,
    # the advanced P1 gets its SLA fields; the basic plan needs only its fields cleared.
    by_subject = {d["subject"]: i for d, i in zip(DEMO_TICKETS, ids, strict=True)}
    assert by_subject["How do I forward calls to my mobile?"] in written
    assert by_subject["Call recordings are late"] in written
    # Each ticket is written at most once: the echo webhooks of our own writes
    # were received (202) and converged to no further write.
    assert len(puts) == len(written)
    deliveries = service.sandbox.webhooks.deliveries
    assert deliveries and all(d.get("status") == 202 for d in deliveries)
    health = requests.get(f"{service.base_url}/healthz", timeout=5).json()
    assert health["status"] == "ok" and health["backlog"] == 0 and health["dead_letters"] == 0


def test_bad_signature_is_refused_and_not_stored(service):
    if service.settings.helpdesk != "zendesk":
        pytest.skip("Zendesk signatures")
    response = requests.post(
        f"{service.base_url}/webhooks/zendesk", data=b'{"type": "zen:event-type:ticket.created"}',
        headers={"X-Zendesk-Webhook-Signature": "forged", "X-Zendesk-Webhook-Signature-Timestamp":
                 "2026-11-22T10:00:00Z", "Content-Type": "application/json"}, timeout=5,
    )
    assert response.status_code == 401 and service.store.health()["inbox_pending"] == 0
