"""Deskpilot's pure SLA engine: calendars, clocks, rules and decisions (no I/O but reading rule files)."""

from engine.decision import Action, Decision, TargetResult
from engine.evaluate import evaluate
from engine.rulefile import RuleFileError, load_rules, load_texts
from engine.ruleset import RuleSet
from engine.ticket import Event, Ticket, TicketError

__all__ = [
    "Action",
    "Decision",
    "Event",
    "RuleFileError",
    "RuleSet",
    "TargetResult",
    "Ticket",
    "TicketError",
    "evaluate",
    "load_rules",
    "load_texts",
]
