"""`python -m engine`: evaluate tickets against rule files, check rule files, print the schema."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from engine import lint, yamlsafe
from engine.evaluate import evaluate
from engine.rulefile import RuleFileError, compile_texts, load_rules, read_rule_files
from engine.rules import SPEC_REF_PLACEHOLDER, RuleFile, TargetSpec
from engine.ruleset import RuleSet
from engine.ticket import TicketError, to_epoch
from engine.ticketjson import parse_ticket

EXIT_INVALID = 2


class InputError(Exception):
    """Bad input: printed as one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, no usage block
        raise InputError(f"{self.prog}: {message}")


def _parse_now(text: str | None) -> int:
    if text is None:
        return to_epoch(datetime.now(UTC))  # the CLI, not the engine, reads the clock
    try:
        value = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InputError(
            f"--now: expected an ISO-8601 instant like 2026-11-23T09:30:00Z, got {text!r}"
        ) from None
    if value.tzinfo is None:
        raise InputError(f"--now: {text!r} needs an offset or Z")
    return to_epoch(value)


def _ticket_error(name: str, text: str, data: Any, err: TicketError, line: int | None) -> InputError:
    if line is None:
        line = 1
        try:
            loc = tuple(
                int(p) if p.isdigit() else p
                for p in err.field.replace("[", ".").replace("]", "").split(".")
                if p
            )
            line = yamlsafe.locate(yamlsafe.load(text).root, loc)[0] or 1
        except (yamlsafe.YamlError, ValueError):
            pass
    field = f" {err.field}:" if err.field else ""
    return InputError(f"{name}:{line}:{field} {err.message}")


def _decide(name: str, text: str, line: int | None, rules: RuleSet, now: int) -> dict[str, Any]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        where = line if line is not None else err.lineno
        raise InputError(f"{name}:{where}: invalid JSON: {err.msg} (column {err.colno})") from None
    try:
        ticket = parse_ticket(data, rules.status_aliases)
    except TicketError as err:
        raise _ticket_error(name, text, data, err, line) from None
    return evaluate(ticket, rules, now).to_dict()


def _evaluate(args: argparse.Namespace, stdin: TextIO, stdout: TextIO) -> int:
    rules = load_rules(args.rules)
    now = _parse_now(args.now)
    if args.ticket == "-":
        for number, text in enumerate(stdin, start=1):
            if not text.strip():
                continue
            result = _decide("-", text, number, rules, now)
            stdout.write(json.dumps(result, ensure_ascii=False) + "\n")
            stdout.flush()
        return 0
    try:
        with open(args.ticket, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as err:
        raise InputError(f"{args.ticket}: cannot read ticket: {err.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"{args.ticket}: not UTF-8 text") from None
    stdout.write(
        json.dumps(_decide(args.ticket, text, None, rules, now), indent=2, ensure_ascii=False) + "\n"
    )
    return 0


def _check(args: argparse.Namespace, stdout: TextIO, stderr: TextIO) -> int:
    """Each path is one rule set (a file, or a directory merged); all are checked.

    Errors exit 2. Warnings (rules that load but cannot do what they say)
    are printed and exit 0, or 2 with --strict.
    """
    status = 0
    for path in args.paths:
        try:
            rules, sources = compile_texts(read_rule_files(path))
        except RuleFileError as err:
            stderr.write(f"error: {err}\n")
            status = EXIT_INVALID
            continue
        found = lint.warnings(rules, sources)
        for warning in found:
            stderr.write(f"warning: {warning}\n")
        if found and args.strict:
            status = EXIT_INVALID
        counts = (
            f"{len(rules.calendars)} calendars, {len(rules.reclassify)} reclassify rules, "
            f"{len(rules.policies)} policies, {len(rules.escalations)} escalations, "
            f"{len(rules.auto_close)} auto-close rules"
        )
        if found:
            counts += f"; {len(found)} warning{'s' if len(found) != 1 else ''}"
        stdout.write(f"ok: {path}: {len(rules.files)} file(s), version {rules.version}: {counts}\n")
    return status


def schema() -> dict[str, Any]:
    """The JSON Schema of a rule file, generated from the models."""
    out = RuleFile.model_json_schema()
    defs = out["$defs"]
    # Targets are written in several forms (see rules._MATRIX_SCHEMA), each of which
    # refers to TargetSpec; the parsed TargetMatrix is not what admins write.
    spec = TargetSpec.model_json_schema(ref_template="#/$defs/{model}")
    defs.update(spec.pop("$defs", {}))
    defs["TargetSpec"] = spec
    for internal in ("TargetMatrix", "BusinessDays"):
        defs.pop(internal, None)
    out["$defs"] = dict(sorted(defs.items()))

    def refs(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get(SPEC_REF_PLACEHOLDER):
                return {"$ref": "#/$defs/TargetSpec"}
            return {key: refs(value) for key, value in node.items()}
        if isinstance(node, list):
            return [refs(value) for value in node]
        return node

    out = refs(out)
    out["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    out["title"] = "Deskpilot rule file"
    return out


def main(
    argv: list[str] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    prog: str = "python -m engine",
) -> int:
    stdin, stdout, stderr = stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr
    parser = _Parser(prog=prog, description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    ev = commands.add_parser("evaluate", help="what would the rules do to this ticket, and why")
    ev.add_argument("--rules", required=True, help="a rule file or a directory of them")
    ev.add_argument("--ticket", required=True, help="a JSON ticket file, or - for JSON Lines on stdin")
    ev.add_argument("--now", help="the evaluation instant, ISO-8601 (default: the current time)")
    ck = commands.add_parser(
        "check", help="validate rule sets (exit 0 all valid, 2 any invalid); warnings exit 0 unless --strict"
    )
    ck.add_argument("paths", nargs="+", metavar="PATH", help="a rule file or a directory (one rule set each)")
    ck.add_argument("--strict", action="store_true", help="exit 2 on warnings too")
    commands.add_parser("schema", help="print the JSON Schema of the rule-file format")
    try:
        args = parser.parse_args(argv)
        if args.command == "evaluate":
            return _evaluate(args, stdin, stdout)
        if args.command == "check":
            return _check(args, stdout, stderr)
        stdout.write(json.dumps(schema(), indent=2) + "\n")
        return 0
    except (InputError, RuleFileError) as err:
        stderr.write(f"error: {err}\n")
        return EXIT_INVALID
    except BrokenPipeError:
        return 0
    except Exception as err:  # never a traceback: one line, and a distinct status
        stderr.write(f"error: internal error: {type(err).__name__}: {err}\n")
        return 1
