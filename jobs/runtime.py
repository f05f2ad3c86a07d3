"""The pieces every process builds from Settings: rules (reloadable), store, helpdesk connector."""

from __future__ import annotations

import gc
import json
import logging
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from config import ConfigError, Settings, load_settings
from connectors.base import Helpdesk
from console import metrics
from engine.rulefile import RuleFileError, load_rules, rule_paths
from engine.ruleset import RuleSet
from store import Store

log = logging.getLogger(__name__)


LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"


def process_settings(*, sandbox: bool = False) -> Settings:
    """Settings and logging for a process entry point (run, worker, clock).

    Bad settings stop the process with one line naming the variable (exit 2).
    sandbox=True (`--demo`) asks for the local sandbox helpdesk.
    """
    try:
        settings = load_settings(sandbox=sandbox)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    logging.basicConfig(level=settings.log_level, format=LOG_FORMAT)
    # Per-request lines of the embedded HTTP servers and per-run lines of the
    # scheduler drown the decisions.
    for noisy in ("werkzeug", "alembic", "apscheduler"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    return settings


@dataclass(frozen=True, slots=True)
class RulesStatus:
    loaded: bool
    version: str | None
    files: tuple[str, ...]
    error: str | None


class RulesHolder:
    """The current rule set. A reload switches atomically, and only to rules that load
    completely: an invalid edit keeps the last good rules and records the error."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._rules: RuleSet | None = None
        self._error: str | None = None
        self._stamp: tuple | None = None
        self._lock = threading.Lock()
        self.reload()

    @property
    def rules(self) -> RuleSet:
        rules = self._rules
        if rules is None:
            raise RuleFileError(str(self.path), 0, "", self._error or "rules not loaded")
        return rules

    @property
    def status(self) -> RulesStatus:
        rules = self._rules
        return RulesStatus(
            loaded=rules is not None,
            version=None if rules is None else rules.version,
            files=() if rules is None else tuple(rules.files),
            error=self._error,
        )

    def _files_stamp(self) -> tuple:
        try:
            return tuple((str(p), p.stat().st_mtime_ns, p.stat().st_size) for p in rule_paths(self.path))
        except (RuleFileError, OSError) as err:
            return (str(err),)

    def reload(self, force: bool = True) -> bool:
        """Load the rules again (or, with force=False, only if the files changed).
        Returns True when a new rule set is in use."""
        with self._lock:
            stamp = self._files_stamp()
            if not force and stamp == self._stamp:
                return False
            self._stamp = stamp
            try:
                rules = load_rules(self.path)
            except RuleFileError as err:
                self._error = str(err)
                metrics.rules_reload(ok=False)
                kept = f"keeping rules {self._rules.version}" if self._rules else "no rules loaded"
                log.error("rule files at %s are invalid (%s): %s", self.path, kept, err)
                return False
            changed = self._rules is None or rules.version != self._rules.version
            self._rules, self._error = rules, None
            metrics.rules_reload(ok=True)
            if changed:
                log.info("rules %s loaded from %s (%d files)", rules.version, self.path, len(rules.files))
            return changed


def resolve_helpdesk(helpdesk: Any, *args: Any) -> Helpdesk:
    """A connector as given, or built by calling the factory given (e.g. ConnectorCache with the rules)."""
    if hasattr(helpdesk, "fetch_ticket"):
        return helpdesk
    return helpdesk(*args)


# sync_cursors row (source, CONFIG_ERROR) holding the helpdesk's last configuration
# error as JSON {"error", "at"}; empty once a ticket went through again. Every
# process reads it, so /healthz shows what a worker process met.
CONFIG_ERROR = "config_error"


def record_config_error(store: Store, source: str, message: str, now: datetime) -> None:
    """Remember a ConfigurationError for /healthz (wrong API URL, missing rights, unmapped status)."""
    store.set_cursor(source, CONFIG_ERROR, json.dumps({"error": message, "at": now.isoformat()}), now)


def clear_config_error(store: Store, source: str, now: datetime) -> None:
    store.set_cursor(source, CONFIG_ERROR, "", now)


def config_error(store: Store, source: str) -> dict[str, str] | None:
    """The recorded configuration error of `source`'s connector, or None. Never raises."""
    try:
        raw = store.get_cursor(source, CONFIG_ERROR)
        return json.loads(raw) if raw else None
    except Exception as err:  # health must answer even when the database does not
        log.debug("configuration error not readable: %s", type(err).__name__)
        return None


def build_store(settings: Settings) -> Store:
    store = Store(settings.database_url, timeout_seconds=settings.database_timeout_seconds)
    store.migrate()
    return store


def build_connector(settings: Settings, rules: RuleSet | None = None, **options) -> Helpdesk:
    """The connector of the configured helpdesk, through the registry. Field, group and
    status ids come from the rule files' `helpdesk:` section."""
    import connectors

    mapping = rules.helpdesk.get(settings.helpdesk) if rules is not None else None
    aliases = dict(rules.status_aliases) if rules is not None else {}
    labels = rules.status_labels() if rules is not None else frozenset()
    return connectors.build(settings, mapping, status_aliases=aliases, status_labels=labels, **options)


def check_connector(helpdesk: Helpdesk, store: Store, now: datetime) -> list[str]:
    """Start-up check: the connector's configuration problems, each logged; the first is
    recorded for /healthz (or a recorded one cleared when there are none)."""
    try:
        problems = helpdesk.check()
    except Exception as err:  # a failing check must not stop the process: report it
        problems = [f"{type(err).__name__}: {err}"]
    for problem in problems:
        log.error("%s configuration error: %s", helpdesk.name, problem)
    if problems:
        record_config_error(store, helpdesk.name, "; ".join(problems), now)
    elif config_error(store, helpdesk.name):
        clear_config_error(store, helpdesk.name, now)
    return problems


class ConnectorCache:
    """Builds the connector for a rule set once per rules version (ids come from the rules)."""

    def __init__(self, settings: Settings, **options) -> None:
        self.settings, self.options = settings, options
        self._version: str | None = None
        self._connector: Helpdesk | None = None
        self._lock = threading.Lock()

    def __call__(self, rules: RuleSet) -> Helpdesk:
        with self._lock:
            if self._connector is None or rules.version != self._version:
                self._connector = build_connector(self.settings, rules, **self.options)
                self._version = rules.version
            return self._connector


_collector_lock = threading.Lock()
_collector_holds = 0
_collector_was_enabled = False


@contextmanager
def collector_held() -> Iterator[None]:
    """Python's cyclic garbage collector held off while a bulk job runs (a sweep of thousands).

    Such a job builds hundreds of thousands of objects that live until it ends (its tickets,
    decisions, rows); each one the collector meets again in its passes over every tracked
    object, which cost a 10,000-ticket sweep about a fifth of its time. Reference counting
    still frees what the job drops; cycles left meanwhile wait for the first pass after.
    Threads share the collector: it is enabled again when the last holder leaves, and only
    if it was enabled when the first came.
    """
    global _collector_holds, _collector_was_enabled
    with _collector_lock:
        if _collector_holds == 0:
            _collector_was_enabled = gc.isenabled()
            gc.disable()
        _collector_holds += 1
    try:
        yield
    finally:
        with _collector_lock:
            _collector_holds -= 1
            if _collector_holds == 0 and _collector_was_enabled:
                gc.enable()
