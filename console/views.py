"""The console's pages: board, ticket, activity, dead letters, rules, health."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from flask import Blueprint, Response, abort, flash, redirect, render_template, request, url_for
from flask_login import login_required

import console
from config import HELPDESKS
from console import auth, data, metrics
from console import explain as explaining
from store import board as board_index

blueprint = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
                      static_folder="static", static_url_path="/static")

PAGE_SIZE = 50
STATE_CHOICES = ("breached", "warning", "running", "paused")

blueprint.add_url_rule("/login", "login", auth.login, methods=["GET", "POST"])
blueprint.add_url_rule("/logout", "logout", auth.logout, methods=["POST"])


@blueprint.before_request
def _csrf() -> None:
    if request.method not in ("GET", "HEAD", "OPTIONS"):
        auth.csrf.protect()  # 400 without a valid token


@blueprint.after_request
def _no_store(response: Response) -> Response:
    # Pages hold ticket data: never cached by the browser or a proxy.
    response.headers.setdefault("Cache-Control", "no-store")
    response.headers.setdefault("X-Frame-Options", "DENY")
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault(
        "Content-Security-Policy",
        "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
        "frame-ancestors 'none'",
    )
    return response


@blueprint.app_template_filter("utc")
def _utc(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")
    return "" if value is None else str(value)


@blueprint.app_template_filter("pct")
def _pct(value: float | None) -> str:
    return "–" if value is None else f"{100 * value:.0f}%"


@blueprint.app_template_filter("tojson_pretty")
def _pretty(value: Any) -> str:
    return json.dumps(value, indent=1, sort_keys=True, default=str)


def helpdesk_link(source: str, ticket_id: str) -> str | None:
    cfg = console.settings()
    if source == "zendesk":
        if cfg.sandbox:
            return f"{cfg.zendesk_api_url}/api/v2/tickets/{ticket_id}.json"
        return f"https://{cfg.zendesk_subdomain}.zendesk.com/agent/tickets/{ticket_id}"
    if source == "freshdesk":
        if cfg.sandbox:
            return f"{cfg.freshdesk_api_url}/api/v2/tickets/{ticket_id}"
        return f"https://{cfg.freshdesk_domain}/a/tickets/{ticket_id}"
    return None


def _known(source: str) -> None:
    if source not in HELPDESKS:
        abort(404, f"unknown helpdesk {source!r}; expected {' or '.join(HELPDESKS)}")


def _filters() -> dict[str, str]:
    out = {}
    for key in ("state", "priority", "policy", "group", "source"):
        value = (request.args.get(key) or "").strip()
        if value:
            out[key] = value[:255]
    if out.get("state") and out["state"] not in STATE_CHOICES:
        abort(400, f"state must be one of {', '.join(STATE_CHOICES)}")
    return out


def board_items(rows: list[Any], now: datetime) -> list[dict]:
    rules = console.current_rules()
    items = []
    for row in rows:
        left, due_local = explaining.business_left(rules, row.policy, row.priority, row.next_target,
                                                   row.next_due, now)
        items.append({
            "source": row.source, "ticket_id": row.ticket_id, "subject": row.subject,
            "priority": row.priority,
            "policy": row.policy, "target": row.next_target, "due": row.next_due, "due_local": due_local,
            "left": left, "state": board_index.state_of(row, now), "group": row.group_name,
            "status": row.status,
        })
    return items


@blueprint.route("/")
@login_required
def board() -> str:
    now = console.now()
    filters = _filters()
    try:
        page = max(1, int(request.args.get("page", "1")))
    except ValueError:
        page = 1
    rows = data.board_page(console.store(), now, filters, PAGE_SIZE, (page - 1) * PAGE_SIZE)
    summary = data.board_summary(console.store(), now, filters)
    peak = max((n for _, n in summary["breaches"]), default=0)
    return render_template("console/board.html", items=board_items(rows, now), summary=summary,
                           filters=filters, states=STATE_CHOICES, now=now, page=page, page_size=PAGE_SIZE,
                           peak=peak, title="Board")


@blueprint.route("/tickets/<source>/<ticket_id>")
@login_required
def ticket(source: str, ticket_id: str) -> str:
    _known(source)
    now = console.now()
    snapshot = console.store().get_snapshot(source, ticket_id)
    if snapshot is None:
        abort(404, f"no {source} ticket {ticket_id} has been evaluated yet")
    engine_ticket = explaining.ticket_from_snapshot(snapshot["ticket"])
    rules = console.current_rules()
    why = None
    error = None
    if rules is not None:
        try:
            why = explaining.explain(engine_ticket, rules, now)
        except Exception as err:  # a ticket the rules in force cannot evaluate: say so
            error = f"{type(err).__name__}: {err}"
    actions = console.store().actions_for(source, ticket_id)
    work = [d for d in console.store().dead_letters(limit=500) if d["source"] == source
            and d["ticket_id"] == str(ticket_id)]
    return render_template(
        "console/ticket.html", source=source, ticket_id=ticket_id, snapshot=snapshot, why=why, error=error,
        timeline=explaining.timeline(engine_ticket, int(now.timestamp())), actions=actions,
        link=helpdesk_link(source, ticket_id), rules_version=console.rules_status()["version"],
        dead=work[0] if work else None, title=f"Ticket {ticket_id}",
    )


@blueprint.route("/tickets/<source>/<ticket_id>/reevaluate", methods=["POST"])
@login_required
def reevaluate(source: str, ticket_id: str) -> Response:
    _known(source)
    queued = console.store().request_sync(source, [ticket_id], console.now(), "console")
    flash(f"Ticket {ticket_id} queued for evaluation." if queued
          else f"Ticket {ticket_id} was already queued (or is parked: replay it from Dead letters).")
    return redirect(url_for("console.ticket", source=source, ticket_id=ticket_id))


def _activity_args() -> dict[str, str]:
    out = {key: (request.args.get(key) or "").strip()[:255] for key in ("rule", "type", "day")}
    if out["day"]:
        try:
            data.parse_day(out["day"])
        except ValueError as err:
            abort(400, str(err))
    return out


@blueprint.route("/activity")
@login_required
def activity() -> str:
    args = _activity_args()
    rows = data.activity(console.store(), rule=args["rule"], kind=args["type"], day=args["day"])
    return render_template("console/activity.html", rows=rows, args=args,
                           facets=data.activity_facets(console.store()), title="Activity")


@blueprint.route("/activity.csv")
@login_required
def activity_csv() -> Response:
    args = _activity_args()
    rows = data.activity(console.store(), rule=args["rule"], kind=args["type"], day=args["day"],
                         limit=100_000)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["created_at", "helpdesk", "ticket_id", "rule", "rules_version", "type", "before",
                     "after"])
    for row in rows:
        writer.writerow([row["created_at"].astimezone(UTC).isoformat(), row["source"], row["ticket_id"],
                         row["rule"], row["rules_version"], row["type"],
                         json.dumps(row["before"], sort_keys=True), json.dumps(row["after"], sort_keys=True)])
    return Response(out.getvalue(), content_type="text/csv; charset=utf-8",
                    headers={"Content-Disposition": "attachment; filename=deskpilot-activity.csv"})


@blueprint.route("/dead-letters")
@login_required
def dead_letters() -> str:
    return render_template("console/dead_letters.html", rows=console.store().dead_letters(limit=500),
                           title="Dead letters")


@blueprint.route("/dead-letters/replay", methods=["POST"])
@login_required
def replay() -> Response:
    source = request.form.get("source") or None
    ticket_id = request.form.get("ticket_id")
    count = console.store().replay_dead_letters(console.now(), source=source,
                                                ticket_ids=[ticket_id] if ticket_id else None)
    flash(f"{count} ticket{'s' if count != 1 else ''} re-queued.")
    return redirect(url_for("console.dead_letters"))


@blueprint.route("/dead-letters/drop", methods=["POST"])
@login_required
def drop() -> Response:
    source, ticket_id = request.form.get("source"), request.form.get("ticket_id")
    if not source or not ticket_id:
        abort(400, "source and ticket_id are required")
    dropped = console.store().drop_dead_letter(source, ticket_id, console.now())
    flash(f"Ticket {ticket_id} dropped." if dropped else f"Ticket {ticket_id} was not parked.")
    return redirect(url_for("console.dead_letters"))


@blueprint.route("/rules")
@login_required
def rules() -> str:
    status = console.rules_status()
    store, now = console.store(), console.now()
    path = console.settings().rules_path
    data.remember_rules(store, status["version"], path, now)
    history = data.rules_history(store)
    in_force = next((h for h in history if h["version"] == status["version"]), None)
    previous = None
    if in_force is not None:
        previous = next((h for h in history if h["first_seen"] < in_force["first_seen"]), None)
    change = None
    if in_force and previous:
        change = data.diff(previous["files"], in_force["files"], previous["version"], in_force["version"])
    pending = None
    try:
        on_disk = data.rule_texts(path)
    except Exception:
        on_disk = []
    if in_force is not None and on_disk and data.version_of(on_disk) != in_force["version"]:
        pending = data.diff(in_force["files"], on_disk, in_force["version"], "on disk")
    return render_template("console/rules.html", status=status, history=history, in_force=in_force,
                           previous=previous, change=change, pending=pending, title="Rules")


def _instant(epoch: float) -> datetime | None:
    return datetime.fromtimestamp(epoch, UTC) if epoch else None


@blueprint.route("/health")
@login_required
def health() -> str:
    store, now = console.store(), console.now()
    queue = data.queue_stats(store, now)
    vendor = {
        "requests": metrics.sample("deskpilot_vendor_requests_total"),
        "rate_limited": metrics.sample("deskpilot_vendor_requests_total", {"status": "429"}),
        "waits": metrics.sample("deskpilot_rate_limit_waits_total"),
    }
    sweeps = {
        "sweep_count": metrics.sample("deskpilot_sweep_duration_seconds_count"),
        "sweep_seconds": metrics.sample("deskpilot_sweep_duration_seconds_sum"),
        "reconcile_count": metrics.sample("deskpilot_reconcile_duration_seconds_count"),
        "reconcile_seconds": metrics.sample("deskpilot_reconcile_duration_seconds_sum"),
        "last_sweep": _instant(metrics.sample("deskpilot_last_sweep_timestamp_seconds", how=max)),
        "last_reconcile": _instant(metrics.sample("deskpilot_last_reconcile_timestamp_seconds", how=max)),
    }
    metrics.flush_vendor_calls(store, every=0)  # this process's own calls, if any
    calls = data.vendor_calls(store, now - timedelta(hours=1))
    return render_template(
        "console/health.html", queue=queue, calls=calls, store_health=store.health(), vendor=vendor,
        sweeps=sweeps,
        budget=data.write_budget_used(store, now), cursors=data.cursors(store), leases=data.leases(store),
        rules=console.rules_status(), now=now, title="Health", hour_ago=now - timedelta(hours=1),
    )
