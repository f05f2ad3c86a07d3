"""Simulation and SLA compliance reports: building, formatting (table, json, html) and the CLI.

`flask simulate` replays the window's ticket histories through the rules in
force and a proposed rule set and reports what would differ; `flask report
sla` reports met/breached per target, priority and policy under the rules in
force. Both read the history through jobs/history.py (cached in the store).
"""

from __future__ import annotations

import html
import json
import re
from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import click
from flask import Flask

from engine.decision import TARGET_NAMES, iso_utc
from engine.rulefile import RuleFileError, load_rules
from engine.ruleset import RuleSet
from jobs.simulate import Pair, Run, replay_all, simulate

FORMATS = ("table", "json", "html")
PRIORITY_ORDER = ("urgent", "high", "normal", "low", None)
_SINCE = re.compile(r"^\s*(\d+)\s*([dhwm])\s*$")
_UNITS = {"m": 60, "h": 3600, "d": 86_400, "w": 7 * 86_400}


# -- windows -------------------------------------------------------------------------------


def parse_window(since: str | None, start: str | None, end: str | None, now: datetime) -> tuple[int, int]:
    """(from, to) epoch seconds from `--since 30d` or `--from DATE --to DATE` (dates are UTC days;
    --to's day is included). Raises click.BadParameter with the option's name."""
    if since and (start or end):
        raise click.BadParameter("give either --since or --from/--to, not both", param_hint="--since")
    to = int(now.timestamp()) if not end else _instant(end, "--to", end_of_day=True)
    if since:
        match = _SINCE.match(since.lower())
        if not match:
            raise click.BadParameter(f"expected a span like 30d, 12h or 2w, got {since!r}",
                                     param_hint="--since")
        return to - int(match.group(1)) * _UNITS[match.group(2)], to
    if not start:
        return to - 30 * 86_400, to
    begin = _instant(start, "--from", end_of_day=False)
    if begin >= to:
        raise click.BadParameter(f"{start!r} is not before the window's end", param_hint="--from")
    return begin, to


def _instant(text: str, name: str, end_of_day: bool) -> int:
    text = text.strip()
    try:
        if len(text) == 10:
            day = datetime.fromisoformat(text).replace(tzinfo=UTC)
            return int((day + timedelta(days=1 if end_of_day else 0)).timestamp()) - (1 if end_of_day else 0)
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise click.BadParameter(f"expected a date like 2026-11-01 or an instant like"
                                 f" 2026-11-01T09:00:00Z, got {text!r}", param_hint=name) from None
    if value.tzinfo is None:
        raise click.BadParameter(f"{text!r} needs an offset or Z", param_hint=name)
    return int(value.timestamp())


# -- the simulation report ----------------------------------------------------------------


def _ids(items: Iterable[str]) -> list[str]:
    return sorted(set(items), key=lambda t: (len(t), t))


def simulation_report(pairs: Sequence[Pair], start: int, end: int, *, source: str,
                      baseline: RuleSet, proposed: RuleSet, history: dict[str, Any] | None = None
                      ) -> dict[str, Any]:
    """The comparison as a JSON-ready dict (the `json` format; `table` and `html` render it)."""
    summary: dict[str, Any] = {}
    for name in TARGET_NAMES:
        summary[name] = {"breaches_baseline": 0, "breaches_proposed": 0, "gained": 0, "avoided": 0,
                         "tickets_gained": [], "tickets_avoided": [], "by_priority": {}}
    differ: dict[str, list[str]] = {key: [] for key in ("priority", "policy", "group", "status")}
    moves: dict[str, list[dict[str, Any]]] = {name: [] for name in TARGET_NAMES}
    per_rule: dict[str, dict[str, Any]] = defaultdict(
        lambda: {"baseline": 0, "proposed": 0, "tickets": set()})
    fired = {side: {"escalations": defaultdict(set), "auto_closes": defaultdict(set),
                    "false_closes": defaultdict(list)} for side in ("baseline", "proposed")}
    links: dict[str, str] = {}
    changes: list[dict[str, Any]] = []
    for pair in pairs:
        base, new = pair.baseline, pair.proposed
        tid = base.ticket
        if base.url:
            links[tid] = base.url
        for key in differ:
            if getattr(base, key) != getattr(new, key):
                differ[key].append(tid)
        for name in TARGET_NAMES:
            b, p = len(base.breaches.get(name, ())), len(new.breaches.get(name, ()))
            row = summary[name]
            row["breaches_baseline"] += b
            row["breaches_proposed"] += p
            for side, count, priority in (("baseline", b, base.priority), ("proposed", p, new.priority)):
                if count:
                    cell = row["by_priority"].setdefault(priority or "none", _priority_cell())
                    cell[f"breaches_{side}"] += count
            if p > b:
                row["gained"] += p - b
                row["tickets_gained"].append(tid)
                cell = row["by_priority"].setdefault(new.priority or "none", _priority_cell())
                cell["gained"] += p - b
                cell["tickets_gained"].append(tid)
            elif b > p:
                row["avoided"] += b - p
                row["tickets_avoided"].append(tid)
                cell = row["by_priority"].setdefault(base.priority or "none", _priority_cell())
                cell["avoided"] += b - p
                cell["tickets_avoided"].append(tid)
        for side, run in (("baseline", base), ("proposed", new)):
            for firing in run.firings:
                per_rule[firing.rule][side] += 1
            for firing in run.escalations:
                fired[side]["escalations"][firing.rule].add(tid)
            for firing in run.closes:
                fired[side]["auto_closes"][firing.rule].add(tid)
            for close, wrote in run.false_closes:
                fired[side]["false_closes"][close.rule].append(
                    {"ticket": tid, "closed_at": iso_utc(close.at), "customer_wrote_at": iso_utc(wrote)})
        for change in pair.changes:
            changes.append(change.to_dict())
            if change.rule is not None and change.type not in ("policy", "due"):
                per_rule[change.rule]["tickets"].add(tid)
            if change.type == "due" and "moved_seconds" in change.extra:
                moves[change.extra["target"]].append({
                    "ticket": tid, "baseline": change.baseline, "proposed": change.proposed,
                    "moved_seconds": change.extra["moved_seconds"]})
    due_moves = {}
    for name, items in moves.items():
        if not items:
            continue
        seconds = [item["moved_seconds"] for item in items]
        due_moves[name] = {
            "tickets": len(items), "earlier": sum(1 for s in seconds if s < 0),
            "later": sum(1 for s in seconds if s > 0), "mean_seconds": round(sum(seconds) / len(seconds)),
            "max_seconds": max(seconds, key=abs), "list": items,
        }
    for row in summary.values():
        row["tickets_gained"] = _ids(row["tickets_gained"])
        row["tickets_avoided"] = _ids(row["tickets_avoided"])
        for cell in row["by_priority"].values():
            cell["tickets_gained"] = _ids(cell["tickets_gained"])
            cell["tickets_avoided"] = _ids(cell["tickets_avoided"])
    return {
        "window": {"from": iso_utc(start), "to": iso_utc(end)},
        "helpdesk": source,
        "rules": {"baseline": {"version": baseline.version, "files": list(baseline.files)},
                  "proposed": {"version": proposed.version, "files": list(proposed.files)}},
        "tickets": len(pairs),
        "tickets_changed": len({c["ticket"] for c in changes}),
        "summary": summary,
        "differences": {key: _ids(value) for key, value in differ.items()},
        "due_moves": due_moves,
        "rules_report": {rule: {"baseline": v["baseline"], "proposed": v["proposed"],
                                "tickets": _ids(v["tickets"])} for rule, v in sorted(per_rule.items())},
        "escalations": _sides(fired, "escalations"),
        "auto_closes": _sides(fired, "auto_closes"),
        "false_closes": {side: dict(sorted(fired[side]["false_closes"].items())) for side in fired},
        "links": dict(sorted(links.items(), key=lambda kv: (len(kv[0]), kv[0]))),
        "history": history or {},
        "changes": changes,
    }


def _priority_cell() -> dict[str, Any]:
    return {"breaches_baseline": 0, "breaches_proposed": 0, "gained": 0, "avoided": 0,
            "tickets_gained": [], "tickets_avoided": []}


def _sides(fired: dict[str, Any], key: str) -> dict[str, dict[str, list[str]]]:
    return {side: {rule: _ids(ids) for rule, ids in sorted(fired[side][key].items())} for side in fired}


# -- the SLA compliance report -----------------------------------------------------------


def sla_report(runs: Sequence[Run], start: int, end: int, *, source: str, rules: RuleSet,
               history: dict[str, Any] | None = None) -> dict[str, Any]:
    """Met/breached per target x priority x policy, with the breached tickets, as a dict."""
    cells: dict[tuple[str, str, str], dict[str, Any]] = {}
    links: dict[str, str] = {}
    for run in runs:
        if run.url:
            links[run.ticket] = run.url
        for name in TARGET_NAMES:
            result = run.targets.get(name)
            breached = run.breaches.get(name)
            if result is None and not breached:
                continue
            key = (name, run.priority or "none", run.policy or "none")
            cell = cells.setdefault(key, {"target": name, "priority": key[1], "policy": key[2], "met": 0,
                                          "breached": 0, "running": 0, "paused": 0, "breached_tickets": []})
            if breached:
                cell["breached"] += 1
                cell["breached_tickets"].append({"ticket": run.ticket, "due": iso_utc(breached[-1])})
            else:
                cell[result.state] += 1
    order = {p: i for i, p in enumerate(p or "none" for p in PRIORITY_ORDER)}
    rows = sorted(cells.values(), key=lambda c: (TARGET_NAMES.index(c["target"]),
                                                  order.get(c["priority"], 9), c["policy"]))
    totals = {}
    for row in rows:
        total = totals.setdefault(row["target"], {"met": 0, "breached": 0, "running": 0, "paused": 0})
        for key in total:
            total[key] += row[key]
    for total in totals.values():
        done = total["met"] + total["breached"]
        total["compliance"] = None if not done else round(total["met"] / done, 4)
    return {"window": {"from": iso_utc(start), "to": iso_utc(end)}, "helpdesk": source,
            "rules": {"version": rules.version, "files": list(rules.files)}, "tickets": len(runs),
            "totals": totals, "rows": rows, "links": links, "history": history or {}}


# -- formats --------------------------------------------------------------------------------


def _duration(seconds: int) -> str:
    sign = "-" if seconds < 0 else "+"
    seconds = abs(int(seconds))
    days, rest = divmod(seconds, 86_400)
    hours, rest = divmod(rest, 3600)
    minutes = rest // 60
    text = (f"{days}d" if days else "") + (f"{hours}h" if hours else "") + (f"{minutes}m" if minutes else "")
    return sign + (text or f"{seconds}s")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> list[str]:
    cells = [list(map(str, headers))] + [["" if v is None else str(v) for v in row] for row in rows]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells]


def _list(ids: Sequence[str], limit: int = 20) -> str:
    shown = ", ".join(ids[:limit])
    return shown + (f" (+{len(ids) - limit} more)" if len(ids) > limit else "")


def format_simulation_table(report: dict[str, Any]) -> str:
    w = report["window"]
    lines = [f"Simulation {w['from']} .. {w['to']} on {report['helpdesk']}: {report['tickets']} tickets"
             f" replayed, {report['tickets_changed']} would change",
             f"baseline {report['rules']['baseline']['version']}, proposed"
             f" {report['rules']['proposed']['version']}", ""]
    rows = []
    for name, row in report["summary"].items():
        rows.append((name, row["breaches_baseline"], row["breaches_proposed"], row["gained"], row["avoided"],
                     _list(row["tickets_gained"], 8), _list(row["tickets_avoided"], 8)))
    lines += _table(("TARGET", "BREACHES NOW", "PROPOSED", "GAINED", "AVOIDED", "GAINED ON", "AVOIDED ON"),
                    rows)
    by_priority = [(name, priority, c["breaches_baseline"], c["breaches_proposed"], c["gained"], c["avoided"])
                   for name, row in report["summary"].items() for priority, c in row["by_priority"].items()]
    if by_priority:
        lines += ["", *_table(("TARGET", "PRIORITY", "BREACHES NOW", "PROPOSED", "GAINED", "AVOIDED"),
                              by_priority)]
    differ = [(key, len(ids), _list(ids)) for key, ids in report["differences"].items() if ids]
    if differ:
        lines += ["", *_table(("DIFFERS", "TICKETS", "WHICH"), differ)]
    if report["due_moves"]:
        moves = [(name, m["tickets"], m["earlier"], m["later"], _duration(m["mean_seconds"]),
                  _duration(m["max_seconds"]), _list([i["ticket"] for i in m["list"]]))
                 for name, m in report["due_moves"].items()]
        headers = ("DUE MOVES", "TICKETS", "EARLIER", "LATER", "MEAN", "LARGEST", "WHICH")
        lines += ["", *_table(headers, moves)]
    rules = [(rule, v["baseline"], v["proposed"], _list(v["tickets"])) for rule, v in
             report["rules_report"].items() if v["tickets"] or v["baseline"] != v["proposed"]]
    if rules:
        lines += ["", *_table(("RULE", "ACTIONS NOW", "PROPOSED", "TICKETS CHANGED"), rules)]
    fired = []
    for kind in ("escalations", "auto_closes"):
        for side in ("baseline", "proposed"):
            for rule, ids in report[kind][side].items():
                fired.append((kind.replace("_", "-").rstrip("s"), side, rule, len(ids), _list(ids)))
    for side in ("baseline", "proposed"):
        for rule, items in report["false_closes"][side].items():
            fired.append(("false close", side, rule, len(items), _list([i["ticket"] for i in items])))
    if fired:
        lines += ["", *_table(("FIRES", "UNDER", "RULE", "TICKETS", "WHICH"), fired)]
    if not report["changes"]:
        lines += ["", "no change: the proposed rules decide every ticket as the baseline does"]
    else:
        lines += ["", f"{len(report['changes'])} changes (--format json lists them all)"]
    history = report.get("history") or {}
    if history:
        lines.append(f"history: {history.get('calls', 0)} vendor calls"
                     + (" (from the cache)" if history.get("cached") else ""))
    return "\n".join(lines)


def format_sla_table(report: dict[str, Any]) -> str:
    w = report["window"]
    lines = [f"SLA compliance {w['from']} .. {w['to']} on {report['helpdesk']}: {report['tickets']} tickets,"
             f" rules {report['rules']['version']}", ""]
    rows = [(r["target"], r["priority"], r["policy"], r["met"], r["breached"], r["running"], r["paused"],
             _list([b["ticket"] for b in r["breached_tickets"]], 10)) for r in report["rows"]]
    headers = ("TARGET", "PRIORITY", "POLICY", "MET", "BREACHED", "RUNNING", "PAUSED", "BREACHED TICKETS")
    lines += _table(headers, rows)
    lines.append("")
    for name, total in report["totals"].items():
        rate = "-" if total["compliance"] is None else f"{total['compliance'] * 100:.1f}%"
        lines.append(f"{name}: {total['met']} met, {total['breached']} breached ({rate} met)")
    if not report["rows"]:
        lines.append("no SLA target applied to any ticket in the window")
    return "\n".join(lines)


_CSS = """body{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}h1{font-size:1.4em}
h2{font-size:1.1em;margin-top:1.6em}table{border-collapse:collapse;margin:.4em 0}
td,th{border:1px solid #ccc;padding:.25em .6em;text-align:left;vertical-align:top}th{background:#f3f3f3}
.num{text-align:right}.gain{color:#b00020}.avoid{color:#0a7a2f}code{font-size:.95em}"""


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value))


def _links(ids: Iterable[str], links: dict[str, str]) -> str:
    out = []
    for tid in ids:
        url = links.get(tid)
        out.append(f'<a href="{_e(url)}">#{_e(tid)}</a>' if url else f"#{_e(tid)}")
    return ", ".join(out)


def _html_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _page(title: str, body: str) -> str:
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{_e(title)}</title>'
            f"<style>{_CSS}</style></head><body><h1>{_e(title)}</h1>{body}</body></html>\n")


def render_simulation_html(report: dict[str, Any]) -> str:
    """The simulation report as one self-contained HTML page (no external resources)."""
    links = report["links"]
    w = report["window"]
    parts = [f"<p>{_e(report['tickets'])} tickets replayed on {_e(report['helpdesk'])},"
             f" {_e(report['tickets_changed'])} would change. Baseline"
             f" <code>{_e(report['rules']['baseline']['version'])}</code>, proposed"
             f" <code>{_e(report['rules']['proposed']['version'])}</code>.</p>", "<h2>Breaches</h2>"]
    rows = [(_e(n), f'<span class="num">{r["breaches_baseline"]}</span>', str(r["breaches_proposed"]),
             f'<span class="gain">{r["gained"]}</span> {_links(r["tickets_gained"], links)}',
             f'<span class="avoid">{r["avoided"]}</span> {_links(r["tickets_avoided"], links)}')
            for n, r in report["summary"].items()]
    parts.append(_html_table(("Target", "Breaches now", "Proposed", "Gained", "Avoided"), rows))
    prio = [(_e(n), _e(p), str(c["breaches_baseline"]), str(c["breaches_proposed"]),
             f'{c["gained"]} {_links(c["tickets_gained"], links)}',
             f'{c["avoided"]} {_links(c["tickets_avoided"], links)}')
            for n, r in report["summary"].items() for p, c in r["by_priority"].items()]
    if prio:
        headers = ("Target", "Priority", "Breaches now", "Proposed", "Gained", "Avoided")
        parts.append(_html_table(headers, prio))
    differ = [(_e(k), str(len(v)), _links(v, links)) for k, v in report["differences"].items() if v]
    if differ:
        parts += ["<h2>Tickets that would differ</h2>", _html_table(("What", "Tickets", "Which"), differ)]
    if report["due_moves"]:
        moves = [(_e(n), str(m["tickets"]), str(m["earlier"]), str(m["later"]),
                  _e(_duration(m["mean_seconds"])),
                  _e(_duration(m["max_seconds"])), _links([i["ticket"] for i in m["list"]], links))
                 for n, m in report["due_moves"].items()]
        parts += ["<h2>Due times that move</h2>",
                  _html_table(("Target", "Tickets", "Earlier", "Later", "Mean", "Largest", "Which"), moves)]
    fired = []
    for kind in ("escalations", "auto_closes"):
        for side in ("baseline", "proposed"):
            for rule, ids in report[kind][side].items():
                fired.append((_e(kind.replace("_", "-")), _e(side), f"<code>{_e(rule)}</code>", str(len(ids)),
                              _links(ids, links)))
    for side in ("baseline", "proposed"):
        for rule, items in report["false_closes"][side].items():
            fired.append(("false closes", _e(side), f"<code>{_e(rule)}</code>", str(len(items)),
                          _links([i["ticket"] for i in items], links)))
    if fired:
        parts += ["<h2>Escalations and auto-closes</h2>",
                  _html_table(("What", "Under", "Rule", "Tickets", "Which"), fired)]
    rules = [(f"<code>{_e(r)}</code>", str(v["baseline"]), str(v["proposed"]), _links(v["tickets"], links))
             for r, v in report["rules_report"].items() if v["tickets"] or v["baseline"] != v["proposed"]]
    if rules:
        headers = ("Rule", "Actions now", "Proposed", "Tickets changed")
        parts += ["<h2>Per rule</h2>", _html_table(headers, rules)]
    changes = [(_links([c["ticket"]], links), _e(c["at"]), f"<code>{_e(c['rule'])}</code>", _e(c["type"]),
                _e(json.dumps(c["baseline"], ensure_ascii=False)),
                _e(json.dumps(c["proposed"], ensure_ascii=False)))
               for c in report["changes"]]
    parts.append("<h2>Changes</h2>")
    parts.append(_html_table(("Ticket", "At", "Rule", "Type", "Baseline", "Proposed"), changes) if changes
                 else "<p>No change: the proposed rules decide every ticket as the baseline does.</p>")
    return _page(f"Rule simulation {w['from']} .. {w['to']}", "".join(parts))


def render_sla_html(report: dict[str, Any]) -> str:
    """The SLA compliance report as one self-contained HTML page."""
    links = report["links"]
    w = report["window"]
    rows = [(_e(r["target"]), _e(r["priority"]), _e(r["policy"]), str(r["met"]), str(r["breached"]),
             str(r["running"]), str(r["paused"]), _links([b["ticket"] for b in r["breached_tickets"]], links))
            for r in report["rows"]]
    totals = [(_e(n), str(t["met"]), str(t["breached"]),
               "-" if t["compliance"] is None else f"{t['compliance'] * 100:.1f}%")
              for n, t in report["totals"].items()]
    body = (f"<p>{_e(report['tickets'])} tickets on {_e(report['helpdesk'])}, rules"
            f" <code>{_e(report['rules']['version'])}</code>.</p>"
            + _html_table(("Target", "Met", "Breached", "Met share"), totals)
            + _html_table(("Target", "Priority", "Policy", "Met", "Breached", "Running", "Paused",
                           "Breached tickets"), rows))
    return _page(f"SLA compliance {w['from']} .. {w['to']}", body)


def render(report: dict[str, Any], fmt: str, kind: str = "simulation") -> str:
    if fmt == "json":
        return json.dumps(report, indent=2, ensure_ascii=False) + "\n"
    if fmt == "html":
        return render_simulation_html(report) if kind == "simulation" else render_sla_html(report)
    return (format_simulation_table(report) if kind == "simulation" else format_sla_table(report)) + "\n"


# -- running them from the app ------------------------------------------------------------


def history_for(app: Flask, start: int, end: int, rules: RuleSet, *, share: float | None = None,
                progress=None, reader=None):
    """(documents, facts) for the window, through the store's history cache.

    `share` (--api-share) overrides the settings' HISTORY_API_SHARE; HISTORY_MAX_AGE says how
    long a read stays fresh."""
    from jobs.history import HistoryCache, Progress, build_reader, load_history

    state = app.extensions["deskpilot"]
    settings, store = state["settings"], state["store"]
    mapping = rules.helpdesk.get(settings.helpdesk)
    if reader is None:
        reader = build_reader(settings, share=settings.history_api_share if share is None else share,
                              status_map=dict(mapping.statuses) if mapping else None)
    progress = progress or Progress()
    docs, facts = load_history(HistoryCache(store.engine), reader, start, end, now=app.config["CLOCK"](),
                               max_age=settings.history_max_age, progress=progress)
    if hasattr(progress, "done"):
        progress.done(f"{settings.helpdesk}: {len(docs)} tickets in the window"
                      f" ({facts['calls']} vendor calls{', from the cache' if facts['cached'] else ''})")
    return docs, facts


def run_simulation(app: Flask, rules_path: str, baseline_path: str | None, start: int, end: int,
                   **options: Any) -> dict[str, Any]:
    """The simulation report dict for the console and the CLI (RuleFileError for bad rules)."""
    state = app.extensions["deskpilot"]
    settings = state["settings"]
    baseline = load_rules(baseline_path or settings.rules_path)
    proposed = load_rules(rules_path)
    docs, facts = history_for(app, start, end, baseline, **options)
    pairs, _ = simulate(docs, baseline, proposed, start, end, settings.helpdesk)
    return simulation_report(pairs, start, end, source=settings.helpdesk, baseline=baseline,
                             proposed=proposed, history=facts)


def run_sla_report(app: Flask, start: int, end: int, rules_path: str | None = None,
                   **options: Any) -> dict[str, Any]:
    """The SLA compliance report dict under the rules in force (or `rules_path`)."""
    settings = app.extensions["deskpilot"]["settings"]
    rules = load_rules(rules_path or settings.rules_path)
    docs, facts = history_for(app, start, end, rules, **options)
    runs = replay_all(docs, rules, start, end, settings.helpdesk)
    return sla_report(runs, start, end, source=settings.helpdesk, rules=rules, history=facts)


def _write(text: str, out: str | None) -> None:
    if out:
        with open(out, "w", encoding="utf-8") as handle:
            handle.write(text)
        click.echo(f"wrote {out}", err=True)
    else:
        click.echo(text, nl=False)


def _window_options(command):
    """--since, --from, --to, --format, --out and --api-share, in that order in --help."""
    options = [
        click.option("--since", help="The window up to now (or --to): 30d, 12h, 2w."),
        click.option("--from", "start", help="The window's first day (UTC) or instant."),
        click.option("--to", "end", help="The window's last day (UTC, included) or instant."),
        click.option("--format", "fmt", type=click.Choice(FORMATS), default="table", show_default=True),
        click.option("--out", type=click.Path(dir_okay=False, writable=True),
                     help="Write the report to this file instead of stdout."),
        click.option("--api-share", type=click.FloatRange(0, 1, min_open=True), default=None,
                     help="Most of the helpdesk's API budget the history read may use"
                          " (default HISTORY_API_SHARE or 0.3)."),
    ]
    for option in reversed(options):
        command = option(command)
    return command


def init_app(app: Flask) -> None:
    """Register `flask simulate` and `flask report sla`."""

    @app.cli.command("simulate")
    @click.option("--rules", "rules_path", required=True, type=click.Path(exists=True),
                  help="The proposed rule file or directory.")
    @click.option("--baseline", "baseline_path", type=click.Path(exists=True),
                  help="The rules to compare with (default: the rules in force, RULES_PATH).")
    @_window_options
    def simulate_command(rules_path, baseline_path, since, start, end, fmt, out, api_share) -> None:
        """Replay the window's tickets through the rules in force and proposed ones; report what differs."""
        window = parse_window(since, start, end, app.config["CLOCK"]())
        try:
            report = run_simulation(app, rules_path, baseline_path, *window, share=api_share)
        except RuleFileError as err:
            raise click.ClickException(str(err)) from None
        _write(render(report, fmt), out)

    @app.cli.group("report")
    def report_group() -> None:
        """Reports computed from the helpdesk's history under Deskpilot's rules."""

    @report_group.command("sla")
    @click.option("--rules", "rules_path", type=click.Path(exists=True),
                  help="Rules to report under (default: the rules in force, RULES_PATH).")
    @_window_options
    def sla_command(rules_path, since, start, end, fmt, out, api_share) -> None:
        """Met/breached per target x priority x policy over the window, with the breached tickets."""
        window = parse_window(since, start, end, app.config["CLOCK"]())
        try:
            report = run_sla_report(app, *window, rules_path=rules_path, share=api_share)
        except RuleFileError as err:
            raise click.ClickException(str(err)) from None
        _write(render(report, fmt, kind="sla"), out)


__all__ = [
    "FORMATS", "format_simulation_table", "format_sla_table", "init_app", "parse_window", "render",
    "render_simulation_html", "render_sla_html", "run_simulation", "run_sla_report", "simulation_report",
    "sla_report",
]
