"""benchmarks/webhooks.py on tiny sizes: every code path runs and yields numbers (no timing asserted)."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from urllib.parse import urlsplit

import pytest

from benchmarks import bare_app
from benchmarks.webhooks import (
    Gunicorn,
    Load,
    bare_target,
    bench_calls,
    bench_intake,
    bench_live,
    count_calls,
    deskpilot_target,
    drive,
    print_calls,
    print_intake,
    problems,
    signed_webhooks,
)
from connectors.signature import verify
from sandbox import serve_in_thread

SQLITE_ONLY = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def test_webhooks_are_unique_and_verify_with_the_secret():
    deliveries = signed_webhooks(12, "s3cret", tickets=5)
    assert len({event_id for event_id, _, _ in deliveries}) == 12
    for event_id, body, headers in deliveries:
        verify("s3cret", headers["X-Zendesk-Webhook-Signature-Timestamp"], body,
               headers["X-Zendesk-Webhook-Signature"], datetime.now(UTC))
        parsed = json.loads(body)
        assert parsed["id"] == event_id and 1 <= int(parsed["detail"]["id"]) <= 5


def test_drive_counts_acknowledgements_and_failures():
    base, stop = serve_in_thread(bare_app.create_app())
    try:
        port = urlsplit(base).port
        load = drive(port, signed_webhooks(10, "unused"), concurrency=3)
    finally:
        stop()
    assert len(load.latencies) == 10 and len(load.acked) == 10 and not load.failures
    assert load.rps > 0 and 0 < load.percentile(0.5) <= load.percentile(0.99)
    closed = drive(port, signed_webhooks(4, "unused"), concurrency=2)  # nothing listens any more
    assert closed.latencies == [] and sum(closed.failures.values()) == 4


def test_intake_under_gunicorn_stores_every_acknowledged_webhook(database_url, tmp_path, capsys):
    server = Gunicorn(workers=2)
    targets = [bare_target(), deskpilot_target("db", database_url)]
    loads = bench_intake(server, targets, requests=20, concurrency=2, rounds=2, workdir=tmp_path)
    bare, deskpilot = loads
    for load in loads:
        assert len(load.latencies) == 20 and not load.failures
        assert load.rps > 0 and 0 < load.percentile(0.5) <= load.percentile(0.99)
        assert len(load.acked) == 20 + 4 * 2  # the timed webhooks and the warm-up
    assert bare.stored is None
    assert deskpilot.stored == len(deskpilot.acked)
    print_intake(loads, server, concurrency=2, rounds=2)
    table = capsys.readouterr().out
    assert "deskpilot db" in table and f"{deskpilot.stored}/{deskpilot.stored} stored" in table


def test_a_burst_is_one_evaluation_and_a_repeat_writes_nothing(database_url, capsys):
    first, repeat = bench_calls(database_url, tickets=4, burst=3)
    assert (first.events, repeat.events) == (12, 12)
    # The burst coalesces into one claim per ticket; three of the four demo tickets need a write.
    assert first.evaluations == 4 and first.written == 3 and first.errors == 0
    assert first.reads >= first.evaluations + 1  # one show_many, then each new ticket's audits
    assert repeat.evaluations == 4 and repeat.writes == 0 and repeat.errors == 0
    assert problems([], [first, repeat]) == []
    print_calls([first, repeat], burst=3)
    assert "repeat burst" in capsys.readouterr().out


@SQLITE_ONLY
def test_live_round_counts_echo_bursts(database_url):
    live = bench_live(database_url, tickets=4)
    assert live.written == 3 and live.errors == 0
    # A created event per ticket, then the echoes of the bot's own writes.
    assert live.events > live.tickets
    # One read per new ticket; the echo bursts of the bot's own writes settle without one
    # (an echo stamped in the same second as the read it follows is read, to be safe).
    assert live.ideal == 4 + 3 and live.tickets <= live.evaluations <= live.ideal


def test_count_calls_reads_the_request_log():
    log = [
        {"method": "GET", "path": "/api/v2/tickets/7.json"},
        {"method": "GET", "path": "/api/v2/tickets/7/audits.json"},
        {"method": "GET", "path": "/api/v2/users/me.json"},
        {"method": "PUT", "path": "/api/v2/tickets/7.json"},
        {"method": "PUT", "path": "/api/v2/tickets/7.json"},
        {"method": "POST", "path": "/api/v2/tickets.json"},
    ]
    calls = count_calls("r", tickets=2, events=5, requests=log)
    assert (calls.evaluations, calls.reads, calls.writes, calls.written, calls.ideal) == (1, 3, 2, 1, 2)
    assert calls.per_ticket(calls.reads) == 1.5


def test_problems_name_lost_webhooks_and_needless_writes():
    lost = Load("deskpilot x", acked={"a", "b", "c"}, stored=2)
    kept = Load("deskpilot y", acked={"a"}, stored=1)
    rewrite = count_calls("repeat burst", 1, 1, [{"method": "PUT", "path": "/api/v2/tickets/1.json"}])
    assert problems([lost, kept], [rewrite]) == [
        "deskpilot x: 1 acknowledged webhooks missing from the inbox",
        "repeat burst: 1 writes to tickets already in their decided state",
    ]


def test_rounds_add_up():
    total = Load("t")
    total.add(Load("t", seconds=1.0, latencies=[0.001], failures=Counter({"HTTP 503": 1}), acked={"a"},
                   client_cpu=0.5, server_cpu=0.25, machine_cpu=1.0))
    total.add(Load("t", seconds=1.0, latencies=[0.003], acked={"b"}, client_cpu=0.5, server_cpu=None))
    assert total.rps == 1.0 and total.acked == {"a", "b"} and total.failures["HTTP 503"] == 1
    assert total.server_cpu is None and total.machine_cpu == 1.0 and total.client_cpu == 1.0
    assert total.percentile(0.99) == pytest.approx(3.0)


def test_bare_app_answers_202_json():
    client = bare_app.create_app().test_client()
    response = client.post(bare_app.PATH, data=b'{"x": 1}')
    assert response.status_code == 202 and response.get_json() == {"status": "queued"}
