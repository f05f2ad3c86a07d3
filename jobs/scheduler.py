"""Flask wiring for the sweeps: `flask sweep [--dry-run]` shows (or runs) what a sweep does now."""

from __future__ import annotations

from collections.abc import Sequence

import click
from flask import Flask

from jobs.sweeps import PlannedAction, Sweeper, SweepReport

COLUMNS = ("TICKET", "RULE", "ACTION", "PATH", "DUE / WHY")


def init_app(app: Flask) -> None:
    """Register `flask sweep`. Never starts a scheduler (see jobs.clock for that)."""

    @app.cli.command("sweep")
    @click.option("--dry-run", is_flag=True,
                  help="Only show what a sweep would do now and why; change nothing.")
    @click.option("--limit", type=click.IntRange(min=1), default=500, show_default=True,
                  help="Most due tickets to look at.")
    def sweep_command(dry_run: bool, limit: int) -> None:
        """Sweep the tickets whose time-based rules are due: close, escalate, mark breaches."""
        report = build_sweeper(app, dry_run=dry_run).sweep(dry_run=dry_run, limit=limit)
        if report.skipped:
            raise click.ClickException(report.summary())
        click.echo(format_plan(report.plan))
        click.echo(report.summary())


def build_sweeper(app: Flask, *, dry_run: bool) -> Sweeper:
    """A Sweeper on the app's store and settings, with the rules at RULES_PATH."""
    from jobs.budget import WriteBudget
    from jobs.runtime import ConnectorCache, RulesHolder

    state = app.extensions["deskpilot"]
    settings, store = state["settings"], state["store"]
    holder = state.get("rules_holder") or RulesHolder(settings.rules_path)
    return Sweeper(
        store, ConnectorCache(settings), lambda: holder.rules, clock=app.config["CLOCK"],
        budget=None if dry_run else WriteBudget.from_env(store),
    )


def format_plan(plan: Sequence[PlannedAction]) -> str:
    """The plan as a plain-text table, one row per action (or per ticket with none)."""
    if not plan:
        return "no tickets are due"
    rows = [COLUMNS] + [_cells(row) for row in plan]
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = []
    for row in rows:
        lines.append("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
                     + "  " + row[-1])
    return "\n".join(line.rstrip() for line in lines)


def _cells(row: PlannedAction) -> tuple[str, ...]:
    due = "" if row.due is None else f"due {row.due.strftime('%Y-%m-%dT%H:%M:%SZ')}: "
    return (row.ticket_id, row.rule, row.action, row.path or "-", due + row.why)


__all__ = ["SweepReport", "build_sweeper", "format_plan", "init_app"]
