"""The JSON API under /api/v1/ (Authorization: Bearer <API_TOKEN>), for scripts and a helpdesk sidebar."""

from __future__ import annotations

import hmac
from datetime import UTC, datetime
from functools import wraps
from typing import Any

from flask import Blueprint, Response, jsonify, request

import console
from console import data
from console import explain as explaining
from console.views import board_items, helpdesk_link

blueprint = Blueprint("api", __name__, url_prefix="/api/v1")


def _iso(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, dict):
        return {k: _iso(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_iso(v) for v in value]
    return value


def _error(message: str, status: int) -> Response:
    response = jsonify({"error": message})
    response.status_code = status
    if status == 401:
        response.headers["WWW-Authenticate"] = 'Bearer realm="deskpilot"'
    return response


def token_required(view: Any) -> Any:
    @wraps(view)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        expected = console.settings().api_token
        header = request.headers.get("Authorization", "")
        scheme, _, offered = header.partition(" ")
        # compare_digest: constant time, so the token cannot be guessed byte by byte.
        if not expected or scheme.lower() != "bearer" or not hmac.compare_digest(
            offered.strip().encode(), expected.encode()
        ):
            return _error("unauthorized", 401)
        return view(*args, **kwargs)

    return wrapper


@blueprint.after_request
def _headers(response: Response) -> Response:
    response.headers.setdefault("Cache-Control", "no-store")
    return response


def _source(value: str | None) -> str:
    return value or console.settings().helpdesk


@blueprint.route("/tickets/<ticket_id>")
@token_required
def ticket(ticket_id: str) -> Response:
    """The decision of one ticket: priority, policy, targets (due, state, business time left),
    the explanation and the bot's actions. `?helpdesk=zendesk|freshdesk` (default HELPDESK)."""
    source = _source(request.args.get("helpdesk"))
    snapshot = console.store().get_snapshot(source, ticket_id)
    if snapshot is None:
        return _error(f"no {source} ticket {ticket_id} has been evaluated", 404)
    now = console.now()
    decision = snapshot["decision"] or {}
    body: dict[str, Any] = {
        "helpdesk": source,
        "ticket_id": str(ticket_id),
        "link": helpdesk_link(source, ticket_id),
        "evaluated_at": _iso(snapshot["updated_at"]),
        "rules_version": snapshot["rules_version"],
        "priority": decision.get("priority"),
        "policy": decision.get("policy"),
        "targets": {},
        "explanation": None,
        "actions": [_iso(a) for a in console.store().actions_for(source, ticket_id)],
    }
    rules = console.current_rules()
    explained = None
    if rules is not None:
        try:
            explained = explaining.explain(explaining.ticket_from_snapshot(snapshot["ticket"]), rules, now)
        except Exception as err:
            body["explanation"] = {"error": f"{type(err).__name__}: {err}"}
    if explained is not None:
        body["priority"], body["policy"] = explained["priority"], explained["policy"]
        for clock in explained["targets"]:
            body["targets"][clock["name"]] = {
                "state": clock["state"], "warning": clock["warning"], "due": _iso(clock["due"]),
                "due_local": clock["due_local"], "calendar": clock["calendar"],
                "business_seconds_left": clock["left_seconds"], "budget": clock["budget"],
            }
        body["explanation"] = {
            "policy_name": explained["policy_name"], "policy_conditions": explained["policy_why"],
            "reclassified": explained["reclassified"],
            "targets": {c["name"]: c["calendar_why"] for c in explained["targets"]},
        }
    else:
        for name, result in (decision.get("targets") or {}).items():
            if result:
                body["targets"][name] = {"state": result.get("state"), "due": result.get("due"),
                                         "calendar": result.get("calendar"), "business_seconds_left": None}
    return jsonify(body)


@blueprint.route("/at-risk")
@token_required
def at_risk() -> Response:
    """Open tickets by next breach, soonest (or longest overdue) first; the board's filters apply."""
    filters = {k: v for k in ("state", "priority", "policy", "group", "source") if (v := request.args.get(k))}
    if "helpdesk" in request.args:
        filters["source"] = request.args["helpdesk"]
    try:
        limit = min(500, max(1, int(request.args.get("limit", "50"))))
    except ValueError:
        return _error("limit must be a whole number from 1 to 500", 400)
    now = console.now()
    rows = data.board_page(console.store(), now, filters, limit, 0)
    items = [_iso({k: v for k, v in item.items()}) for item in board_items(rows, now)]
    for item in items:
        item["business_time_left"] = item.pop("left")
        item["helpdesk"] = item.pop("source")
    return jsonify({"as_of": _iso(now), "tickets": items})
