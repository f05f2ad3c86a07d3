"""Group commit: what concurrent threads submit runs in shared transactions, one batch at a time."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class _Slot(Generic[T]):
    __slots__ = ("item", "ready", "done", "result", "error")

    def __init__(self, item: T) -> None:
        self.item = item
        self.ready = threading.Event()  # set when the result is in, or the lead is handed over
        self.done = False
        self.result: object = None
        self.error: BaseException | None = None


class GroupCommit(Generic[T, R]):
    """Runs the items threads submit in batches, each batch by `run` (one transaction for it).

    The thread whose item finds no batch running leads: it takes every item waiting (up to
    `max_batch`), runs them, gives each its result, and hands the lead to the first item
    still waiting, whose thread runs the next batch. Nothing waits for a timer: a lone item
    runs at once, and under load each batch holds what arrived while the previous one ran,
    so a process commits once per batch instead of once per item, and its threads do not
    queue one by one for the database's write lock.

    `run` returns one result per item, in order: a value, or the exception that item
    raises in its thread. An exception escaping `run` is raised in every thread of the batch.
    """

    def __init__(self, run: Callable[[list[T]], Sequence[R | BaseException]], max_batch: int = 100) -> None:
        self._run = run
        self.max_batch = max_batch
        self._lock = threading.Lock()
        self._waiting: list[_Slot[T]] = []
        self._leading = False

    def submit(self, item: T) -> R:
        """Run `item` in the next batch and return its result (or raise its exception)."""
        slot: _Slot[T] = _Slot(item)
        with self._lock:
            self._waiting.append(slot)
            lead = not self._leading
            self._leading = True
        if not lead:
            slot.ready.wait()
        if not slot.done:  # leading: this thread runs batches until its own item is in one
            try:
                while not slot.done:
                    with self._lock:
                        batch = self._waiting[: self.max_batch]
                        del self._waiting[: self.max_batch]
                    self._finish(batch)
            finally:
                with self._lock:
                    if self._waiting:
                        self._waiting[0].ready.set()  # not done: its thread leads the next batch
                    else:
                        self._leading = False
        if slot.error is not None:
            raise slot.error
        return slot.result  # type: ignore[return-value]

    def _finish(self, batch: list[_Slot[T]]) -> None:
        try:
            results: Sequence[R | BaseException] = self._run([slot.item for slot in batch])
            if len(results) != len(batch):
                raise RuntimeError(f"group commit: {len(results)} results for {len(batch)} items")
        except BaseException as err:  # every item of the batch fails with it
            results = [err] * len(batch)
        for slot, result in zip(batch, results, strict=True):
            if isinstance(result, BaseException):
                slot.error = result
            else:
                slot.result = result
            slot.done = True
            slot.ready.set()
