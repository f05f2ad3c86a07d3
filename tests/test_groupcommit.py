"""Group commit (store/groupcommit.py) and the webhook intake's batches (Store.enqueue)."""

from __future__ import annotations

import random
import threading
import time
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from store.groupcommit import GroupCommit
from store.models import inbox_events, ticket_work

NOW = datetime(2026, 12, 3, 9, 0, tzinfo=UTC)


class Recorder:
    """A batch runner that records its batches; `gate` holds the first batch until set."""

    def __init__(self, gate: threading.Event | None = None) -> None:
        self.batches: list[list[int]] = []
        self.gate = gate
        self.entered = threading.Event()

    def __call__(self, items: list[int]) -> list[object]:
        self.batches.append(list(items))
        self.entered.set()
        if self.gate is not None and len(self.batches) == 1:
            assert self.gate.wait(5)
        return [ValueError(f"bad {item}") if item < 0 else item * 10 for item in items]


def _submit_all(group: GroupCommit, items: list[int]) -> dict[int, object]:
    results: dict[int, object] = {}

    def one(item: int) -> None:
        try:
            results[item] = group.submit(item)
        except ValueError as err:
            results[item] = err

    threads = [threading.Thread(target=one, args=(item,)) for item in items]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
        assert not thread.is_alive()
    return results


def test_a_lone_item_runs_at_once_in_its_own_thread():
    runner = Recorder()
    assert GroupCommit(runner).submit(4) == 40
    assert runner.batches == [[4]]


def test_items_arriving_while_a_batch_runs_share_the_next_one_and_each_gets_its_own_result():
    gate = threading.Event()
    runner = Recorder(gate)
    group = GroupCommit(runner, max_batch=5)
    first = threading.Thread(target=group.submit, args=(1,))
    first.start()
    assert runner.entered.wait(5)  # the first batch is running (held at the gate)
    waiting: dict[int, object] = {}
    threads = [threading.Thread(target=lambda n=n: waiting.__setitem__(n, group.submit(n)))
               for n in range(2, 9)]
    for thread in threads:
        thread.start()
    time.sleep(0.2)  # all seven queue behind the running batch
    gate.set()
    for thread in [first, *threads]:
        thread.join(5)
    assert runner.batches[0] == [1]
    assert sorted(runner.batches[1] + runner.batches[2]) == list(range(2, 9))
    assert len(runner.batches) == 3 and len(runner.batches[1]) == 5  # at most max_batch at a time
    assert waiting == {n: n * 10 for n in range(2, 9)}


def test_one_items_error_is_raised_in_its_thread_only_and_a_failed_batch_fails_only_itself():
    group = GroupCommit(Recorder())
    results = _submit_all(group, [1, -2, 3])
    assert results[1] == 10 and results[3] == 30 and isinstance(results[-2], ValueError)

    calls = {"n": 0}

    def flaky(items):
        calls["n"] += 1
        if calls["n"] == 1:
            raise ConnectionError("the database went away")
        return [item for item in items]

    group = GroupCommit(flaky)
    with pytest.raises(ConnectionError):
        group.submit(1)
    assert group.submit(2) == 2  # the next batch runs: the lead was given back


def test_many_threads_each_get_their_own_result_and_the_lead_is_never_lost():
    rng = random.Random(20261203)
    lock = threading.Lock()
    seen: list[int] = []

    def slow(items):
        time.sleep(rng.random() / 500)
        with lock:
            seen.extend(items)
        return [ValueError(str(item)) if item % 97 == 0 else item + 1 for item in items]

    group = GroupCommit(slow, max_batch=8)
    results = _submit_all(group, list(range(1, 600)))
    assert sorted(seen) == list(range(1, 600))  # every item ran exactly once
    for item, result in results.items():
        if item % 97 == 0:
            assert isinstance(result, ValueError) and str(result) == str(item)
        else:
            assert result == item + 1


# -- the webhook intake's batches -------------------------------------------------------------


def _event(n: int, ticket: str = "7", **fields) -> dict:
    return {"source": "zendesk", "dedupe_key": f"delivery-{n}", "ticket_id": ticket,
            "event_type": "zen:event-type:ticket.comment_added", "payload": {"n": n},
            "received_at": NOW, "settle_seconds": 0.0, **fields}


def _stored(store) -> list[str]:
    with store.engine.connect() as conn:
        return sorted(conn.execute(sa.select(inbox_events.c.dedupe_key)).scalars())


def test_a_batch_stores_each_event_once_and_queues_each_ticket(store):
    items = [_event(1), _event(2, ticket="8"), _event(1), _event(3)]  # a redelivery inside the batch
    assert store._enqueue_batch(items) == [True, True, False, True]
    assert _stored(store) == ["delivery-1", "delivery-2", "delivery-3"]
    assert store._enqueue_batch([_event(2, ticket="8"), _event(4, ticket="8")]) == [False, True]
    with store.engine.connect() as conn:
        queued = sorted(conn.execute(sa.select(ticket_work.c.ticket_id)).scalars())
    assert queued == ["7", "8"]


def test_an_event_the_database_refuses_fails_alone_and_the_rest_of_its_batch_is_stored(store):
    bad = _event(2, payload={"not json": {1, 2}})  # a set: the JSON column cannot hold it
    results = store._enqueue_batch([_event(1), bad, _event(3)])
    assert results[0] is True and results[2] is True
    assert isinstance(results[1], TypeError)
    assert _stored(store) == ["delivery-1", "delivery-3"]


def test_concurrent_webhooks_are_all_stored_once(store):
    keys = [n % 150 for n in range(300)]  # every delivery twice, from different threads

    def deliver(n: int) -> bool:
        return store.enqueue(**_event(n, ticket=str(n % 11)))

    results: list[bool] = []
    lock = threading.Lock()

    def worker(chunk):
        for n in chunk:
            stored = deliver(n)
            with lock:
                results.append((n, stored))

    threads = [threading.Thread(target=worker, args=(keys[i::12],)) for i in range(12)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    firsts = sorted(n for n, stored in results if stored)
    assert firsts == list(range(150))  # each delivery stored by exactly one of its two calls
    assert _stored(store) == sorted(f"delivery-{n}" for n in range(150))
