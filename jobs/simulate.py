"""Replay ticket histories through rule sets, and compare what two rule sets would have done.

Pure: no I/O and no clock. The input is the vendor-neutral history documents
of jobs/history.py (a ticket's initial state and its human-made timeline);
the output is, per ticket and rule set, every action the bot would have taken
and when, and the ticket as those actions would have left it.

The replay evaluates the engine at the ticket's creation, at each event of its
timeline, and at each instant the previous decision named as its next check
(a breach, a warning, an escalation, a reminder, an auto-close), so time rules
fire when they would have. The bot's own actions feed back: a reclassified
priority changes the targets that follow, an auto-close closes the ticket (a
later customer reply reopens it, as the helpdesks do), a reminder is a bot
comment. Actions the bot took in the real history are left out of the
timeline: the rule set under test decides those afresh.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from engine.decision import TARGET_NAMES, TargetResult, iso_utc
from engine.evaluate import evaluate
from engine.ruleset import RuleSet
from engine.ticket import Event, Ticket

# How often one instant is re-evaluated after the bot's own changes (they may
# enable a rule that was waiting for them, e.g. a tag an escalation adds).
_SETTLE_ROUNDS = 3
# The change types of the comparison besides contract.md's action types.
POLICY, DUE = "policy", "due"


@dataclass(frozen=True, slots=True)
class Mapping_:
    """A rule set's view of vendor ids: custom field id -> engine name, group id -> name."""

    fields: Mapping[str, str]
    groups: Mapping[str, str]


def mapping_for(rules: RuleSet, source: str) -> Mapping_:
    """The rule files' `helpdesk:` ids for `source`, inverted to read vendor values."""
    spec = rules.helpdesk.get(source)
    if spec is None:
        return Mapping_({}, {})
    return Mapping_(
        {str(vendor): name for name, vendor in spec.fields.items()},
        {str(vendor): name for name, vendor in spec.groups.items()},
    )


@dataclass(slots=True)
class Prepared:
    """A history document read once for one mapping: initial state and the human timeline."""

    id: str
    url: str | None
    created: int
    subject: str
    description: str
    status: str
    priority: str | None
    group: str | None
    tags: frozenset[str]
    fields: dict[str, Any]
    custom_status: str | None
    # (at, kind, a, b): comment (author, public) | status (status, custom status label) | priority (p) |
    # group (name) | tags (added, removed) | field (name, value)
    events: list[tuple]
    customer_comments: list[int]


def prepare(doc: Mapping[str, Any], mapping: Mapping_) -> Prepared:
    """Map a history document's vendor ids to a rule set's names; drop the bot's own events."""
    initial = doc.get("initial") or {}
    fmap, gmap = mapping.fields, mapping.groups

    def group_name(raw: Any) -> str | None:
        return None if raw is None else gmap.get(str(raw))

    events: list[tuple] = []
    customer: list[int] = []
    for item in doc.get("events") or ():
        if item.get("bot"):
            continue
        at, kind = int(item["at"]), item["type"]
        if kind == "comment":
            public = bool(item.get("public", True))
            events.append((at, "comment", item["author"], public))
            if item["author"] == "customer" and public:
                customer.append(at)
        elif kind == "status":
            events.append((at, "status", item["status"], item.get("custom_status")))
        elif kind == "priority":
            events.append((at, "priority", item.get("priority"), None))
        elif kind == "group":
            events.append((at, "group", group_name(item.get("group")), None))
        elif kind == "tags":
            events.append((at, "tags", tuple(item.get("added") or ()), tuple(item.get("removed") or ())))
        elif kind == "field":
            raw = str(item["field"])
            events.append((at, "field", fmap.get(raw, raw), item.get("value")))
    events.sort(key=lambda e: e[0])  # stable: same-instant events keep the vendor's order
    fields = {fmap.get(str(raw), str(raw)): value for raw, value in (initial.get("fields") or {}).items()}
    return Prepared(
        id=str(doc["id"]),
        url=doc.get("url"),
        created=int(doc["created_at"]),
        subject=doc.get("subject") or "",
        description=doc.get("description") or "",
        status=initial.get("status") or "new",
        priority=initial.get("priority"),
        group=group_name(initial.get("group")),
        tags=frozenset(initial.get("tags") or ()),
        fields=fields,
        custom_status=initial.get("custom_status"),
        events=events,
        customer_comments=customer,
    )


@dataclass(frozen=True, slots=True)
class Firing:
    """One action a rule set would have taken, at `at`."""

    at: int
    rule: str
    type: str
    value: Any


@dataclass(slots=True)
class Run:
    """One ticket replayed through one rule set, as of the window's end."""

    ticket: str
    url: str | None
    created: int
    priority: str | None
    policy: str | None
    group: str | None
    status: str
    targets: dict[str, TargetResult | None]
    firings: list[Firing] = field(default_factory=list)
    # target -> distinct due instants that turned breached (next_update can breach often)
    breaches: dict[str, list[int]] = field(default_factory=dict)
    closes: list[Firing] = field(default_factory=list)
    false_closes: list[tuple[Firing, int]] = field(default_factory=list)  # (close, customer wrote at)
    escalations: list[Firing] = field(default_factory=list)
    evaluations: int = 0


def _value(action) -> Any:
    if action.type in ("set_priority", "set_status", "assign_group"):
        return action.value
    if action.type == "add_tags":
        return list(action.values)
    if action.type == "set_fields":
        return dict(action.values)
    return action.body


_READ_TAGS: dict[int, tuple[RuleSet, frozenset[str]]] = {}


def read_tags(rules: RuleSet) -> frozenset[str]:
    """Every tag a rule's decision can depend on (conditions, unless_tags, until_tags)."""
    cached = _READ_TAGS.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    tags: set[str] = set()
    matchers = [r.when for r in rules.reclassify] + [p.when for p in rules.policies]
    matchers += [r.when for r in rules.escalations] + [r.when for r in rules.auto_close]
    for matcher in matchers:
        tags |= matcher.tags_all | matcher.tags_any | matcher.tags_none
    for rule in rules.escalations:
        tags |= rule.unless_tags
    for policy in rules.policies:
        for by_priority in policy.targets.values():
            for target in by_priority.values():
                if target is not None:
                    tags |= target.until_tags
    result = frozenset(tags)
    if len(_READ_TAGS) > 64:
        _READ_TAGS.clear()
    _READ_TAGS[id(rules)] = (rules, result)
    return result


def _look_again(decision, t: int) -> int | None:
    """The rules' own next moment, or an instant a target changes state if sooner: the replay
    counts breaches, which the bot itself need not look at when no rule acts on them."""
    moments = [m for m in (decision.next_check, decision.next_state_change(t)) if m is not None]
    return min(moments) if moments else None


def replay(prep: Prepared, rules: RuleSet, start: int, end: int) -> Run:
    """Replay one prepared ticket through `rules`; record the actions taken in [start, end]."""
    watched = read_tags(rules)
    escalation_ids = {rule.id for rule in rules.escalations}
    close_ids = {rule.id for rule in rules.auto_close}
    reclassify_ids = {rule.id for rule in rules.reclassify}
    evs = prep.events
    n = len(evs)
    i = 0
    status, priority, group = prep.status, prep.priority, prep.group
    tags, fields = prep.tags, prep.fields
    custom = prep.custom_status  # the custom status label, while the status is the helpdesk's own
    timeline: list[Event] = []
    if status:
        timeline.append(Event(prep.created, "status", status=status, custom_status=custom))
    bot_closed = False
    firings: list[Firing] = []
    closes: list[Firing] = []
    escalations: list[Firing] = []
    breached_next: set[int] = set()
    t = prep.created
    evaluations = 0
    decision = None
    while True:
        # Internal notes change nothing the engine reads: no new decision at them, unless the
        # last decision acted (the ticket as its actions left it has not been decided yet).
        inert = decision is not None and not decision.actions and i < n and evs[i][0] <= t and (
            (check := _look_again(decision, t)) is None or check > t)
        while i < n and evs[i][0] <= t:
            at, kind, a, b = evs[i]
            i += 1
            inert = inert and kind == "comment" and not b
            if kind == "comment":
                timeline.append(Event(at, "comment", a, b))
                if bot_closed and a == "customer" and b and status == "solved":
                    status, custom = "open", None  # a requester's reply reopens a solved ticket
                    timeline.append(Event(at, "status", status="open"))
                    bot_closed = False
            elif kind == "status":
                status, custom = a, b
                timeline.append(Event(at, "status", status=a, custom_status=b))
                bot_closed = False
            elif kind == "priority":
                priority = a
            elif kind == "group":
                group = a
            elif kind == "tags":
                tags = (tags | frozenset(a)) - frozenset(b)
            else:
                fields = {**fields, a: b}
        for _ in range(0 if inert else _SETTLE_ROUNDS):
            ticket = Ticket(prep.id, status, prep.created, priority, prep.subject, prep.description,
                            tags, fields, tuple(timeline), group, custom)
            decision = evaluate(ticket, rules, t)
            evaluations += 1
            result = decision.targets.get("next_update")
            if result is not None and result.state == "breached" and result.due is not None:
                breached_next.add(result.due)
            if not decision.actions:
                break
            record = start <= t <= end
            changed = False
            for action in decision.actions:
                kind = action.type
                if record:
                    firing = Firing(t, action.rule, kind, _value(action))
                    firings.append(firing)
                    if kind == "set_status" and action.rule in close_ids:
                        closes.append(firing)
                    elif action.rule in escalation_ids and kind != "note":
                        if not escalations or escalations[-1].rule != action.rule or escalations[-1].at != t:
                            escalations.append(firing)
                if kind == "set_priority":
                    # A reclassification is already in this decision's targets and rules.
                    changed |= priority != action.value and action.rule not in reclassify_ids
                    priority = action.value
                elif kind == "set_status":
                    changed |= status != action.value
                    status, custom = action.value, None
                    timeline.append(Event(t, "status", status=action.value))
                    bot_closed = action.rule in close_ids
                elif kind == "assign_group":
                    group = action.value  # no rule reads the group: nothing else can follow
                elif kind == "add_tags":
                    # Only a tag some rule reads can lead to another decision at this instant.
                    changed |= not watched.isdisjoint(action.values)
                    tags = tags | frozenset(action.values)
                elif kind == "set_fields":
                    fields = {**fields, **action.values}
                elif kind == "reply":
                    timeline.append(Event(t, "comment", "agent", True, bot=True))
            if not changed:
                break
        following = evs[i][0] if i < n else None
        check = _look_again(decision, t)
        if check is not None and check <= t:
            check = t + 1
        if check is not None and (following is None or check < following):
            following = check
        if following is None or following > end:
            break
        t = following
    # No evaluation at `end` itself: the last decision named no instant up to `end` at which
    # anything could change (a due turning breached, a warning, a rule firing), so its
    # targets are the targets at `end`.
    breaches: dict[str, list[int]] = {}
    for name in TARGET_NAMES:
        result = decision.targets.get(name)
        if name == "next_update":
            if breached_next:
                breaches[name] = sorted(breached_next)
        elif result is not None and result.state == "breached":
            breaches[name] = [result.due]
    false_closes = []
    for close in closes:
        later = next((at for at in prep.customer_comments if at > close.at), None)
        if later is not None:
            false_closes.append((close, later))
    return Run(
        ticket=prep.id, url=prep.url, created=prep.created, priority=decision.priority,
        policy=decision.policy, group=group, status=status, targets=dict(decision.targets),
        firings=firings, breaches=breaches, closes=closes, false_closes=false_closes,
        escalations=escalations, evaluations=evaluations,
    )


# -- comparing two rule sets ------------------------------------------------------------


@dataclass(slots=True)
class Change:
    ticket: str
    at: int
    rule: str | None
    type: str
    baseline: Any
    proposed: Any
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = {"ticket": self.ticket, "at": iso_utc(self.at), "rule": self.rule, "type": self.type,
               "baseline": self.baseline, "proposed": self.proposed}
        out.update(self.extra)
        return out


@dataclass(slots=True)
class Pair:
    baseline: Run
    proposed: Run
    changes: list[Change]


def compare(base: Run, new: Run) -> list[Change]:
    """Every difference between two replays of one ticket, in time order."""
    changes: list[Change] = []
    tid = base.ticket
    by_key: dict[tuple[str, str], tuple[list[Firing], list[Firing]]] = {}
    for index, run in enumerate((base, new)):
        for firing in run.firings:
            by_key.setdefault((firing.rule, firing.type), ([], []))[index].append(firing)
    for (rule, kind), (olds, news) in by_key.items():
        for k in range(max(len(olds), len(news))):
            old = olds[k] if k < len(olds) else None
            now = news[k] if k < len(news) else None
            if old is not None and now is not None:
                if old.value == now.value and old.at == now.at:
                    continue
                extra = {"baseline_at": iso_utc(old.at)} if old.at != now.at else {}
                changes.append(Change(tid, now.at, rule, kind, old.value, now.value, extra))
            elif old is not None:
                changes.append(Change(tid, old.at, rule, kind, old.value, None))
            else:
                changes.append(Change(tid, now.at, rule, kind, None, now.value))
    if base.policy != new.policy:
        changes.append(Change(tid, base.created, new.policy or base.policy, POLICY, base.policy, new.policy))
    for name in TARGET_NAMES:
        old_r, new_r = base.targets.get(name), new.targets.get(name)
        old_due = None if old_r is None else old_r.due
        new_due = None if new_r is None else new_r.due
        if old_due == new_due:
            continue
        extra: dict[str, Any] = {"target": name}
        if old_due is not None and new_due is not None:
            extra["moved_seconds"] = new_due - old_due
        at = old_due if old_due is not None else new_due
        changes.append(Change(tid, at, new.policy or base.policy, DUE, iso_utc(old_due), iso_utc(new_due),
                              extra))
    changes.sort(key=lambda c: (c.at, c.type, c.rule or ""))
    return changes


def simulate(
    docs: Iterable[Mapping[str, Any]],
    baseline: RuleSet,
    proposed: RuleSet,
    start: int,
    end: int,
    source: str,
) -> tuple[list[Pair], int]:
    """Replay every document through both rule sets; (pairs, evaluations made)."""
    base_map, new_map = mapping_for(baseline, source), mapping_for(proposed, source)
    same_map = base_map == new_map
    # The same rule files (the version is their content's hash) decide the same: replay once.
    identical = same_map and baseline.version == proposed.version
    pairs: list[Pair] = []
    evaluations = 0
    for doc in docs:
        prep = prepare(doc, base_map)
        base = replay(prep, baseline, start, end)
        if identical:
            pairs.append(Pair(base, base, []))
            evaluations += base.evaluations
            continue
        new = replay(prep if same_map else prepare(doc, new_map), proposed, start, end)
        evaluations += base.evaluations + new.evaluations
        pairs.append(Pair(base, new, compare(base, new)))
    return pairs, evaluations


def replay_all(docs: Iterable[Mapping[str, Any]], rules: RuleSet, start: int, end: int,
               source: str) -> list[Run]:
    """Replay every document through one rule set (the SLA compliance report)."""
    mapping = mapping_for(rules, source)
    return [replay(prepare(doc, mapping), rules, start, end) for doc in docs]


def in_window(doc: Mapping[str, Any], start: int, end: int) -> bool:
    """Created in [start, end], or with an event in it (what `simulate` replays)."""
    created = int(doc["created_at"])
    if created > end:
        return False
    if created >= start:
        return True
    return any(start <= int(e["at"]) <= end for e in doc.get("events") or ())


__all__ = [
    "DUE", "POLICY", "Change", "Firing", "Mapping_", "Pair", "Prepared", "Run", "compare", "in_window",
    "mapping_for", "prepare", "replay", "replay_all", "simulate",
]
