"""The Freshdesk sandbox's history additions: `include=stats` (and `description`) on the ticket list.

Freshdesk's List All Tickets embeds each ticket's stats with `include=stats`
and costs more credits for it (https://developers.freshdesk.com/api/#list_all_tickets):
the answer says so in X-RateLimit-Used-CurrentRequest, and the sandbox counts
them against its per-minute limit the same way.
"""

from __future__ import annotations

import json
from typing import Any

from flask import Flask, current_app, g, jsonify, request

INCLUDES = ("requester", "stats", "description")
EXTRA_CREDITS = 2  # an embedded resource on a list costs more than the list itself


def install(app: Flask) -> None:
    """Wrap the sandbox's ticket list (called by sandbox.freshdesk.create_sandbox)."""
    listing = app.view_functions["_list_tickets"]

    def list_with_includes() -> Any:
        includes = [part for part in request.args.get("include", "").split(",") if part]
        bad = [part for part in includes if part not in INCLUDES]
        if bad:
            response = jsonify({"description": "Validation failed", "errors": [{
                "field": "include", "message": f"It should be one of these values: '{','.join(INCLUDES)}'",
                "code": "invalid_value"}]})
            response.status_code = 400
            return response
        response = listing()
        if not includes or response.status_code != 200:
            return response
        state = current_app.state  # type: ignore[attr-defined]
        items = response.get_json()
        with state.lock:
            for item in items:
                if "stats" in includes:
                    item["stats"] = dict(state.stats[item["id"]])
                if "description" in includes:
                    item["description"] = state.tickets[item["id"]]["description"]
            # The embedded resources cost credits like calls of their own.
            if state.window:
                state.window = (state.window[0], state.window[1] + EXTRA_CREDITS)
        response.set_data(json.dumps(items))
        g.history_credits = 1 + EXTRA_CREDITS
        return response

    def credits(response: Any) -> Any:
        if "history_credits" in g:
            response.headers["X-RateLimit-Used-CurrentRequest"] = str(g.history_credits)
        return response

    app.view_functions["_list_tickets"] = list_with_includes
    # After-request functions run last-registered first: this one runs after the
    # sandbox's own, which reports one credit for every call.
    app.after_request_funcs.setdefault(None, []).insert(0, credits)
