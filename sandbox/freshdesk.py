"""A local in-memory Freshdesk (API v2 subset) for tests and demos, with webhooks."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

from flask import Flask, Response, current_app, jsonify, request

from sandbox import WebhookSender, serve_in_thread
from sandbox.freshdesk_history import install as install_history
from sandbox.freshdesk_state import DONE, SandboxState, apply_update, iso, set_status, text_of

__all__ = ["FreshdeskSandbox", "create_sandbox", "serve_in_thread"]

SANDBOX_API_KEY = "sandbox-api-key"
AGENT_ID = 1  # the agent the API key belongs to: Deskpilot itself
REQUESTER_ID = 2  # the customer on every sandbox ticket
HUMAN_AGENT_ID = 3  # the agent who writes through /_sandbox/tickets/<id>/conversations
# New Freshdesk accounts come with these two custom statuses.
DEFAULT_CUSTOM_STATUSES = {6: "Waiting on Customer", 7: "Waiting on Third Party"}
PRIORITY_LABELS = {1: "Low", 2: "Medium", 3: "High", 4: "Urgent"}
UPDATABLE = {"subject", "description", "status", "priority", "group_id", "responder_id", "tags",
             "custom_fields", "type"}
MAX_PER_PAGE = 100
MAX_LIST_PAGES = 300


class FreshdeskSandbox(Flask):
    """The sandbox app: `state` holds the data, `wait_idle()` drains webhooks."""

    state: SandboxState
    webhooks: WebhookSender | None

    def wait_idle(self, timeout: float = 5.0) -> bool:
        return self.webhooks.wait_idle(timeout) if self.webhooks else True


def create_sandbox(
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
    clock: Callable[[], datetime] | None = None,
    *,
    api_key: str = SANDBOX_API_KEY,
    rate_limit: int = 1000,
    custom_statuses: Mapping[int, str] | None = None,
) -> FreshdeskSandbox:
    """A fresh sandbox. Every ticket change POSTs a webhook to `webhook_url` when set.

    Args:
        clock: returns the current aware datetime (default: the real clock).
        api_key: the only key accepted as the basic-auth user.
        rate_limit: API calls allowed per clock minute before 429s.
        custom_statuses: custom status id -> label (default: Freshdesk's two).
    """
    if webhook_url and not webhook_secret:
        raise ValueError("create_sandbox: webhook_url needs webhook_secret (FRESHDESK_WEBHOOK_SECRET)")
    app = FreshdeskSandbox(__name__)
    statuses = DEFAULT_CUSTOM_STATUSES if custom_statuses is None else custom_statuses
    app.state = SandboxState(api_key, clock or (lambda: datetime.now(UTC)), rate_limit, statuses)
    app.webhooks = None
    if webhook_url and webhook_secret:
        # Freshdesk signs nothing; the admin's automation rule adds this custom header
        # (app.py's SECRET_HEADER), as it would in a real account.
        headers = {"Content-Type": "application/json", "X-Deskpilot-Secret": webhook_secret}
        app.webhooks = WebhookSender(webhook_url, lambda body: dict(headers))
    app.before_request(_guard)
    app.after_request(_finish)
    routes = [
        ("/api/v2/tickets", _create_ticket, "POST"),
        ("/api/v2/tickets", _list_tickets, "GET"),
        ("/api/v2/tickets/<int:tid>", _show_ticket, "GET"),
        ("/api/v2/tickets/<int:tid>", _update_ticket, "PUT"),
        ("/api/v2/tickets/<int:tid>/conversations", _list_conversations, "GET"),
        ("/api/v2/tickets/<int:tid>/notes", _add_note, "POST"),
        ("/api/v2/tickets/<int:tid>/reply", _add_reply, "POST"),
        ("/api/v2/tickets/bulk_update", _bulk_update, "POST"),
        ("/api/v2/jobs/<job_id>", _show_job, "GET"),
        ("/api/v2/agents/me", _show_me, "GET"),
        ("/api/v2/agents", _list_agents, "GET"),
        ("/api/v2/ticket_fields", _list_ticket_fields, "GET"),
        ("/_sandbox/tickets/<int:tid>/conversations", _admin_conversation, "POST"),
        ("/_sandbox/reset", _admin_reset, "POST"),
        ("/_sandbox/requests", _admin_requests, "GET"),
        ("/_sandbox/requests", _admin_forget_requests, "DELETE"),
        ("/_sandbox/failures", _admin_failures, "POST"),
    ]
    for rule, view, method in routes:
        app.add_url_rule(rule, endpoint=view.__name__, view_func=view, methods=[method])
    install_history(app)  # include=stats on the ticket list (sandbox/freshdesk_history.py)
    return app


# -- plumbing -------------------------------------------------------------------

def _state() -> SandboxState:
    return current_app.state  # type: ignore[attr-defined]


def _validation(field: str, message: str, code: str = "invalid_value") -> Response:
    # Freshdesk's error body: https://developers.freshdesk.com/api/#error
    body = {"description": "Validation failed",
            "errors": [{"field": field, "message": message, "code": code}]}
    response = jsonify(body)
    response.status_code = 400
    return response


def _not_found() -> Response:
    return Response(status=404)


def _guard() -> Response | None:
    if not request.path.startswith("/api/v2/"):
        return None
    state = _state()
    auth = request.authorization
    if auth is None or auth.username != state.api_key:
        response = jsonify({"code": "invalid_credentials",
                            "message": "You have to be logged in to perform this action."})
        response.status_code = 401
        return response
    with state.lock:
        used, reset_in = state.take_call()
        if used > state.rate_limit:
            response = jsonify({"message": f"You have exceeded the limit of requests per minute. "
                                           f"Try again after {reset_in} seconds."})
            response.status_code = 429
            response.headers["Retry-After"] = str(reset_in)
            return response
        if state.failures:
            status, retry_after = state.failures.pop(0)
            response = jsonify({"description": "Injected failure", "errors": []})
            response.status_code = status
            if retry_after is not None:
                response.headers["Retry-After"] = f"{retry_after:g}"
            return response
    return None


def _finish(response: Response) -> Response:
    if not request.path.startswith("/api/v2/"):
        return response
    state = _state()
    with state.lock:
        if response.status_code != 401:
            used = state.window[1] if state.window else 0
            response.headers["X-RateLimit-Total"] = str(state.rate_limit)
            response.headers["X-RateLimit-Remaining"] = str(max(state.rate_limit - used, 0))
            response.headers["X-RateLimit-Used-CurrentRequest"] = "1"
        state.requests.append({
            "method": request.method, "path": request.path, "query": request.args.to_dict(),
            "body": request.get_json(silent=True), "status": response.status_code,
        })
    return response


def _body() -> dict[str, Any] | None:
    data = request.get_json(silent=True)
    return data if isinstance(data, dict) else None


def _notify(tid: int, event: str) -> None:
    app: FreshdeskSandbox = current_app  # type: ignore[assignment]
    if app.webhooks is None:
        return
    state = _state()
    ticket = state.tickets[tid]
    # The body an admin's rule builds from placeholders ({{ticket.id}}, {{ticket.status}},
    # {{triggered_event}}, ...): https://support.freshdesk.com/support/solutions/articles/132589
    # {{ticket.modified_on}} is the ticket's updated_at as Rails prints a time (the sandbox's
    # account is on UTC): "2026-11-20 14:30:00 UTC" (docs/webhooks.md).
    modified = datetime.fromisoformat(ticket["updated_at"].replace("Z", "+00:00"))
    app.webhooks.send(json.dumps({"freshdesk_webhook": {
        "ticket_id": tid,
        "ticket_status": state.status_labels.get(ticket["status"], str(ticket["status"])),
        "ticket_priority": PRIORITY_LABELS.get(ticket["priority"], ""),
        "triggered_event": event,
        "ticket_updated_at": modified.strftime("%Y-%m-%d %H:%M:%S UTC"),
    }}).encode())


def _page_args(default_per_page: int = 30) -> tuple[int, int] | Response:
    try:
        page = int(request.args.get("page", 1))
        per_page = int(request.args.get("per_page", default_per_page))
    except ValueError:
        return _validation("page", "It should be a Positive Integer", "datatype_mismatch")
    if page < 1:
        return _validation("page", "It should be a Positive Integer")
    if not 1 <= per_page <= MAX_PER_PAGE:
        return _validation("per_page", f"It should be a Positive Integer less than or equal to "
                                       f"{MAX_PER_PAGE}")
    return page, per_page


def _paged(items: list[dict[str, Any]], page: int, per_page: int, last_page: int | None = None
           ) -> Response:
    chunk = items[(page - 1) * per_page: page * per_page]
    response = jsonify(chunk)
    more = len(items) > page * per_page and (last_page is None or page < last_page)
    if more:
        args = {**request.args.to_dict(), "page": page + 1, "per_page": per_page}
        response.headers["Link"] = f'<{request.base_url}?{urlencode(args)}>; rel="next"'
    return response


# -- tickets --------------------------------------------------------------------

def _check_properties(data: Mapping[str, Any], statuses: Mapping[int, str]) -> Response | None:
    unknown = sorted(set(data) - UPDATABLE - {"email", "requester_id", "name"})
    if unknown:
        return _validation(unknown[0], "Unexpected/invalid field in request", "invalid_field")
    if "priority" in data and data["priority"] not in PRIORITY_LABELS:
        return _validation("priority", "It should be one of these values: '1,2,3,4'")
    if "status" in data and data["status"] not in statuses:
        allowed = ",".join(str(sid) for sid in sorted(statuses))
        return _validation("status", f"It should be one of these values: '{allowed}'")
    if "tags" in data and not (isinstance(data["tags"], list)
                               and all(isinstance(tag, str) for tag in data["tags"])):
        return _validation("tags", "It should be an Array of Strings", "datatype_mismatch")
    if "custom_fields" in data and not isinstance(data["custom_fields"], dict):
        return _validation("custom_fields", "It should be a key/value pair", "datatype_mismatch")
    if data.get("group_id") is not None and not isinstance(data["group_id"], int):
        return _validation("group_id", "It should be a Positive Integer", "datatype_mismatch")
    return None


def _create_ticket() -> Response:
    data = _body()
    if data is None:
        return _validation("", "Request body has invalid json format", "invalid_json")
    state = _state()
    data.setdefault("status", 2)
    data.setdefault("priority", 1)
    problem = _check_properties(data, state.status_labels)
    if problem:
        return problem
    if not data.get("subject"):
        return _validation("subject", "It should not be blank as this is a mandatory field",
                           "missing_field")
    with state.lock:
        tid, now = state.next_ticket, state.now()
        state.next_ticket += 1
        description = data.get("description") or ""
        state.tickets[tid] = {
            "id": tid, "subject": data["subject"], "description": description,
            "description_text": text_of(description), "status": data["status"],
            "priority": data["priority"], "source": 2, "type": data.get("type"),
            "requester_id": data.get("requester_id", REQUESTER_ID),
            "responder_id": data.get("responder_id"), "group_id": data.get("group_id"),
            "company_id": None, "product_id": None, "email_config_id": None,
            "cc_emails": [], "fwd_emails": [], "reply_cc_emails": [], "to_emails": None,
            "fr_escalated": False, "is_escalated": False, "spam": False,
            "due_by": None, "fr_due_by": None, "tags": list(dict.fromkeys(data.get("tags", []))),
            "custom_fields": dict(data.get("custom_fields") or {}), "attachments": [],
            "created_at": now, "updated_at": now,
        }
        state.stats[tid] = {
            "agent_responded_at": None, "requester_responded_at": None,
            "first_responded_at": None, "status_updated_at": now, "reopened_at": None,
            "resolved_at": now if data["status"] in DONE else None,
            "closed_at": now if data["status"] == 5 else None,
            "pending_since": now if data["status"] == 3 else None,
        }
        state.conversations[tid] = []
        _notify(tid, "{ticket_action:created}")
        response = jsonify(state.ticket_json(tid))
    response.status_code = 201
    return response


def _show_ticket(tid: int) -> Response:
    includes = [part for part in request.args.get("include", "").split(",") if part]
    bad = [part for part in includes if part not in ("stats", "conversations")]
    if bad:
        return _validation("include", "It should be one of these values: 'stats,conversations'")
    state = _state()
    with state.lock:
        if tid not in state.tickets:
            return _not_found()
        data = state.ticket_json(tid, include_stats="stats" in includes)
        if "conversations" in includes:  # the embedded list stops at ten, as in Freshdesk
            data["conversations"] = [dict(item) for item in state.conversations[tid][:10]]
    return jsonify(data)


def _update_ticket(tid: int) -> Response:
    data = _body()
    if data is None:
        return _validation("", "Request body has invalid json format", "invalid_json")
    state = _state()
    problem = _check_properties(data, state.status_labels)
    if problem:
        return problem
    with state.lock:
        if tid not in state.tickets:
            return _not_found()
        _notify(tid, apply_update(state, tid, data))
        return jsonify(state.ticket_json(tid))


def _list_tickets() -> Response:
    paging = _page_args()
    if isinstance(paging, Response):
        return paging
    page, per_page = paging
    if page > MAX_LIST_PAGES:
        return _validation("page", f"It should be less than or equal to {MAX_LIST_PAGES}")
    state = _state()
    order_by = request.args.get("order_by", "created_at")
    if order_by not in ("created_at", "updated_at", "status"):
        return _validation("order_by", "It should be one of these values: "
                                       "'created_at,due_by,updated_at,status'")
    since_text = request.args.get("updated_since")
    with state.lock:
        if since_text:
            try:
                since = iso(datetime.fromisoformat(since_text.replace("Z", "+00:00")))
            except ValueError:
                return _validation("updated_since", "It should be in the 'valid date' format",
                                   "invalid_date")
            chosen = [t for t in state.tickets.values() if t["updated_at"] >= since]
        else:  # without updated_since, only tickets created in the last 30 days
            cutoff = iso(state.clock() - timedelta(days=30))
            chosen = [t for t in state.tickets.values() if t["created_at"] >= cutoff]
        reverse = request.args.get("order_type", "desc") == "desc"
        chosen.sort(key=lambda t: (t[order_by], t["id"]), reverse=reverse)
        return _paged([dict(t) for t in chosen], page, per_page, MAX_LIST_PAGES)


# -- conversations --------------------------------------------------------------

def _converse(state: SandboxState, tid: int, body: str, kind: str, *, private: bool = False,
              incoming: bool = False, agent: int = AGENT_ID) -> dict[str, Any]:
    """Add a `note` (agent), `reply` (agent, public) or `customer` message, with its effects."""
    now, ticket, stats = state.now(), state.tickets[tid], state.stats[tid]
    customer = kind == "customer"
    item = {
        "id": state.next_conversation, "ticket_id": tid, "body": body, "body_text": text_of(body),
        "incoming": customer or incoming, "private": private,
        "user_id": REQUESTER_ID if customer else agent, "source": 2 if kind == "note" else 0,
        "support_email": None, "to_emails": [], "from_email": None, "cc_emails": [],
        "bcc_emails": None, "attachments": [], "created_at": now, "updated_at": now,
    }
    state.next_conversation += 1
    state.conversations[tid].append(item)
    ticket["updated_at"] = now
    if kind == "reply":
        stats["agent_responded_at"] = now
        stats["first_responded_at"] = stats["first_responded_at"] or now
        event = "{ticket_action:updated}"
    elif customer:
        # Freshdesk's default: a requester's reply reopens a pending/resolved/closed ticket.
        stats["requester_responded_at"] = now
        event = "{ticket_action:updated}"
        if ticket["status"] in (3, *DONE):
            event = f"{{status:{{from:{ticket['status']},to:2}}}}"
            set_status(ticket, stats, 2, now)
    else:
        event = "{note_type:private}" if private else "{note_type:public}"
    _notify(tid, event)
    return item


def _list_conversations(tid: int) -> Response:
    paging = _page_args()
    if isinstance(paging, Response):
        return paging
    state = _state()
    with state.lock:
        if tid not in state.tickets:
            return _not_found()
        return _paged([dict(item) for item in state.conversations[tid]], *paging)


def _post_conversation(tid: int, kind: str) -> Response:
    data = _body()
    if data is None:
        return _validation("", "Request body has invalid json format", "invalid_json")
    allowed = {"body", "private", "incoming", "notify_emails"} if kind == "note" else {"body"}
    unknown = sorted(set(data) - allowed)
    if unknown:
        return _validation(unknown[0], "Unexpected/invalid field in request", "invalid_field")
    if not isinstance(data.get("body"), str) or not data["body"].strip():
        return _validation("body", "It should not be blank as this is a mandatory field",
                           "missing_field")
    state = _state()
    with state.lock:
        if tid not in state.tickets:
            return _not_found()
        item = _converse(state, tid, data["body"], kind, private=bool(data.get("private", True))
                         if kind == "note" else False, incoming=bool(data.get("incoming")))
        response = jsonify(item)
    response.status_code = 201
    return response


def _add_note(tid: int) -> Response:
    return _post_conversation(tid, "note")


def _add_reply(tid: int) -> Response:
    return _post_conversation(tid, "reply")


# -- bulk jobs ------------------------------------------------------------------

def _bulk_update() -> Response:
    action = (_body() or {}).get("bulk_action")
    if not isinstance(action, dict) or not isinstance(action.get("ids"), list) or not action["ids"]:
        return _validation("ids", "It should not be blank as this is a mandatory field",
                           "missing_field")
    properties = action.get("properties") or {}
    reply = action.get("reply")
    if reply is not None and not (isinstance(reply, dict) and isinstance(reply.get("body"), str)
                                  and reply["body"].strip()):
        return _validation("reply", "It should be an object with a non-blank body", "datatype_mismatch")
    state = _state()
    problem = _check_properties(properties, state.status_labels)
    if problem:
        return problem
    with state.lock:
        job_id, results = uuid.uuid4().hex, []
        for tid in action["ids"]:
            if tid not in state.tickets:
                results.append({"id": tid, "success": False,
                                "errors": {"id": "There is no ticket matching the given id"}})
                continue
            if reply is not None:  # the reply first: a reply to a resolved ticket does not reopen it
                _converse(state, tid, reply["body"], "reply")
            _notify(tid, apply_update(state, tid, properties))
            results.append({"id": tid, "success": True})
        # Applied at once, so the job is complete when first asked about.
        now = state.now()
        state.jobs[job_id] = {"id": job_id, "status": "completed", "progress": 100,
                              "created_at": now, "updated_at": now, "status_updated_at": now,
                              "data": results}
    response = jsonify({"job_id": job_id, "href": f"{request.host_url}api/v2/jobs/{job_id}"})
    response.status_code = 202
    return response


def _show_job(job_id: str) -> Response:
    state = _state()
    with state.lock:
        job = state.jobs.get(job_id)
        return jsonify(job) if job else _not_found()


def _show_me() -> Response:
    """The API key's agent (https://developers.freshdesk.com/api/#me)."""
    return jsonify({"id": AGENT_ID, "available": True, "occasional": False, "ticket_scope": 1,
                    "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
                    "contact": {"name": "Sandbox Agent", "email": "agent@sandbox.invalid"}})


def _agent(aid: int, name: str, email: str) -> dict[str, Any]:
    return {"id": aid, "available": True, "occasional": False, "ticket_scope": 1, "signature": None,
            "created_at": "2024-01-01T00:00:00Z", "updated_at": "2024-01-01T00:00:00Z",
            "contact": {"active": True, "email": email, "name": name, "job_title": None,
                        "language": "en", "time_zone": "Eastern Time (US & Canada)"}}


AGENTS = (_agent(AGENT_ID, "Sandbox Agent", "agent@sandbox.invalid"),
          _agent(HUMAN_AGENT_ID, "Alex Agent", "alex@sandbox.invalid"))


def _list_agents() -> Response:
    """The account's agents, paged (https://developers.freshdesk.com/api/#list_all_agents)."""
    paging = _page_args(50)
    if isinstance(paging, Response):
        return paging
    return _paged([dict(agent) for agent in AGENTS], *paging)


def _list_ticket_fields() -> Response:
    """The ticket fields (https://developers.freshdesk.com/api/#list_all_ticket_fields): the
    status field's choices list each status id with its agent and customer labels."""
    state = _state()
    customer = {2: "Being Processed", 3: "Awaiting your Reply", 4: "This ticket has been Resolved",
                5: "This ticket has been Closed"}
    statuses = {str(sid): [label, customer.get(sid, label)] for sid, label in state.status_labels.items()}
    fields = [
        _field(1, "requester", "Search a requester", "default_requester", default=True),
        _field(2, "subject", "Subject", "default_subject", default=True),
        _field(4, "status", "Status", "default_status", default=True, choices=statuses),
        _field(5, "priority", "Priority", "default_priority", default=True,
               choices={label: pid for pid, label in PRIORITY_LABELS.items()}),
        _field(20, "cf_plan", "Plan", "custom_dropdown", choices=["basic", "professional", "advanced"]),
        _field(21, "cf_sla_first_response_due", "First response due", "custom_text"),
        _field(22, "cf_sla_first_response_state", "First response state", "custom_text"),
    ]
    return jsonify(fields)


def _field(fid: int, name: str, label: str, kind: str, *, default: bool = False,
           choices: Any = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "id": fid, "name": name, "label": label, "description": label, "position": fid,
        "required_for_closure": False, "required_for_agents": False, "type": kind, "default": default,
        "customers_can_edit": False, "label_for_customers": label, "required_for_customers": False,
        "displayed_to_customers": False, "created_at": "2024-01-01T00:00:00Z",
        "updated_at": "2024-01-01T00:00:00Z",
    }
    if choices is not None:
        item["choices"] = choices
    return item


# -- admin ----------------------------------------------------------------------

def _admin_conversation(tid: int) -> Response:
    """Add a message as the customer (incoming) or an agent, as if sent by email."""
    data = _body() or {}
    author, private = data.get("author"), bool(data.get("private"))
    if author not in ("customer", "agent") or not data.get("body"):
        return Response("author must be 'customer' or 'agent' and body must be set", status=400)
    kind = "customer" if author == "customer" else "note" if private else "reply"
    state = _state()
    with state.lock:
        if tid not in state.tickets:
            return _not_found()
        response = jsonify(_converse(state, tid, data["body"], kind, private=private,
                                     agent=HUMAN_AGENT_ID))
    response.status_code = 201
    return response


def _admin_reset() -> Response:
    _state().reset()
    return Response(status=204)


def _admin_requests() -> Response:
    state = _state()
    with state.lock:
        return jsonify(list(state.requests))


def _admin_forget_requests() -> Response:
    state = _state()
    with state.lock:
        state.requests.clear()
    return Response(status=204)


def _admin_failures() -> Response:
    """Make the next `count` API calls answer `status` (with optional Retry-After)."""
    data = _body() or {}
    status, count = data.get("status"), data.get("count", 1)
    if not isinstance(status, int) or not 400 <= status <= 599 or not isinstance(count, int):
        return Response("status must be an HTTP error code and count an integer", status=400)
    state = _state()
    with state.lock:
        state.failures.extend([(status, data.get("retry_after"))] * count)
    return Response(status=204)
