"""The Zendesk sandbox's history endpoints: the incremental ticket event export, and users
sideloaded on the cursor-based ticket export.

Shapes as documented for the incremental exports
(https://developer.zendesk.com/api-reference/ticketing/ticket-management/incremental_exports/):
each ticket event is one audit with its `child_events`; a field change names the
field as its key (`{"status": "solved", "previous_value": "open", "event_type":
"Change"}`), custom fields come as `custom_ticket_fields`, tags with
`added_tags`/`removed_tags`, and comments in full only with `include=comment_events`.
Pages are time-based: up to 1000 events from `start_time`, `end_time` the last
one's, `next_page` starting there, `end_of_stream` when the page is not full.
"""

from __future__ import annotations

from bisect import bisect_left
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from flask import Flask, current_app, jsonify, request

from sandbox.zendesk_state import ApiError

EVENT_PAGE = 1000


def _epoch(value: str) -> int:
    return int(datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
_VIA = {"api": "Web service", "web": "Web form", "email": "Mail"}


def install(app: Flask) -> None:
    """Add the history endpoints to a sandbox app (called by sandbox.zendesk.create_sandbox)."""
    app.add_url_rule("/api/v2/incremental/ticket_events.json", endpoint="_ticket_events",
                     view_func=_ticket_events, methods=["GET"])
    export = app.view_functions["_export"]

    def export_with_users() -> Any:
        response = export()
        if "users" not in (request.args.get("include") or "").split(","):
            return response
        body = response.get_json()
        state = current_app.state  # type: ignore[attr-defined]
        with state.lock:
            ids = set()
            for ticket in body.get("tickets") or []:
                ids |= {ticket.get("requester_id"), ticket.get("submitter_id"), ticket.get("assignee_id")}
                for audit in state.audits.get(ticket["id"], []):
                    ids.add(audit["author_id"])
                    ids |= {e.get("author_id") for e in audit["events"] if e["type"] == "Comment"}
            body["users"] = [state.users[uid] for uid in sorted(i for i in ids if i is not None)
                             if uid in state.users]
        return jsonify(body)

    app.view_functions["_export"] = export_with_users


def _child(event: dict[str, Any], via: str, comments: bool) -> dict[str, Any]:
    base = {"id": event["id"], "via": via, "via_reference_id": None}
    if event["type"] == "Comment":
        if comments:
            return {**event, **base, "event_type": "Comment"}
        return {**base, "comment_present": True, "comment_public": event["public"], "event_type": "Comment"}
    name, value = event["field_name"], event["value"]
    child = dict(base, event_type=event["type"])
    if name.isdigit():
        child["custom_ticket_fields"] = {name: value}
    else:
        child[name] = value
    if event["type"] == "Change":
        child["previous_value"] = event.get("previous_value")
        if name == "tags":
            before = list(event.get("previous_value") or ())
            child["added_tags"] = [t for t in value if t not in before]
            child["removed_tags"] = [t for t in before if t not in value]
    return child


def _index(state: Any) -> list[tuple[int, int, dict[str, Any]]]:
    """Every audit as (epoch, id, audit) in time order; rebuilt only when audits were added."""
    total = sum(len(items) for items in state.audits.values())
    cached = getattr(state, "_history_index", None)
    if cached is None or cached[0] != total:
        index = sorted(((_epoch(a["created_at"]), a["id"], a) for items in state.audits.values()
                        for a in items), key=lambda item: item[:2])
        cached = (total, index)
        state._history_index = cached
    return cached[1]


def _ticket_events() -> Any:
    start = request.args.get("start_time", "")
    if not start.isdigit():
        raise ApiError(400, "InvalidPaginationParameter", "start_time is required")
    comments = "comment_events" in (request.args.get("include") or "").split(",")
    state = current_app.state  # type: ignore[attr-defined]
    with state.lock:
        index = _index(state)
        first = bisect_left(index, (int(start), 0, 0))
        page = [audit for _, _, audit in index[first:first + EVENT_PAGE]]
        events = []
        for audit in page:
            via = _VIA.get(audit["via"]["channel"], "Web service")
            events.append({
                "id": audit["id"], "ticket_id": audit["ticket_id"],
                "timestamp": _epoch(audit["created_at"]), "created_at": audit["created_at"],
                "updater_id": audit["author_id"], "via": via, "system": {}, "metadata": {},
                "event_type": "Audit", "merged_ticket_ids": [],
                "child_events": [_child(e, via, comments) for e in audit["events"]],
            })
        end_time = events[-1]["timestamp"] if events else int(start)
        args = {"start_time": end_time, **({"include": request.args["include"]}
                                           if request.args.get("include") else {})}
        return jsonify({
            "ticket_events": events, "count": len(events), "end_time": end_time,
            "next_page": f"{request.base_url}?{urlencode(args)}",
            "end_of_stream": len(page) < EVENT_PAGE,
        })
