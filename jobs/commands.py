"""`deskpilot`: one command for the engine's tools and the service's processes.

    deskpilot check [--strict] PATH...       validate rule sets (python -m engine check)
    deskpilot evaluate --rules PATH --ticket FILE [--now ISO]
    deskpilot schema                         the rule files' JSON Schema
    deskpilot run [--demo] [--host --port --workers]   web, worker and clock in one process
    deskpilot worker | clock                 the Procfile's worker and clock processes
    deskpilot flask ARGS...                  the Flask commands (migrate, sweep, check-rules, routes, ...)
    deskpilot migrate | sweep | check-rules  the same, without `flask`

It works from any directory: when RULES_PATH is not set and the current
directory has no `rules/`, the service commands use the project's `rules/`.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENGINE_COMMANDS = ("check", "evaluate", "schema")
FLASK_COMMANDS = ("migrate", "sweep", "check-rules", "routes", "shell")
PROJECT = Path(__file__).resolve().parent.parent


def _default_rules() -> None:
    if "RULES_PATH" not in os.environ and not Path("rules").exists() and (PROJECT / "rules").is_dir():
        os.environ["RULES_PATH"] = str(PROJECT / "rules")


def _flask(args: list[str]) -> int:
    from flask.cli import FlaskGroup

    from app import create_app

    group = FlaskGroup(create_app=lambda: create_app())
    try:
        group.main(args=args, prog_name="deskpilot flask")
    except SystemExit as exc:  # click always exits; its status is the command's
        return exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(__doc__.strip())
        return 0 if args else 2
    command, rest = args[0], args[1:]
    if command in ENGINE_COMMANDS:
        from engine.cli import main as engine_main

        return engine_main(args, prog="deskpilot")
    _default_rules()
    if command == "run":
        from jobs.run import main as run_main

        return run_main(rest)
    if command == "worker":
        from jobs.worker import main as worker_main

        return worker_main()
    if command == "clock":
        from jobs.clock import main as clock_main

        return clock_main()
    if command == "flask":
        return _flask(rest)
    if command in FLASK_COMMANDS:
        return _flask(args)
    print(f"deskpilot: unknown command {command!r}; run `deskpilot --help`", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
