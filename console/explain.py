"""The ticket page's explanation: the stored ticket evaluated again with the rules in force, now."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from engine import clocks
from engine.decision import TARGET_NAMES
from engine.evaluate import evaluate
from engine.explain import TARGET_LABELS, amount
from engine.ruleset import RuleSet
from engine.ticket import Event, Ticket, to_epoch

PAUSE_STATUSES = frozenset({"pending", "on_hold"})


def ticket_from_snapshot(data: dict) -> Ticket:
    """The engine Ticket the worker stored (jobs/worker.py `_ticket_json`)."""
    events = []
    for raw in data.get("events") or []:
        at, kind, author, public, status = (list(raw) + [None] * 5)[:5]
        events.append(Event(int(at), kind, author, bool(public) if public is not None else True, status))
    return Ticket(
        id=str(data.get("id")),
        status=data.get("status") or "open",
        created_at=int(data.get("created_at") or 0),
        priority=data.get("priority"),
        subject=data.get("subject") or "",
        tags=frozenset(data.get("tags") or ()),
        fields=dict(data.get("fields") or {}),
        events=tuple(sorted(events, key=lambda e: e.at)),
        group=data.get("group"),
    )


def utc(epoch: int | None) -> datetime | None:
    return None if epoch is None else datetime.fromtimestamp(epoch, UTC)


def describe_matcher(matcher: Any) -> list[str]:
    """The conditions of a compiled `when:` in words."""
    if matcher.always:
        return ["always (no conditions)"]
    out = []
    if matcher.priorities is not None:
        out.append("priority is " + " or ".join(sorted(p or "none" for p in matcher.priorities)))
    if matcher.statuses is not None:
        out.append("status is " + " or ".join(sorted(matcher.statuses)))
    if matcher.tags_all:
        out.append("tagged all of " + ", ".join(sorted(matcher.tags_all)))
    if matcher.tags_any:
        out.append("tagged any of " + ", ".join(sorted(matcher.tags_any)))
    if matcher.tags_none:
        out.append("tagged none of " + ", ".join(sorted(matcher.tags_none)))
    for name, accepted in matcher.fields:
        out.append(f"field {name} is " + " or ".join(sorted(map(str, accepted))))
    if matcher.text_any is not None:
        out.append("the text mentions one of the rule's phrases")
    if matcher.text_none is not None:
        out.append("the text mentions none of the excluded phrases")
    if matcher.text_regex is not None:
        out.append(f"the text matches /{matcher.text_regex.pattern}/")
    return out


def timeline(ticket: Ticket, now: int) -> dict[str, Any]:
    """Events (comments by whom, status changes) and the pause spans, positioned on [created, now]."""
    start = ticket.created_at
    end = max(now, max((e.at for e in ticket.events), default=start), start + 1)
    width = end - start

    def pct(t: int) -> float:
        return round(100.0 * (min(max(t, start), end) - start) / width, 2)

    history = clocks.History(ticket, now, ticket.status, {})
    spans = history.pauses(PAUSE_STATUSES, start)
    events = []
    for event in ticket.events:
        if event.type == "comment":
            what = f"{'public' if event.public else 'internal'} comment by the {event.author or 'unknown'}"
        else:
            what = f"status changed to {event.status}"
        events.append({"at": utc(event.at), "what": what, "type": event.type, "pct": pct(event.at)})
    return {
        "start": utc(start),
        "end": utc(end),
        "events": events,
        "pauses": [{"start": utc(a), "end": utc(b), "left": pct(a), "width": max(0.5, pct(b) - pct(a))}
                   for a, b in spans],
    }


def explain(ticket: Ticket, rules: RuleSet, now_dt: datetime) -> dict[str, Any]:
    """Priority and why, policy and why, each target's clock (due, used, left, calendar)."""
    now = to_epoch(now_dt)
    decision = evaluate(ticket, rules, now)
    out: dict[str, Any] = {"priority": decision.priority, "policy": decision.policy, "policy_name": None,
                           "policy_why": [], "reclassified": None, "targets": [],
                           "actions": [a.to_dict() for a in decision.actions]}
    status = rules.status_aliases.get(ticket.status, ticket.status)
    if decision.priority_rule:
        rule = next((r for r in rules.reclassify if r.id == decision.priority_rule), None)
        if rule is not None:
            reasons = rule.when.test(ticket, ticket.priority, status) or []
            out["reclassified"] = {"rule": rule.id, "from": ticket.priority, "to": decision.priority,
                                   "explain": rule.explain, "reasons": reasons,
                                   "conditions": describe_matcher(rule.when)}
    elif ticket.priority != decision.priority:
        out["reclassified"] = {"rule": None, "from": ticket.priority, "to": decision.priority}
    policy = next((p for p in rules.policies if p.id == decision.policy), None)
    if policy is not None:
        out["policy_name"] = policy.name
        out["policy_why"] = describe_matcher(policy.when)
        skipped = []
        for candidate in rules.policies:
            if candidate.id == policy.id:
                break
            skipped.append(candidate.id)
        out["policy_skipped"] = skipped
        for name in TARGET_NAMES:
            result = decision.targets.get(name)
            target = policy.targets.get(name, {}).get(decision.priority)
            if result is None or target is None:
                continue
            cal = target.calendar
            left = used = None
            if result.state == "running" and result.due is not None:
                left = max(0, cal.position(result.due) - cal.position(now))
                used = max(0, result.budget - left)
            due_local = None
            level = f" ({target.level})" if target.level else ""
            if result.due is not None:
                local = datetime.fromtimestamp(result.due, cal.zone)
                due_local = f"{local:%a %d %b %H:%M} {local.tzname()}"
            out["targets"].append({
                "name": name, "label": TARGET_LABELS[name], "state": result.state,
                "warning": result.warning, "due": utc(result.due), "due_local": due_local,
                "budget": amount(result.budget), "used": None if used is None else amount(used),
                "left": None if left is None else amount(left), "left_seconds": left,
                "calendar": cal.name, "zone": str(cal.zone),
                "calendar_why": f"the {policy.name} policy's {TARGET_LABELS[name].lower()} target for "
                                f"{decision.priority or 'no'} priority{level} uses the {cal.name} calendar",
                "pauses_on": sorted(target.pause_on),
                "achieved_at": utc(result.achieved_at),
            })
    return out


def overdue(seconds: int) -> str:
    """'3 d 4 h', '5 h 10 min', '12 min': wall-clock time past due."""
    days, rest = divmod(max(60, seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    return f"{minutes} min"


def business_left(rules: RuleSet | None, policy: str | None, priority: str | None, target: str | None,
                  due: datetime | None, now: datetime) -> tuple[str | None, str | None]:
    """(business time left in words, the due time in the calendar's zone) for a board row."""
    if rules is None or due is None or target is None:
        return None, None
    pol = next((p for p in rules.policies if p.id == policy), None)
    tgt = pol.targets.get(target, {}).get(priority) if pol is not None else None
    if tgt is None:
        return None, None
    cal = tgt.calendar
    local = due.astimezone(cal.zone)
    due_local = f"{local:%a %d %b %H:%M} {local.tzname()}"
    if due <= now:
        return f"0 (overdue {overdue(int((now - due).total_seconds()))})", due_local
    left = cal.position(to_epoch(due)) - cal.position(to_epoch(now))
    return amount(max(0, left // 60 * 60)), due_local
