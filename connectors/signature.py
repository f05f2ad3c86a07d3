"""HMAC webhook signatures: one `sign()` for senders and tests, one `verify()` for receivers."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import UTC, datetime

DEFAULT_WINDOW_SECONDS = 300


class SignatureError(Exception):
    """The request is not signed by someone who knows the secret (or is stale)."""


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """Zendesk's scheme: base64(HMAC-SHA256(secret, timestamp + raw body)).

    https://developer.zendesk.com/documentation/webhooks/verifying/
    """
    digest = hmac.new(secret.encode(), timestamp.encode() + body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def parse_timestamp(timestamp: str) -> datetime:
    """An ISO-8601 instant (`2026-11-20T14:30:00Z`); naive values are taken as UTC."""
    value = datetime.fromisoformat(timestamp.strip().replace("Z", "+00:00"))
    return value if value.tzinfo else value.replace(tzinfo=UTC)


def verify(
    secret: str,
    timestamp: str | None,
    body: bytes,
    signature: str | None,
    now: datetime,
    window_seconds: int = DEFAULT_WINDOW_SECONDS,
) -> None:
    """Raise SignatureError unless `signature` signs `timestamp + body` and is fresh.

    The comparison is constant-time; the window rejects replays of old requests.
    """
    if not secret:
        raise SignatureError("no secret configured")
    if not timestamp or not signature:
        raise SignatureError("missing signature or timestamp header")
    try:
        sent_at = parse_timestamp(timestamp)
    except ValueError as err:
        raise SignatureError("unreadable signature timestamp") from err
    expected = sign(secret, timestamp, body)
    if not hmac.compare_digest(expected.encode(), signature.strip().encode()):
        raise SignatureError("signature mismatch")
    if abs((now - sent_at).total_seconds()) > window_seconds:
        raise SignatureError("timestamp outside the replay window")
