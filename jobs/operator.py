"""Operator commands: `flask dead-letters [replay ID|--all | drop ID]`, `flask audit TICKET`,
`flask replan`."""

from __future__ import annotations

import json
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import click
from flask import Flask


def init_app(app: Flask) -> None:
    """Register the operator commands on the app's CLI."""
    app.cli.add_command(_dead_letters(app))
    app.cli.add_command(_audit(app))
    app.cli.add_command(_replan(app))


def _state(app: Flask) -> tuple[Any, str, Any]:
    state = app.extensions["deskpilot"]
    return state["store"], state["settings"].helpdesk, app.config["CLOCK"]


def _when(value: datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%dT%H:%M:%SZ")


def _one_line(text: str | None, limit: int = 120) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def format_dead_letters(rows: Iterable[dict]) -> str:
    rows = list(rows)
    if not rows:
        return "no parked tickets"
    table = [("SOURCE", "TICKET", "ATTEMPTS", "PARKED AT", "ERROR")] + [
        (r["source"], r["ticket_id"], str(r["attempts"]), _when(r["at"]), _one_line(r["error"]))
        for r in rows]
    widths = [max(len(row[i]) for row in table) for i in range(4)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + row[-1]
                     for row in table)


def _dead_letters(app: Flask) -> click.Group:
    @click.group("dead-letters", invoke_without_command=True)
    @click.option("--limit", type=click.IntRange(min=1), default=100, show_default=True)
    @click.pass_context
    def group(ctx: click.Context, limit: int) -> None:
        """List parked tickets with their error (`replay` re-queues, `drop` discards)."""
        if ctx.invoked_subcommand is None:
            store, _, _ = _state(app)
            click.echo(format_dead_letters(store.dead_letters(limit)))

    @group.command("replay")
    @click.argument("ticket_ids", nargs=-1)
    @click.option("--all", "everything", is_flag=True, help="Re-queue every parked ticket.")
    @click.option("--source", help="The helpdesk (default: HELPDESK).")
    def replay(ticket_ids: tuple[str, ...], everything: bool, source: str | None) -> None:
        """Re-queue parked tickets (their unfinished writes are completed by the worker)."""
        if bool(ticket_ids) == everything:
            raise click.UsageError("give ticket ids or --all (not both)")
        store, helpdesk, clock = _state(app)
        source = source or helpdesk
        parked = {r["ticket_id"] for r in store.dead_letters(1_000_000) if r["source"] == source}
        missing = [t for t in ticket_ids if t not in parked]
        count = store.replay_dead_letters(clock(), source=source,
                                          ticket_ids=None if everything else list(ticket_ids))
        click.echo(f"{count} ticket(s) re-queued")
        if missing:
            raise click.ClickException(f"not parked: {', '.join(missing)}")

    @group.command("drop")
    @click.argument("ticket_id")
    @click.option("--source", help="The helpdesk (default: HELPDESK).")
    def drop(ticket_id: str, source: str | None) -> None:
        """Discard a parked ticket's work (and any write it still owed); its error is kept."""
        store, helpdesk, clock = _state(app)
        if not store.drop_dead_letter(source or helpdesk, ticket_id, clock()):
            raise click.ClickException(f"ticket {ticket_id} is not parked")
        click.echo(f"ticket {ticket_id} dropped")

    return group


def _value(value: Any) -> str:
    if isinstance(value, dict):
        if set(value) == {"value"}:
            value = value["value"]
        elif set(value) == {"values"}:
            value = value["values"]
        elif set(value) == {"body"}:
            return repr(_one_line(value["body"], 80))
    if value is None:
        return "-"
    if isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True, default=str)


def format_audit(source: str, ticket_id: str, actions: list[dict], writes: list[Any]) -> str:
    lines = [f"{source} ticket {ticket_id}: {len(actions)} action(s) by the bot"]
    for row in actions:
        lines.append(f"{_when(row['created_at'])}  {row['type']:<12}  {_value(row['before'])} → "
                     f"{_value(row['after'])}  rule {row['rule']} (rules {row['rules_version']})")
    for write in writes:
        if write.state == "pending":
            left = ", ".join(p.kind for p in write.remaining())
            lines.append(f"{_when(write.created_at)}  owed: write {write.id} (rules {write.rules_version}) "
                         f"still has to send {left}")
        elif write.state == "cancelled":
            lines.append(f"{_when(write.finished_at)}  not applied: write {write.id} "
                         f"(rules {write.rules_version}): {write.reason}")
    return "\n".join(lines)


def _audit(app: Flask) -> click.Command:
    @click.command("audit")
    @click.argument("ticket_id")
    @click.option("--source", help="The helpdesk (default: HELPDESK).")
    def audit(ticket_id: str, source: str | None) -> None:
        """What the bot did to a ticket and why: time, action, before → after, rule, rules version."""
        store, helpdesk, _ = _state(app)
        source = source or helpdesk
        click.echo(format_audit(source, ticket_id, store.actions_for(source, ticket_id),
                                store.outbox.writes_for(source, ticket_id)))

    return audit


def _replan(app: Flask) -> click.Command:
    @click.command("replan")
    @click.option("--force", is_flag=True, help="Re-plan even if this rules version was planned already.")
    def replan(force: bool) -> None:
        """Decide every stored ticket again under the current rules (no helpdesk calls); the clock
        does this by itself after every rules change."""
        from jobs.replan import Replanner
        from jobs.runtime import RulesHolder

        state = app.extensions["deskpilot"]
        holder = state.get("rules_holder") or RulesHolder(state["settings"].rules_path)
        report = Replanner(state["store"], lambda: holder.rules, clock=app.config["CLOCK"]).run(force=force)
        click.echo(report.summary())

    return replan


__all__ = ["format_audit", "format_dead_letters", "init_app"]
