"""Zendesk webhook signatures against the construction Zendesk publishes, on both sides.

Zendesk's verifying guide (https://developer.zendesk.com/documentation/webhooks/verifying/)
gives the scheme base64(HMACSHA256(TIMESTAMP + BODY)), the static secret every test
delivery from the webhook builder is signed with, and a Node.js example that keys the HMAC
with that secret string as is. The vector below follows that example; it was computed with
OpenSSL (`printf '%s' "$TIMESTAMP$BODY" | openssl dgst -sha256 -hmac "$SECRET" -binary |
base64`), not with our code, so the receiver (connectors.signature) and the sandbox's own
signer are each checked against an outside computation.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import datetime

import pytest

from connectors.signature import SignatureError, verify
from sandbox.zendesk import zendesk_signature

STATIC_TEST_SECRET = "dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ=="
TIMESTAMP = "2021-03-25T05:09:27Z"
BODY = b'{"event":"ticket.updated","id":123}'
SIGNATURE = "S/RDdU2ERmj7LHDDoWJ2onPYH+t7/f2+LTM4dL7UiLM="
AT = datetime.fromisoformat("2021-03-25T05:09:30+00:00")


def test_the_receiver_accepts_the_published_construction():
    verify(STATIC_TEST_SECRET, TIMESTAMP, BODY, SIGNATURE, AT)


def test_the_sandbox_signs_like_zendesk():
    assert zendesk_signature(STATIC_TEST_SECRET, TIMESTAMP, BODY) == SIGNATURE


def test_the_secret_is_not_base64_decoded_before_keying():
    # The secret looks like base64; a delivery is keyed with the string itself, as the
    # Node.js example does. Decoding it first gives a signature Zendesk never sends.
    decoded_key = base64.b64decode(STATIC_TEST_SECRET)
    wrong = base64.b64encode(hmac.new(decoded_key, TIMESTAMP.encode() + BODY, hashlib.sha256).digest())
    assert wrong.decode() != SIGNATURE
    with pytest.raises(SignatureError, match="mismatch"):
        verify(STATIC_TEST_SECRET, TIMESTAMP, BODY, wrong.decode(), AT)


def test_a_changed_body_or_timestamp_breaks_the_signature():
    with pytest.raises(SignatureError):
        verify(STATIC_TEST_SECRET, TIMESTAMP, BODY + b" ", SIGNATURE, AT)
    with pytest.raises(SignatureError):
        verify(STATIC_TEST_SECRET, "2021-03-25T05:09:28Z", BODY, SIGNATURE, AT)
