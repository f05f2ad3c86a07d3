"""The web process's gunicorn worker: threads, and a read timeout for every request.

gunicorn's threaded worker (gthread) keeps slow clients from holding the
whole process, but a client that trickles its request byte by byte still
holds one thread for as long as it likes. This worker bounds every read of a
request (headers and body) by WEB_READ_TIMEOUT_SECONDS; a client that stalls
longer is disconnected with one log line, and the thread serves the next
webhook. A client that trickles a byte at a time inside that bound is the
front proxy's to cut off (docs/deployment.md). gunicorn.conf.py selects it.
"""

from __future__ import annotations

import errno
import logging
import os

from gunicorn.workers import gthread

# Zendesk gives up on a delivery after 12 s; a real webhook arrives in milliseconds.
DEFAULT_READ_TIMEOUT_SECONDS = 5.0


def read_timeout(environ: dict[str, str] = os.environ) -> float:  # type: ignore[assignment]
    """WEB_READ_TIMEOUT_SECONDS, or the default; at least one second."""
    raw = environ.get("WEB_READ_TIMEOUT_SECONDS", "").strip()
    try:
        value = float(raw) if raw else DEFAULT_READ_TIMEOUT_SECONDS
    except ValueError:
        raise SystemExit("error: WEB_READ_TIMEOUT_SECONDS must be a number of seconds >= 1") from None
    if not value >= 1:
        raise SystemExit("error: WEB_READ_TIMEOUT_SECONDS must be a number of seconds >= 1")
    return value


class ReadTimeoutConn(gthread.TConn):
    """A connection whose socket reads time out (set each time a thread takes it up)."""

    read_timeout = DEFAULT_READ_TIMEOUT_SECONDS

    def init(self) -> None:
        super().init()
        self.sock.settimeout(self.read_timeout)


class _SlowClientFilter(logging.Filter):
    """gunicorn logs a timed-out read as a socket error with a traceback: one line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, TimeoutError):
            record.msg = "slow client disconnected: its request stalled for %.0fs"
            record.args = (ReadTimeoutConn.read_timeout,)
            record.exc_info = None
            record.exc_text = None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


class ThreadWorker(gthread.ThreadWorker):
    """gthread with ReadTimeoutConn connections."""

    def init_process(self) -> None:
        ReadTimeoutConn.read_timeout = read_timeout()
        self.log.error_log.addFilter(_SlowClientFilter())
        super().init_process()

    def accept(self, listener) -> None:  # as gthread.ThreadWorker.accept, with ReadTimeoutConn
        try:
            client_sock, client_addr = listener.accept()
            self.nr_conns += 1
            client_sock.setblocking(True)
            conn = ReadTimeoutConn(self.cfg, client_sock, client_addr, listener.getsockname())
            self.enqueue_req(conn)
        except OSError as e:
            if e.errno not in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                raise
