"""The Procfile's web process under gunicorn: slow clients, chunked bodies, start-up errors.

Each test starts gunicorn on a free local port with the repository's gunicorn.conf.py.
Bounds are generous: they tell "acked" from "blocked until a 30 s worker timeout".
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
import requests

from config import SANDBOX_WEBHOOK_SECRET
from connectors.signature import sign

ROOT = Path(__file__).resolve().parent.parent
GUNICORN = str(Path(sys.executable).with_name("gunicorn"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def web_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items()
           if not key.startswith(("ZENDESK_", "FRESHDESK_", "HELPDESK", "WEB_", "DATABASE_"))}
    env.update(HELPDESK="zendesk", HELPDESK_SANDBOX="1", DATABASE_URL=f"sqlite:///{tmp_path / 'web.db'}",
               RULES_PATH=str(ROOT / "rules"), HOST="127.0.0.1", PORT=str(port), WEB_CONCURRENCY="1",
               PYTHONPATH=str(ROOT), LOG_LEVEL="INFO")
    env.update(extra)
    return env


def procfile_web_command() -> list[str]:
    line = next(x for x in (ROOT / "Procfile").read_text().splitlines() if x.startswith("web:"))
    args = line.removeprefix("web:").split()
    assert args[0] == "gunicorn" and "--config" in args
    return [GUNICORN, *[a.strip('"') for a in args[1:]]]


def start(tmp_path: Path, **extra: str) -> Iterator[str]:
    port = free_port()
    log = open(tmp_path / "gunicorn.log", "w")  # noqa: SIM115 - closed below
    process = subprocess.Popen(procfile_web_command(), cwd=ROOT, env=web_env(tmp_path, port, **extra),
                               stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                requests.get(f"{base}/healthz", timeout=2)
                break
            except requests.ConnectionError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError((tmp_path / "gunicorn.log").read_text()) from None
                time.sleep(0.1)
        yield base
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@pytest.fixture
def web(tmp_path) -> Iterator[str]:
    yield from start(tmp_path)


def webhook(base: str, ticket_id: str = "5", timeout: float = 20) -> tuple[requests.Response, float]:
    body = json.dumps({"deskpilot": 1, "event": "trigger", "ticket_id": ticket_id}).encode()
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {"X-Zendesk-Webhook-Signature-Timestamp": timestamp, "Content-Type": "application/json",
               "X-Zendesk-Webhook-Signature": sign(SANDBOX_WEBHOOK_SECRET, timestamp, body)}
    started = time.monotonic()
    response = requests.post(f"{base}/webhooks/zendesk", data=body, headers=headers, timeout=timeout)
    return response, time.monotonic() - started


def slow_clients(base: str, count: int) -> list[socket.socket]:
    """Clients that send the start of a request and then nothing."""
    port = int(base.rsplit(":", 1)[1])
    socks = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(b"POST /webhooks/zendesk HTTP/1.1\r\nHost: deskpilot\r\nContent-Length: 100\r\n")
        socks.append(sock)
    time.sleep(0.5)
    return socks


def test_slow_clients_do_not_block_intake(web):
    socks = slow_clients(web, 8)  # twice the four that held every sync worker
    try:
        response, seconds = webhook(web)
        assert response.status_code == 202
        assert seconds < 8  # acked at once, not after gunicorn's 30 s timeout
    finally:
        for sock in socks:
            sock.close()


def test_stalled_requests_are_cut_off_by_the_read_timeout(tmp_path):
    for base in start(tmp_path, WEB_THREADS="2", WEB_READ_TIMEOUT_SECONDS="2"):
        socks = slow_clients(base, 4)  # more than the threads
        try:
            response, seconds = webhook(base)
            assert response.status_code == 202
            assert seconds < 15
            log = (tmp_path / "gunicorn.log").read_text()
            assert "slow client disconnected" in log and "Traceback" not in log
        finally:
            for sock in socks:
                sock.close()


def raw_request(base: str, request: bytes) -> bytes:
    port = int(base.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        data = sock.recv(65536)
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            more = sock.recv(65536)
            if not more:
                break
            body += more
        return head + b"\r\n\r\n" + body


def test_malformed_chunks_and_large_chunked_bodies_are_4xx(web, tmp_path):
    unsigned = raw_request(web, b"POST /webhooks/zendesk HTTP/1.1\r\nHost: x\r\n"
                                b"Transfer-Encoding: chunked\r\n\r\nZZZ\r\nabc\r\n0\r\n\r\n")
    assert unsigned.startswith(b"HTTP/1.1 401")
    timestamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    signature = sign(SANDBOX_WEBHOOK_SECRET, timestamp, b"abc")
    signed = raw_request(web, b"POST /webhooks/zendesk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
                              b"X-Zendesk-Webhook-Signature-Timestamp: " + timestamp.encode() + b"\r\n"
                              b"X-Zendesk-Webhook-Signature: " + signature.encode() + b"\r\n\r\n"
                              b"ZZZ\r\nabc\r\n0\r\n\r\n")
    assert signed.startswith(b"HTTP/1.1 400") and b"could not be read" in signed
    big = b"x" * (1024 * 1024 + 10)

    def chunks():
        for start in range(0, len(big), 65536):
            yield big[start : start + 65536]

    headers = {"X-Zendesk-Webhook-Signature-Timestamp": timestamp,
               "X-Zendesk-Webhook-Signature": sign(SANDBOX_WEBHOOK_SECRET, timestamp, big)}
    response = requests.post(f"{web}/webhooks/zendesk", data=chunks(), headers=headers, timeout=20)
    assert response.status_code == 413
    header = "２０２６-11-20T15:30:00Z".encode()
    odd = raw_request(web, b"POST /webhooks/zendesk HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
                           b"X-Zendesk-Webhook-Signature-Timestamp: " + header + b"\r\n"
                           b"X-Zendesk-Webhook-Signature: abc\r\n\r\n{}")
    assert odd.startswith(b"HTTP/1.1 4")
    log = (tmp_path / "gunicorn.log").read_text()
    assert "Traceback" not in log


def test_start_up_without_credentials_fails_with_one_line(tmp_path):
    env = web_env(tmp_path, free_port())
    del env["HELPDESK_SANDBOX"]
    env["ZENDESK_SUBDOMIAN"] = "acme"  # a typo is not a request for the sandbox
    result = subprocess.run(procfile_web_command(), cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=60, check=False)
    assert result.returncode != 0
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith("error:")]
    assert lines == [
        "error: ZENDESK_SUBDOMAIN, ZENDESK_EMAIL, ZENDESK_API_TOKEN, ZENDESK_WEBHOOK_SECRET are not set: "
        "HELPDESK=zendesk needs all of ZENDESK_SUBDOMAIN, ZENDESK_EMAIL, ZENDESK_API_TOKEN, "
        "ZENDESK_WEBHOOK_SECRET (or HELPDESK_SANDBOX=1 to run against the local sandbox)"]
    assert "Traceback" not in result.stderr
