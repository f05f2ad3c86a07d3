"""/metrics: Prometheus text, the instrumented events, and sums over several processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from console import metrics
from tests.console_support import NOW, console_app, seed

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
ROOT = Path(__file__).resolve().parent.parent


def scrape(client) -> dict[tuple[str, tuple], float]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(response.get_data(as_text=True)):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(samples, name, **labels) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@SQLITE_ONLY
def test_webhooks_are_counted_by_helpdesk_and_outcome(store):
    client = console_app(store).test_client()
    before = scrape(client)
    client.post("/webhooks/zendesk", data=b"{}", headers={"Content-Type": "application/json"})  # unsigned
    client.post("/webhooks/freshdesk", data=b"{}")  # this app serves zendesk
    after = scrape(client)
    assert value(after, "deskpilot_webhooks_received_total", helpdesk="zendesk", outcome="rejected") == \
        value(before, "deskpilot_webhooks_received_total", helpdesk="zendesk", outcome="rejected") + 1
    labels = {"helpdesk": "freshdesk", "outcome": "wrong_helpdesk"}
    assert value(after, "deskpilot_webhooks_received_total", **labels) == \
        value(before, "deskpilot_webhooks_received_total", **labels) + 1


def test_queue_gauges_come_from_the_database(store):
    client = console_app(store).test_client()
    from datetime import timedelta

    store.request_sync("zendesk", ["1", "2", "3"], NOW - timedelta(minutes=2), "test")
    samples = scrape(client)
    assert value(samples, "deskpilot_queue_depth") == 3
    assert value(samples, "deskpilot_queue_oldest_age_seconds") == 120
    assert value(samples, "deskpilot_dead_letters") == 0


@SQLITE_ONLY
def test_breaches_are_counted_once_when_a_target_turns_breached(store):
    before = metrics.sample("deskpilot_breaches_total")
    seed(store, 40)
    first = metrics.sample("deskpilot_breaches_total")
    assert first > before
    seed(store, 40)  # the same snapshots again: nothing new breached
    assert metrics.sample("deskpilot_breaches_total") == first


@SQLITE_ONLY
def test_rules_reloads_and_errors(store, tmp_path):
    from jobs.runtime import RulesHolder

    ok = metrics.sample("deskpilot_rules_reloads_total", {"outcome": "ok"})
    bad = metrics.sample("deskpilot_rules_reloads_total", {"outcome": "error"})
    rules = tmp_path / "rules.yaml"
    rules.write_text((ROOT / "rules" / "deskpilot.yaml").read_text())
    holder = RulesHolder(rules)
    rules.write_text("version: 1\npolicies: [\n")  # not YAML
    holder.reload()
    assert metrics.sample("deskpilot_rules_reloads_total", {"outcome": "ok"}) == ok + 1
    assert metrics.sample("deskpilot_rules_reloads_total", {"outcome": "error"}) == bad + 1


def test_every_issue_metric_is_exposed(store):
    metrics.vendor_request("zendesk", "get", 429)
    metrics.rate_limit_wait("zendesk", 2.0)
    metrics.decision("zendesk", True)
    metrics.writes("zendesk", [{"type": "set_priority"}])
    metrics.sweep_duration("zendesk", 0.2)
    metrics.reconcile_duration("zendesk", 0.4)
    text = console_app(store).test_client().get("/metrics").get_data(as_text=True)
    for name in ("deskpilot_webhooks_received", "deskpilot_queue_depth", "deskpilot_queue_oldest_age_seconds",
                 "deskpilot_decisions_total", "deskpilot_writes_total{action=\"set_priority\"",
                 "deskpilot_vendor_requests_total", "status=\"429\"", "deskpilot_rate_limit_waits_total",
                 "deskpilot_breaches", "deskpilot_sweep_duration_seconds_bucket",
                 "deskpilot_reconcile_duration_seconds_count", "deskpilot_rules_reloads"):
        assert name in text, name


def test_timing_skips_runs_that_did_not_happen():
    seen = []

    class Report:
        skipped = "another process holds the sweep"

    metrics.timing(lambda label, s: seen.append(label), "zendesk", Report)()
    metrics.timing(lambda label, s: seen.append(label), "zendesk", lambda: object())()
    assert seen == ["zendesk"]


def test_several_processes_add_up_in_multiprocess_mode(tmp_path):
    """What gunicorn's workers do: each process counts into PROMETHEUS_MULTIPROC_DIR; /metrics sums."""
    (tmp_path / "metrics").mkdir()
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"), "PYTHONPATH": str(ROOT)}
    count = textwrap.dedent("""
        from console import metrics
        for _ in range(3):
            metrics.webhook("zendesk", "queued")
        metrics.sweep_duration("zendesk", 0.5)
    """)
    for _ in range(2):
        subprocess.run([sys.executable, "-c", count], env=env, check=True, cwd=ROOT)  # noqa: S603
    expose = textwrap.dedent(f"""
        from datetime import UTC, datetime
        from console import metrics
        from store import Store
        store = Store("sqlite:///{tmp_path}/m.db"); store.migrate()
        print(metrics.exposition(store, lambda: datetime.now(UTC))[0].decode())
    """)
    out = subprocess.run([sys.executable, "-c", expose], env=env, check=True, cwd=ROOT,  # noqa: S603
                         capture_output=True, text=True).stdout
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(out) for s in f.samples}
    assert value(samples, "deskpilot_webhooks_received_total", helpdesk="zendesk", outcome="queued") == 6
    assert value(samples, "deskpilot_sweep_duration_seconds_count", helpdesk="zendesk") == 2
    assert value(samples, "deskpilot_queue_depth") == 0


def test_gunicorn_config_sets_a_metrics_directory(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    script = ("import runpy, os; runpy.run_path('gunicorn.conf.py'); "
              "print(os.environ['PROMETHEUS_MULTIPROC_DIR'])")
    out = subprocess.run([sys.executable, "-c", script], env=env, cwd=ROOT, check=True,  # noqa: S603
                         capture_output=True, text=True).stdout.strip()
    assert Path(out).is_dir()
    os.rmdir(out)


@SQLITE_ONLY
def test_worker_and_zendesk_connector_are_counted(store):
    """A real worker run against the Zendesk sandbox: a decision, its writes, the vendor requests."""
    from sandbox import serve_in_thread
    from sandbox.zendesk import create_sandbox
    from tests.test_worker import NOW as WORKER_NOW
    from tests.test_worker import create, enqueue, make_worker

    app = create_sandbox(clock=lambda: WORKER_NOW)
    base, stop = serve_in_thread(app)
    watched = (
        ("deskpilot_decisions_total", {"changed": "true"}),
        ("deskpilot_writes_total", {"action": "set_priority"}),
        ("deskpilot_vendor_requests_total", {"helpdesk": "zendesk", "method": "GET", "status": "200"}),
        ("deskpilot_vendor_requests_total", {"helpdesk": "zendesk", "method": "PUT", "status": "200"}),
    )
    try:
        before = [metrics.sample(name, labels) for name, labels in watched]
        ticket_id = create(app)
        enqueue(store, ticket_id, "m1")
        [outcome] = make_worker(store, base).run_once()
        assert outcome.wrote
        after = [metrics.sample(name, labels) for name, labels in watched]
    finally:
        stop()
    decisions, priority_writes, reads, puts = (a - b for a, b in zip(after, before, strict=True))
    assert (decisions, priority_writes, puts) == (1, 1, 1)
    assert reads >= 1


def test_freshdesk_429_counts_a_request_and_a_wait():
    import responses

    from connectors.freshdesk import FreshdeskConnector

    waits = []
    fd = FreshdeskConnector("acme.freshdesk.com", "secret-key", sleep=waits.append)
    limited = {"helpdesk": "freshdesk", "method": "GET", "status": "429"}
    before = (metrics.sample("deskpilot_vendor_requests_total", limited),
              metrics.sample("deskpilot_rate_limit_waits_total", {"helpdesk": "freshdesk"}),
              metrics.sample("deskpilot_rate_limit_wait_seconds_total", {"helpdesk": "freshdesk"}))
    with responses.RequestsMock() as rsps:
        rsps.get("https://acme.freshdesk.com/api/v2/jobs/j1", status=429, headers={"Retry-After": "7"})
        rsps.get("https://acme.freshdesk.com/api/v2/jobs/j1", json={"id": "j1", "status": "completed"})
        fd.job_status("j1")
    assert waits == [7.0]
    assert metrics.sample("deskpilot_vendor_requests_total", limited) == before[0] + 1
    assert metrics.sample("deskpilot_rate_limit_waits_total", {"helpdesk": "freshdesk"}) == before[1] + 1
    seconds = metrics.sample("deskpilot_rate_limit_wait_seconds_total", {"helpdesk": "freshdesk"})
    assert seconds == before[2] + 7


def test_gunicorn_start_clears_only_metric_files(tmp_path, monkeypatch):
    import runpy

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path))
    (tmp_path / "counter_123.db").write_bytes(b"x")
    (tmp_path / "gauge_max_123.db").write_bytes(b"x")
    (tmp_path / "deskpilot.db").write_bytes(b"keep")
    hooks = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    hooks["on_starting"](None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["deskpilot.db"]
