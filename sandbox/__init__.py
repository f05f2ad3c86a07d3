"""Local fake helpdesk servers for tests and demos, and the plumbing they share."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

import requests
from werkzeug.serving import make_server

log = logging.getLogger(__name__)


def serve_in_thread(app: Any, host: str = "127.0.0.1", port: int = 0) -> tuple[str, Callable[[], None]]:
    """Serve a WSGI app from a background thread; returns (base URL, stop).

    Port 0 picks a free port. `stop()` shuts the server down and joins the thread.
    """
    server = make_server(host, port, app, threaded=True)
    # A short poll interval keeps stop() (which waits for one poll) quick in tests.
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"sandbox-{server.server_port}", daemon=True)
    thread.start()

    def stop() -> None:
        server.shutdown()
        thread.join()
        server.server_close()

    return f"http://{host}:{server.server_port}", stop


class WebhookSender:
    """Delivers webhook bodies to one URL, in order, from one background thread.

    `headers_for(body)` returns the headers to send with a body (the vendor's
    signature scheme). Each outcome lands in `deliveries`; `wait_idle()` blocks
    until everything queued so far was attempted.
    """

    def __init__(self, url: str, headers_for: Callable[[bytes], dict[str, str]],
                 timeout: float = 5.0) -> None:
        self.url = url
        self.deliveries: list[dict[str, Any]] = []
        self._headers_for = headers_for
        self._timeout = timeout
        self._queue: list[bytes] = []
        self._busy = False
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None

    def send(self, body: bytes) -> None:
        """Queue one body; the thread starts on first use."""
        with self._cond:
            self._queue.append(body)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="sandbox-webhooks", daemon=True)
                self._thread.start()
            self._cond.notify_all()

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """True once the queue is empty and no delivery is in flight; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: not self._queue and not self._busy, timeout)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: bool(self._queue))
                body = self._queue.pop(0)
                self._busy = True
            outcome: dict[str, Any] = {"url": self.url, "body": body}
            try:
                response = requests.post(self.url, data=body, headers=self._headers_for(body),
                                         timeout=self._timeout)
                outcome["status"] = response.status_code
            except requests.RequestException as err:
                log.warning("sandbox webhook to %s failed: %s", self.url, err)
                outcome["status"], outcome["error"] = None, repr(err)
            with self._cond:
                self.deliveries.append(outcome)
                self._busy = False
                self._cond.notify_all()
