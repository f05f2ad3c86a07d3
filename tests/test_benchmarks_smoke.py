"""Every benchmark's smallest configuration runs to the end and prints its ratio line.

Figures are not asserted (the guide: never timed tests); a benchmark that no longer
runs against the code it measures fails here instead of when someone next measures.
PostgreSQL parts run only where TEST_DATABASE_URL is set (as the benchmarks decide).
"""

from __future__ import annotations

import logging
import re

import pytest

from benchmarks import api_economy, board, engine, simulate, snapshots, sweep, webhooks


@pytest.fixture(autouse=True)
def _logging_restored():
    yield
    logging.disable(logging.NOTSET)  # api_economy silences INFO for its whole process


def run(capsys, main, argv: list[str], codes: tuple[int, ...] = (0,)) -> str:
    code = main(argv)
    out = capsys.readouterr().out
    assert code in codes, out
    return out


def test_engine(capsys):
    out = run(capsys, engine.main, ["--tickets", "60"])
    assert re.search(r"ratio ours / theirs:\s+\d", out)
    assert re.search(r"cross-check first_response due: (\d+) of \1 agree", out)


def test_sweep_bulk_per_ticket_and_replan(capsys):
    # 1 when a goal is not met (writes per ticket on a tiny due set): a figure, not a failure.
    out = run(capsys, sweep.main, ["--tickets", "300", "--due", "0.02", "--repeat", "1",
                                   "--baseline-sample", "2"], codes=(0, 1))
    assert re.search(r"baseline per-ticket: .* 2\.000 writes", out)
    assert re.search(r"ratio baseline / bulk: [\d.]+x time, \d+x writes", out)
    assert re.search(r"ratio baseline / batched: [\d.]+x", out)


def test_board(capsys):
    out = run(capsys, board.main, ["--tickets", "200", "--repeat", "1"])
    assert re.search(r"ratio baseline / board: [\d.]+x", out)


def test_snapshots(capsys):
    out = run(capsys, snapshots.main, ["--tickets", "2", "--evaluations", "6", "--repeat", "1"])
    assert re.search(r"SQLite: 2 ticket\(s\) x 6 evaluations", out)
    assert re.search(r"ratio baseline / chunked: [\d.]+x bytes, [\d.]+x time", out)


def test_simulate(capsys):
    out = run(capsys, simulate.main, ["--tickets", "30", "--fetch-tickets", "30"])
    assert len(re.findall(r"replay costs [\d.]+x that", out)) == 2
    assert re.search(r"baseline, the connector's per-ticket read .*; ratio [\d.]+x", out)


def test_api_economy(capsys):
    out = run(capsys, api_economy.main, ["--tickets", "3", "--due", "3"])
    assert len(re.findall(r"ratio baseline/economy: [\d.]+x fewer calls", out)) == 2
    assert re.search(r"3 due auto-closes under the default budget, snapshots stored by the worker: "
                     r"3 closed", out)
    assert re.search(r"reads per closed ticket, baseline / stored snapshots: [\d.]+x fewer", out)


def test_webhooks(capsys):
    out = run(capsys, webhooks.main, ["--requests", "8", "--rounds", "1", "--concurrency", "2",
                                      "--tickets", "2", "--burst", "2"])
    assert "gunicorn.conf.py" in out
    rows = re.findall(r"^deskpilot (\w+) .* (\d\.\d\d)  (\d+)/\3 stored$", out, re.MULTILINE)
    assert rows and rows[0][0] == "sqlite"
    assert re.search(r"^repeat burst .* 0\.00 +0 +0$", out, re.MULTILINE)
