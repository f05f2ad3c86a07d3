"""A local in-memory Zendesk: the Ticketing API subset the connector uses, plus event webhooks."""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import itertools
import json
import struct
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

from flask import Flask, Response, current_app, jsonify, request

from sandbox import WebhookSender, serve_in_thread
from sandbox.zendesk_history import install as install_history
from sandbox.zendesk_state import (
    AGENT_ID,
    CUSTOM_STATUSES,
    HUMAN_AGENT_ID,
    SANDBOX_EMAIL,
    ApiError,
    SandboxState,
    iso,
)

__all__ = ["ZendeskSandbox", "create_sandbox", "serve_in_thread"]

# The same value config.py falls back to when no Zendesk credentials are set.
SANDBOX_TOKEN = "sandbox-token"  # noqa: S105 - a public sandbox credential
ACCOUNT_ID = 9100
MAX_BULK_IDS = 100
MAX_AUDIT_PAGE = 100
MAX_SHOW_MANY = 100
EXPORT_PAGE = 1000


class ZendeskSandbox(Flask):
    """The sandbox app: `state` holds the data, `wait_idle()` drains pending webhooks."""

    state: SandboxState
    webhooks: WebhookSender | None
    credentials: tuple[str, str]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return self.webhooks.wait_idle(timeout) if self.webhooks else True

    flush = wait_idle


def create_sandbox(
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    clock: Callable[[], datetime] | None = None,
    *,
    email: str = SANDBOX_EMAIL,
    api_token: str = SANDBOX_TOKEN,
) -> ZendeskSandbox:
    """A fresh sandbox; with `webhook_url`, every ticket change POSTs a signed event webhook.

    Args:
        clock: returns the current aware datetime (default: the real clock); it
            also dates the webhook signature timestamps.
        email, api_token: the only accepted basic auth ("{email}/token", token).
    """
    if webhook_url and not webhook_secret:
        raise ValueError("create_sandbox: webhook_url needs webhook_secret (ZENDESK_WEBHOOK_SECRET)")
    app = ZendeskSandbox(__name__)
    app.state = SandboxState(clock or (lambda: datetime.now(UTC)))
    app.credentials = (f"{email}/token", api_token)
    app.webhooks = None
    if webhook_url and webhook_secret:
        app.webhooks = WebhookSender(webhook_url, _signer(webhook_secret, app.state))
    app.before_request(_guard)
    app.after_request(_log)
    app.register_error_handler(ApiError, lambda err: (jsonify(err.body), err.status))
    routes = [
        ("/api/v2/tickets.json", _create_ticket, "POST"),
        ("/api/v2/tickets/show_many.json", _show_many_tickets, "GET"),
        ("/api/v2/tickets/<int:tid>.json", _show_ticket, "GET"),
        ("/api/v2/tickets/<int:tid>.json", _update_ticket, "PUT"),
        ("/api/v2/tickets/<int:tid>/audits.json", _list_audits, "GET"),
        ("/api/v2/tickets/<int:tid>/comments.json", _list_comments, "GET"),
        ("/api/v2/tickets/update_many.json", _update_many, "PUT"),
        ("/api/v2/job_statuses/<job_id>.json", _show_job, "GET"),
        ("/api/v2/incremental/tickets/cursor.json", _export, "GET"),
        ("/api/v2/users/me.json", _show_me, "GET"),
        ("/api/v2/ticket_fields.json", _list_ticket_fields, "GET"),
        ("/api/v2/custom_statuses.json", _list_custom_statuses, "GET"),
        ("/api/v2/tickets/<int:tid>.json", _delete_ticket, "DELETE"),
        ("/api/v2/users/<int:uid>.json", _show_user, "GET"),
        ("/api/v2/users/show_many.json", _show_many_users, "GET"),
        ("/_sandbox/tickets/<int:tid>/comments", _admin_comment, "POST"),
        ("/_sandbox/reset", _admin_reset, "POST"),
        ("/_sandbox/requests", _admin_requests, "GET"),
        ("/_sandbox/failures", _admin_failures, "POST"),
    ]
    for rule, view, method in routes:
        app.add_url_rule(rule, endpoint=f"{view.__name__}", view_func=view, methods=[method])
    install_history(app)  # the incremental event export (sandbox/zendesk_history.py)
    return app


def zendesk_signature(secret: str, timestamp: str, body: bytes) -> str:
    """X-Zendesk-Webhook-Signature as Zendesk computes it, written apart from the receiver's
    connectors.signature so that a wrong scheme on either side fails the tests.

    Zendesk's verifying guide (https://developer.zendesk.com/documentation/webhooks/verifying/)
    states base64(HMACSHA256(TIMESTAMP + BODY)) and its Node.js example keys the HMAC with
    the signing secret string itself: the secret looks like base64 (the static test secret
    dGhpc19zZWNyZXRfaXNfZm9yX3Rlc3Rpbmdfb25seQ== reads "this_secret_is_for_testing_only")
    but is not decoded.
    """
    mac = hmac.new(bytes(secret, "utf-8"), digestmod=hashlib.sha256)
    mac.update(bytes(timestamp, "utf-8"))
    mac.update(body)
    return base64.b64encode(mac.digest()).decode("ascii")


def _signer(secret: str, state: SandboxState) -> Callable[[bytes], dict[str, str]]:
    """Headers of a Zendesk webhook delivery, signed at send time.

    https://developer.zendesk.com/documentation/webhooks/verifying/
    """
    invocations = itertools.count(1)

    def headers_for(body: bytes) -> dict[str, str]:
        timestamp = state.clock().astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return {
            "Content-Type": "application/json; charset=utf-8",
            "User-Agent": "Zendesk Webhook",
            "X-Zendesk-Account-Id": str(ACCOUNT_ID),
            "X-Zendesk-Webhook-Id": "01SANDBOXWEBHOOK000000000",
            "X-Zendesk-Webhook-Invocation-Id": str(next(invocations)),
            "X-Zendesk-Webhook-Signature": zendesk_signature(secret, timestamp, body),
            "X-Zendesk-Webhook-Signature-Timestamp": timestamp,
        }

    return headers_for


# -- plumbing ----------------------------------------------------------------------

def _app() -> ZendeskSandbox:
    return current_app  # type: ignore[return-value]


def _guard() -> Any:
    if not request.path.startswith("/api/v2/"):
        return None
    app = _app()
    auth = request.authorization
    user, token = app.credentials
    if auth is None or auth.type != "basic" or not (
        hmac.compare_digest(str(auth.username), user) and hmac.compare_digest(str(auth.password), token)
    ):
        return jsonify({"error": "Couldn't authenticate you"}), 401
    with app.state.lock:
        if app.state.failures:
            status, retry_after = app.state.failures.pop(0)
            response = jsonify({"error": "SandboxInjectedFailure", "description": f"HTTP {status}"})
            response.status_code = status
            if retry_after is not None:
                response.headers["Retry-After"] = f"{retry_after:g}"
            return response
    return None


def _log(response: Response) -> Response:
    if request.path.startswith("/api/v2/"):
        with _app().state.lock:
            _app().state.requests.append({
                "method": request.method, "path": request.path, "query": request.args.to_dict(),
                "body": request.get_json(silent=True), "status": response.status_code,
            })
    return response


def _payload(key: str) -> dict[str, Any]:
    data = request.get_json(silent=True)
    if not isinstance(data, dict) or not isinstance(data.get(key), dict):
        raise ApiError(400, "InvalidJSON", f"The request body must be a JSON object with a {key!r} object")
    return data[key]


def _notify(ticket: dict[str, Any], actor: int, changes: list[tuple], created: bool = False) -> None:
    """Queue one event-subscription webhook per change, as Zendesk sends them.

    https://developer.zendesk.com/api-reference/webhooks/event-types/ticket-events/
    """
    app = _app()
    if app.webhooks is None:
        return
    kinds = [("created", {})] if created else []
    for name, old, new in changes:
        if name == "status":
            kinds.append(("status_changed", {"current": new.upper(), "previous": old.upper()}))
        elif name == "priority":
            kinds.append(("priority_changed", {"current": _upper(new), "previous": _upper(old)}))
        elif name == "group_id":
            kinds.append(("group_assignment_changed", {"current": _str(new), "previous": _str(old)}))
        elif name == "tags":
            kinds.append(("tags_changed", {"tags_added": [t for t in new if t not in old],
                                           "tags_removed": [t for t in old if t not in new]}))
        elif name == "subject":
            kinds.append(("subject_changed", {"current": new, "previous": old}))
        elif name.isdigit():
            kinds.append(("custom_field_changed", {"current": {"value": new}, "previous": {"value": old},
                                                   "custom_field": {"id": name}}))
        elif name == "comment":
            author = app.state.users.get(new["author_id"], {})
            kinds.append(("comment_added", {"comment": {
                "id": str(new["id"]), "body": new["body"], "is_public": new["public"],
                "author": {"id": str(new["author_id"]), "name": author.get("name"),
                           "is_staff": author.get("role") in ("agent", "admin")}}}))
    detail = {
        "actor_id": str(actor), "assignee_id": _str(ticket["assignee_id"]), "brand_id": None,
        "created_at": ticket["created_at"], "custom_status": None, "description": ticket["description"],
        "external_id": ticket["external_id"], "form_id": None, "group_id": _str(ticket["group_id"]),
        "id": str(ticket["id"]), "is_public": True, "organization_id": None,
        "priority": _upper(ticket["priority"]), "requester_id": str(ticket["requester_id"]),
        "status": ticket["status"].upper(), "subject": ticket["subject"],
        "submitter_id": str(ticket["submitter_id"]), "tags": list(ticket["tags"]),
        "type": _upper(ticket["type"]), "updated_at": ticket["updated_at"],
        "via": {"channel": "web_service"},
    }
    sequence = uuid.uuid4().hex.upper()  # events of one update share a sequence id
    for position, (kind, event) in enumerate(kinds, start=1):
        event = dict(event, meta={"sequence": {"id": sequence, "position": position, "total": len(kinds)}})
        payload = {"account_id": ACCOUNT_ID, "detail": detail, "event": event, "id": str(uuid.uuid4()),
                   "subject": f"zen:ticket:{ticket['id']}", "time": ticket["updated_at"],
                   "type": f"zen:event-type:ticket.{kind}", "zendesk_event_version": "2022-11-06"}
        app.webhooks.send(json.dumps(payload).encode())


def _upper(value: Any) -> str | None:
    return None if value is None else str(value).upper()


def _str(value: Any) -> str | None:
    return None if value is None else str(value)


def _cursor(position: tuple[int, int]) -> str:
    # Shaped like Zendesk's opaque cursors (base64, may end in "=").
    return base64.b64encode(f"{position[0]}.0||{position[1]}|".encode()).decode()


def _position(cursor: str) -> tuple[int, int]:
    try:
        stamp, _, tid = base64.b64decode(cursor, validate=True).decode().rstrip("|").partition("||")
        return int(float(stamp)), int(tid)
    except (ValueError, binascii.Error) as err:
        raise ApiError(400, "InvalidPaginationParameter", f"invalid cursor {cursor!r}") from err


# -- API views -----------------------------------------------------------------------

def _create_ticket() -> Any:
    state = _app().state
    with state.lock:
        ticket, audit = state.create(_payload("ticket"), request.host_url)
        _notify(ticket, audit["author_id"], [], created=True)
        return jsonify({"ticket": ticket, "audit": audit}), 201


def _show_ticket(tid: int) -> Any:
    state = _app().state
    with state.lock:
        return jsonify({"ticket": state.ticket(tid)})


def _update_ticket(tid: int) -> Any:
    state = _app().state
    with state.lock:
        ticket, audit, changes = state.update(tid, _payload("ticket"))
        _notify(ticket, AGENT_ID, changes)
        return jsonify({"ticket": ticket, "audit": audit})


def _list_audits(tid: int) -> Any:
    """Cursor pagination with page[size] (max 100), else all audits; include=users sideloads.

    Oldest first. The cursors are keyed by audit id as Zendesk's are (base64 of
    {"o": "id", "v": ...}, "-id" for before_cursor): page[after] lists the audits after
    the one its cursor names, page[before] those before, and a last page's after_cursor
    lists what is added later. An empty page has no cursors.
    https://developer.zendesk.com/api-reference/ticketing/tickets/ticket_audits/#list-audits-for-a-ticket
    """
    state = _app().state
    after, before = request.args.get("page[after]"), request.args.get("page[before]")
    if after and before:
        raise ApiError(400, "InvalidPaginationParameter",
                       "page[before] and page[after] can't be used together")
    with state.lock:
        state.ticket(tid)
        audits = list(state.audits[tid])
        size = request.args.get("page[size]", type=int)
        if size is not None and not 1 <= size <= MAX_AUDIT_PAGE:
            raise ApiError(400, "InvalidPaginationParameter", f"page[size] must be 1 to {MAX_AUDIT_PAGE}")
        if after:
            newer = _audit_key(after, "id")
            audits = [a for a in audits if a["id"] > newer]
        elif before:
            older = _audit_key(before, "-id")
            audits = [a for a in audits if a["id"] < older]
        if size:
            more = len(audits) > size
            page = audits[-size:] if before else audits[:size]
        else:
            more, page = False, audits
        body: dict[str, Any] = {"audits": page}
        if "users" in (request.args.get("include") or "").split(","):
            ids = {state.tickets[tid]["requester_id"]} | {a["author_id"] for a in page} | {
                e["author_id"] for a in page for e in a["events"] if e["type"] == "Comment"}
            body["users"] = [state.users[uid] for uid in sorted(ids) if uid in state.users]
        if size:
            next_cursor = _audit_cursor("id", page[-1]["id"]) if page else None
            prev_cursor = _audit_cursor("-id", page[0]["id"]) if page else None
            # has_more: more audits in the direction read (older ones for page[before]).
            body["meta"] = {"has_more": more, "after_cursor": next_cursor, "before_cursor": prev_cursor}
            body["links"] = {
                "prev": None if prev_cursor is None else
                f"{request.base_url}?page%5Bbefore%5D={quote(prev_cursor, safe='')}&page%5Bsize%5D={size}",
                "next": None if next_cursor is None else
                f"{request.base_url}?page%5Bafter%5D={quote(next_cursor, safe='')}&page%5Bsize%5D={size}"}
        else:
            body.update(next_page=None, previous_page=None, count=len(audits))
        return jsonify(body)


def _audit_cursor(order: str, audit_id: int) -> str:
    """A cursor shaped like Zendesk's: base64 of {"o": order, "v": base64 of the id's 8 bytes}."""
    value = base64.b64encode(struct.pack("<q", audit_id)).decode()
    return base64.b64encode(json.dumps({"o": order, "v": value}, separators=(",", ":")).encode()).decode()


def _audit_key(cursor: str, order: str) -> int:
    try:
        data = json.loads(base64.b64decode(cursor, validate=True))
        if data.get("o") != order:
            raise ValueError(order)
        return struct.unpack("<q", base64.b64decode(data["v"], validate=True))[0]
    except (ValueError, TypeError, KeyError, AttributeError, struct.error, binascii.Error) as err:
        raise ApiError(400, "InvalidPaginationParameter", f"invalid cursor {cursor!r}") from err


def _show_many_tickets() -> Any:
    """Tickets by `ids` (comma-separated, at most 100), in the order asked; ids of tickets that do
    not exist or were deleted are left out.
    https://developer.zendesk.com/api-reference/ticketing/tickets/tickets/#show-multiple-tickets
    """
    raw = [part for part in (request.args.get("ids") or "").split(",") if part]
    if not raw or not all(part.isdigit() for part in raw):
        raise ApiError(400, "InvalidValue", "ids must be comma-separated ticket ids")
    if len(raw) > MAX_SHOW_MANY:
        raise ApiError(400, "TooManyValues", f"Too many values: at most {MAX_SHOW_MANY} ids")
    state = _app().state
    with state.lock:
        found = [state.tickets[int(tid)] for tid in dict.fromkeys(raw) if int(tid) in state.tickets
                 and state.tickets[int(tid)]["status"] != "deleted"]
        return jsonify({"tickets": found, "next_page": None, "previous_page": None, "count": len(found)})


def _list_comments(tid: int) -> Any:
    state = _app().state
    with state.lock:
        state.ticket(tid)
        comments = [dict(e, created_at=a["created_at"], via=a["via"]) for a in state.audits[tid]
                    for e in a["events"] if e["type"] == "Comment"]
        return jsonify({"comments": comments, "next_page": None, "previous_page": None,
                        "count": len(comments)})


def _update_many() -> Any:
    """Applies at once and records a completed job; answers "queued" like Zendesk."""
    try:
        ids = [int(part) for part in request.args.get("ids", "").split(",") if part]
    except ValueError as err:
        raise ApiError(400, "InvalidValue", "ids must be comma-separated ticket ids") from err
    if not ids:
        raise ApiError(400, "InvalidValue", "ids is required")
    if len(ids) > MAX_BULK_IDS:
        raise ApiError(400, "TooManyValues", f"Too many values: at most {MAX_BULK_IDS} ids")
    data = _payload("ticket")
    state = _app().state
    with state.lock:
        results = []
        for tid in ids:
            try:
                ticket, _, changes = state.update(tid, data, safe=False)
                _notify(ticket, AGENT_ID, changes)
                results.append({"action": "update", "id": tid, "status": "Updated", "success": True})
            except ApiError as err:
                results.append({"action": "update", "id": tid, "success": False,
                                "error": err.body["error"], "details": err.body["description"]})
        job_id = uuid.uuid4().hex
        job = {"id": job_id, "job_type": "bulk_update", "url": f"{request.host_url}api/v2/job_statuses/"
               f"{job_id}.json", "total": len(ids), "progress": len(ids), "status": "completed",
               "message": f"Completed at {iso(state.now())}", "results": results}
        state.jobs[job_id] = job
        return jsonify({"job_status": dict(job, status="queued", progress=None, message=None,
                                           results=None)})


def _show_job(job_id: str) -> Any:
    state = _app().state
    with state.lock:
        if job_id not in state.jobs:
            raise ApiError(404, "RecordNotFound", "Not found")
        return jsonify({"job_status": state.jobs[job_id]})


def _export() -> Any:
    """Cursor-based incremental export ordered by (updated_at, id); per_page defaults to 1000."""
    state = _app().state
    if request.args.get("cursor"):
        position = _position(request.args["cursor"])
    elif request.args.get("start_time", "").isdigit():
        position = (int(request.args["start_time"]), 0)
    else:
        raise ApiError(400, "InvalidPaginationParameter", "start_time or cursor is required")
    per_page = max(1, min(request.args.get("per_page", EXPORT_PAGE, type=int), EXPORT_PAGE))
    with state.lock:
        # (start_time, 0) sorts before every ticket updated at start_time or later.
        keys = sorted(key for key in ((stamp, tid) for tid, stamp in state.updated.items())
                      if key > position)
        page = keys[:per_page]
        after = _cursor(page[-1] if page else position)
        return jsonify({
            "tickets": [state.tickets[tid] for _, tid in page], "after_cursor": after,
            "after_url": f"{request.base_url}?cursor={quote(after, safe='')}",
            "before_cursor": None, "before_url": None, "end_of_stream": len(keys) <= per_page,
        })


def _show_user(uid: int) -> Any:
    state = _app().state
    with state.lock:
        if uid not in state.users:
            raise ApiError(404, "RecordNotFound", "Not found")
        return jsonify({"user": state.users[uid]})


def _show_many_users() -> Any:
    """Users by `ids` (comma-separated, at most 100); unknown ids are left out, as Zendesk does."""
    raw = [part for part in (request.args.get("ids") or "").split(",") if part]
    if not raw or len(raw) > 100 or not all(part.isdigit() for part in raw):
        raise ApiError(400, "InvalidValue", "ids must be 1 to 100 comma-separated user ids")
    state = _app().state
    with state.lock:
        return jsonify({"users": [state.users[int(uid)] for uid in raw if int(uid) in state.users]})


def _show_me() -> Any:
    """The authenticated user: the sandbox's credentials belong to AGENT_ID."""
    state = _app().state
    with state.lock:
        return jsonify({"user": state.users[AGENT_ID]})


def _list_custom_statuses() -> Any:
    return jsonify({"custom_statuses": [
        dict(item, url=f"{request.host_url}api/v2/custom_statuses/{item['id']}.json", active=True,
             description="", end_user_description="", created_at="2024-01-01T00:00:00Z",
             updated_at="2024-01-01T00:00:00Z") for item in CUSTOM_STATUSES]})


def _delete_ticket(tid: int) -> Any:
    state = _app().state
    with state.lock:
        state.delete(tid)
    return Response(status=204)


def _list_ticket_fields() -> Any:
    """The account's custom fields (https://developer.zendesk.com/api-reference/ticketing/tickets/
    ticket_fields/#list-ticket-fields): a dropdown's options carry a title (`name`) and a tag (`value`)."""
    state = _app().state
    with state.lock:
        fields = [dict(field) for field in state.fields.values()]
    return jsonify({"ticket_fields": fields, "next_page": None, "previous_page": None,
                    "count": len(fields), "meta": {"has_more": False, "after_cursor": None,
                                                   "before_cursor": None}})


# -- admin views (tests and demos) ------------------------------------------------------

def _admin_comment(tid: int) -> Any:
    """Add a comment as the ticket's requester ("customer") or a human agent ("agent", HUMAN_AGENT_ID).

    Body: {"author": "customer"|"agent", "body": str, "public": bool = true, "status": optional}.
    """
    data = request.get_json(silent=True) or {}
    if data.get("author") not in ("customer", "agent") or not data.get("body"):
        raise ApiError(400, "InvalidValue", 'need {"author": "customer"|"agent", "body": "..."}')
    state = _app().state
    with state.lock:
        customer = data["author"] == "customer"
        author = state.ticket(tid)["requester_id"] if customer else HUMAN_AGENT_ID
        update: dict[str, Any] = {"comment": {"body": data["body"], "public": data.get("public", True)}}
        if data.get("status"):
            update["status"] = data["status"]
        ticket, audit, changes = state.update(tid, update, author=author, safe=False,
                                              channel="email" if customer else "web")
        _notify(ticket, author, changes)
        return jsonify({"ticket": ticket, "audit": audit}), 201


def _admin_reset() -> Any:
    _app().state.reset()
    return Response(status=204)


def _admin_requests() -> Any:
    state = _app().state
    with state.lock:
        return jsonify(list(state.requests))


def _admin_failures() -> Any:
    """Make the next `count` API calls answer `status` (and Retry-After when given)."""
    data = request.get_json(silent=True) or {}
    status, count = data.get("status"), data.get("count", 1)
    if not isinstance(status, int) or not 400 <= status <= 599 or not isinstance(count, int):
        raise ApiError(400, "InvalidValue", "status must be an HTTP error code and count an integer")
    state = _app().state
    with state.lock:
        state.failures.extend([(status, data.get("retry_after"))] * count)
    return Response(status=204)
