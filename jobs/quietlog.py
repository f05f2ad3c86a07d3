"""One log line per kind of failure per interval, with a count: outages stay readable."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass
class _Seen:
    since: float
    suppressed: int = 0


class RateLimitedLog:
    """Logs the first failure of each kind at once, then at most one line per `interval_seconds`.

    The line after a quiet spell says how many like it were held back, so a
    30-second database outage reads as a few lines with counts rather than one
    traceback per request. Kinds are whatever the caller passes as `key`
    (an exception class name, "webhook storage", ...). Thread-safe.

    Args:
        logger: where the lines go.
        interval_seconds: the shortest time between two lines of one kind.
        clock: monotonic seconds (tests pass a fake).
    """

    def __init__(self, logger: logging.Logger, interval_seconds: float = 60.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.logger = logger
        self.interval = interval_seconds
        self.clock = clock
        self._seen: dict[str, _Seen] = {}
        self._lock = threading.Lock()

    def log(self, level: int, key: str, message: str, *args: object) -> bool:
        """Log `message % args` unless a line of kind `key` went out less than an interval ago.

        Returns True when the line was written.
        """
        now = self.clock()
        with self._lock:
            seen = self._seen.get(key)
            if seen is not None and now - seen.since < self.interval:
                seen.suppressed += 1
                return False
            held_back = seen.suppressed if seen is not None else 0
            elapsed = now - seen.since if seen is not None else 0.0
            self._seen[key] = _Seen(since=now)
        if held_back:
            message += " (%d more like this in the last %.0fs)"
            args = (*args, held_back, elapsed)
        self.logger.log(level, message, *args)
        return True

    def warning(self, key: str, message: str, *args: object) -> bool:
        return self.log(logging.WARNING, key, message, *args)

    def error(self, key: str, message: str, *args: object) -> bool:
        return self.log(logging.ERROR, key, message, *args)
