"""Shared helpers for engine tests: tickets from short dicts, rules from the examples."""

from __future__ import annotations

from datetime import datetime
from functools import cache
from pathlib import Path

from engine.decision import Decision
from engine.evaluate import evaluate
from engine.rulefile import load_rules
from engine.ruleset import RuleSet
from engine.ticketjson import parse_ticket

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "rules" / "examples"


def at(text: str) -> int:
    """UTC epoch seconds of an ISO instant ('2026-11-20T14:30Z')."""
    return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp())


@cache
def example(name: str) -> RuleSet:
    return load_rules(EXAMPLES / f"{name}.yaml")


def decide(policy: str, now: str, **ticket) -> Decision:
    data = {"id": "1", "status": "open", "subject": "", "description": ""}
    data.update(ticket)
    rules = example(policy)
    return evaluate(parse_ticket(data, rules.status_aliases), rules, at(now))


def target(decision: Decision, name: str) -> tuple[str | None, str] | None:
    """(due ISO, state) of a target, or None."""
    result = decision.to_dict()["targets"][name]
    return None if result is None else (result["due"], result["state"])


def comment(when: str, author: str = "agent", public: bool = True) -> dict:
    return {"at": when, "type": "comment", "author": author, "public": public}


def status(when: str, value: str) -> dict:
    return {"at": when, "type": "status", "status": value}
