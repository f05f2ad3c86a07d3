"""Decide a ticket: a pure function of (ticket, rules, now)."""

from __future__ import annotations

from collections.abc import Sequence

from engine import clocks, explain, ownership
from engine.decision import TARGET_NAMES, Action, Decision, TargetResult, iso_utc
from engine.ruleset import EscalationRule, PolicyRule, RuleSet
from engine.ticket import PRIORITY_RANK, Ticket

SLA_FIELDS_RULE = "sla-fields"


def _clock(name: str, target, history: clocks.History, ticket: Ticket, chosen) -> TargetResult | None:
    if name == "first_response":
        return clocks.first_response(target, history)
    if name == "resolution":
        return clocks.resolution(target, history)
    if name == "next_reply":
        # The customer's opening message belongs to first_response when it applies.
        return clocks.next_reply(target, history, creation_counts="first_response" not in chosen)
    return clocks.next_update(target, history, ticket.tags)


class _State:
    """The ticket as the decided actions leave it, so later rules see earlier ones."""

    __slots__ = ("tags", "group", "priority", "status", "custom_status", "holds")

    def __init__(self, ticket: Ticket, priority: str | None, status: str, custom_status: str | None) -> None:
        self.holds: Sequence[ownership.Hold] = ()
        self.tags = ticket.tags
        self.group = ticket.group
        self.priority = priority
        self.status = status
        self.custom_status = custom_status  # the custom status label, while the status is the ticket's


def _reclassify(ticket: Ticket, rules: RuleSet, status: str, custom_status: str | None):
    priority = ticket.priority
    for rule in rules.reclassify:
        reasons = rule.when.test(ticket, priority, status, custom_status)
        if reasons is None:
            continue
        if rule.set == priority:
            return priority, None, None  # first match wins, and it keeps the priority
        if priority is None:
            reasons = reasons or ["the ticket had no priority"]
        return rule.set, rule, reasons
    return priority, None, None


def _priority_note(
    old: str | None,
    new: str,
    rule,
    reasons: list[str],
    policy: PolicyRule | None,
    targets: dict[str, TargetResult | None],
    chosen: dict,
) -> str:
    if old is None:
        verb = "set"
    else:
        verb = "lowered" if PRIORITY_RANK[new] < PRIORITY_RANK[old] else "raised"
    from_part = "" if old is None else f" from {explain.title(old)}"
    why = "; ".join(reasons)
    if rule.explain:
        why = f"{rule.explain} ({why})" if why else rule.explain
    text = f"Priority {verb}{from_part} to {explain.title(new)} by rule `{rule.id}`: {why}."
    if policy is not None:
        for name in TARGET_NAMES:
            result = targets.get(name)
            if result is not None:
                text += " " + explain.target_sentence(result, chosen[name], policy.name)
                break
    return text


def _escalation_due(rule: EscalationRule, ticket: Ticket, targets, now: int) -> tuple[bool, int | None, str]:
    """(fires now, else the instant it would, reason)."""
    if rule.kind == "immediate":
        return True, None, "its conditions hold"
    if rule.kind == "after_created":
        if rule.days is None:
            moment = rule.calendar.add(ticket.created_at, rule.within)
            hours = explain.budget_words(rule.within, rule.calendar)
        else:
            moment = rule.calendar.add_days(ticket.created_at, rule.days)
            hours = explain.days_words(rule.days)
        verb = "has" if rule.days == 1 else "have"
        return now >= moment, moment, f"{hours} {verb} passed since the ticket was created"
    result = targets.get(rule.target)
    label = explain.TARGET_LABELS[rule.target].lower()
    if result is None:
        return False, None, ""
    if rule.kind == "breach":
        if result.state == "breached":
            return True, None, f"{label} breached (due {iso_utc(result.due)})"
        return False, (result.due + 1 if result.state == "running" else None), ""
    if rule.kind == "warning":
        if result.warn_at is None:
            return False, None, ""
        return result.warning, result.warn_at, f"{label} passed its warning threshold"
    raise ValueError(f"unknown escalation kind {rule.kind!r}")


def _escalate(
    rule: EscalationRule, ticket: Ticket, state: _State, targets, chosen, now: int, actions: list[Action]
) -> int | None:
    if not rule.unless_tags.isdisjoint(state.tags):
        return None
    if rule.when.test(ticket, state.priority, state.status, state.custom_status) is None:
        return None
    if rule.kind == "before_breach":
        fires, moment, reason = _before_breach(rule, chosen, targets, now)
    else:
        fires, moment, reason = _escalation_due(rule, ticket, targets, now)
    if not fires:
        return moment if moment is not None and moment > now else None
    changes: list[Action] = []
    done: list[str] = []
    new_tags = tuple(t for t in rule.add_tags if t not in state.tags)
    if new_tags:
        changes.append(Action("add_tags", rule.id, values=new_tags))
        state.tags = state.tags | frozenset(new_tags)
        done.append("tagged " + ", ".join(new_tags))
    hold = ownership.held(state.holds, ownership.GROUP) if rule.assign_group else None
    if hold is not None and rule.assign_group != state.group:  # agents win (engine/ownership.py)
        if (stood := ownership.stand_back_note(hold, rule.id, rule.assign_group)) is not None:
            actions.append(Action("note", rule.id, body=stood))
    elif rule.assign_group and rule.assign_group != state.group:
        changes.append(Action("assign_group", rule.id, value=rule.assign_group))
        state.group = rule.assign_group
        done.append(f"assigned to group {rule.assign_group}")
    if rule.set_priority and rule.set_priority != state.priority:
        changes.append(Action("set_priority", rule.id, value=rule.set_priority))
        done.append(f"priority set to {explain.title(rule.set_priority)}")
        state.priority = rule.set_priority
    if not changes:
        return None  # already escalated: nothing to do again
    note = f"Escalated by rule `{rule.id}`: {reason}; {' and '.join(done)}."
    if rule.note:
        note += " " + rule.note
    actions.extend(changes)
    actions.append(Action("note", rule.id, body=note))
    return None


def _before_breach(rule: EscalationRule, chosen, targets, now: int):
    result = targets.get(rule.target)
    label = explain.TARGET_LABELS[rule.target].lower()
    if result is None:
        return False, None, ""
    if result.state == "breached":
        return True, None, f"{label} breached (due {iso_utc(result.due)})"
    if result.state != "running":
        return False, None, ""
    calendar = chosen[rule.target].calendar
    left = calendar.position(result.due) - calendar.position(now)
    if left <= rule.within:
        return True, None, f"{label} due {iso_utc(result.due)}, {explain.amount(left)} left"
    moment = calendar.at_position(calendar.position(result.due) - rule.within, now)
    return False, moment, ""


def _auto_close(
    ticket: Ticket, rules: RuleSet, state: _State, history: clocks.History, now: int, actions: list[Action]
) -> int | None:
    """Close after `after` business time since the agent's last public comment.

    The bot's own reminder does not restart the wait (it is marked `bot`);
    a customer comment after the agent's cancels it.
    """
    for rule in rules.auto_close:
        if rule.when.test(ticket, state.priority, state.status, state.custom_status) is None:
            continue
        # "Any later customer comment cancels it": the latest public comment must be the agent's.
        if history.last_public_author != "agent" or history.last_agent is None:
            continue
        since = history.last_human_agent or history.last_agent
        calendar = rule.calendar
        if rule.after_days is None:
            moment = calendar.add(since, rule.after)
        else:
            moment = calendar.add_days(since, rule.after_days)
        if now < moment:
            if rule.remind_before is None:
                return moment
            if rule.after_days is None:
                remind_at = calendar.add(since, rule.after - rule.remind_before)
            else:  # that much open time before the close, and not before the wait began
                remind_at = calendar.at_position(calendar.position(moment) - rule.remind_before, since)
            reminded = history.last_agent > since
            if reminded:
                return moment
            if now < remind_at:
                return remind_at
            actions.append(Action("reply", rule.id, body=rule.reminder))
            actions.append(
                Action(
                    "note",
                    rule.id,
                    body=(
                        f"Reminder sent by rule `{rule.id}`: the ticket will be set to {rule.set_status}"
                        " if the customer does not reply within"
                        f" {explain.budget_words(rule.remind_before, rule.calendar)}."
                    ),
                )
            )
            return moment
        if state.status == rule.set_status:
            return None
        actions.append(Action("set_status", rule.id, value=rule.set_status))
        new_tags = tuple(t for t in rule.add_tags if t not in state.tags)
        if new_tags:
            actions.append(Action("add_tags", rule.id, values=new_tags))
        actions.append(Action("reply", rule.id, body=rule.reply))
        # The same words for every ticket the rule closes, so sweeps can close
        # many tickets in one bulk update.
        waited = (
            explain.budget_words(rule.after, rule.calendar)
            if rule.after_days is None
            else explain.days_words(rule.after_days)
        )
        actions.append(
            Action(
                "note",
                rule.id,
                body=(
                    f"Status set to {rule.set_status} by rule `{rule.id}`: no customer reply for {waited}"
                    " since the agent's last public comment."
                ),
            )
        )
        state.status, state.custom_status = rule.set_status, None
        return None
    return None


def _sla_fields(rules: RuleSet, ticket: Ticket, targets, actions: list[Action]) -> None:
    values: dict[str, str | None] = {}
    for name, names in rules.sla_fields.items():
        result = targets.get(name)
        due = None if result is None else iso_utc(result.due)
        state = None if result is None else result.state
        for key, value in (("due", due), ("state", state)):
            field = names.get(key)
            if field and (ticket.fields.get(field) or None) != value:
                values[field] = value
    if values:
        actions.append(Action("set_fields", SLA_FIELDS_RULE, values=values))


def _sla_field_checks(rules: RuleSet, targets, now: int) -> list[int]:
    """The instants a written SLA state field would change: a running target turning breached."""
    checks = []
    for name, names in rules.sla_fields.items():
        result = targets.get(name)
        if names.get("state") and result is not None and result.state == "running" and result.due >= now:
            checks.append(result.due + 1)
    return checks


def evaluate(ticket: Ticket, rules: RuleSet, now: int, holds: Sequence[ownership.Hold] = ()) -> Decision:
    """Decide `ticket` at `now` (UTC epoch seconds). Pure: same inputs, same decision.

    Actions are only those that change something, so a ticket that already
    carries the decided state yields none and the bot never loops on its
    own updates.
    """
    aliases = rules.status_aliases
    status = aliases.get(ticket.status, ticket.status) if aliases else ticket.status
    history = clocks.History(ticket, now, status, aliases)
    status = history.status
    actions: list[Action] = []

    priority, prule, reasons = _reclassify(ticket, rules, status, history.label)
    # Agents win: after a hand-set priority the reclassification stands back (engine/ownership.py).
    if prule is not None and (hold := ownership.held(holds, ownership.PRIORITY)) is not None:
        if (stood := ownership.stand_back_note(hold, prule.id, priority)) is not None:
            actions.append(Action("note", prule.id, body=stood))
        priority, prule = ticket.priority, None

    policy = None
    for candidate in rules.policies:
        if candidate.when.test(ticket, priority, status, history.label) is not None:
            policy = candidate
            break
    targets: dict[str, TargetResult | None] = {}
    chosen = {}  # target name -> the Target that applies, on the ticket's calendar
    if policy is not None:
        for name, by_priority in policy.targets.items():
            target = by_priority.get(priority)
            if target is not None and target.by_field is not None:
                target = target.for_ticket(ticket.fields)
            if target is not None:
                chosen[name] = target
        for name, target in chosen.items():
            targets[name] = _clock(name, target, history, ticket, chosen)

    if prule is not None:
        actions.append(Action("set_priority", prule.id, value=priority))
        actions.append(
            Action(
                "note",
                prule.id,
                body=_priority_note(ticket.priority, priority, prule, reasons, policy, targets, chosen),
            )
        )

    # Only moments at which some rule can act are worth a look: each escalation
    # and the auto-close give theirs below, and an SLA field the rules write
    # changes state when its target turns breached. A target's due or warning
    # time alone acts on nothing (the board derives its state from the instants).
    checks = _sla_field_checks(rules, targets, now)

    state = _State(ticket, priority, status, history.label)
    state.holds = holds
    for rule in rules.escalations:
        moment = _escalate(rule, ticket, state, targets, chosen, now, actions)
        if moment is not None:
            checks.append(moment)
    moment = _auto_close(ticket, rules, state, history, now, actions)
    if moment is not None:
        checks.append(moment)
    if rules.sla_fields:
        _sla_fields(rules, ticket, targets, actions)

    return Decision(
        ticket=ticket.id,
        priority=priority,
        priority_rule=None if prule is None else prule.id,
        policy=None if policy is None else policy.id,
        targets=targets,
        actions=actions,
        next_check=min(checks) if checks else None,
    )
