"""The pieces every process builds from Settings: rules (reloadable), store, helpdesk connector."""

from __future__ import annotations

import logging
import sys
import threading
from dataclasses import dataclass
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


def process_settings() -> Settings:
    """Settings and logging for a process entry point (run, worker, clock).

    Bad settings stop the process with one line naming the variable (exit 2).
    """
    try:
        settings = load_settings()
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


def build_store(settings: Settings) -> Store:
    store = Store(settings.database_url)
    store.migrate()
    return store


def build_connector(settings: Settings, rules: RuleSet | None = None, **options) -> Helpdesk:
    """The connector of the configured helpdesk. Field, group and status ids come from
    the rule files' `helpdesk:` section."""
    mapping = rules.helpdesk.get(settings.helpdesk) if rules is not None else None
    fields = dict(mapping.fields) if mapping else {}
    groups = dict(mapping.groups) if mapping else {}
    if settings.helpdesk == "zendesk":
        from connectors.zendesk import ZendeskConnector

        return ZendeskConnector(
            settings.zendesk_subdomain,
            settings.zendesk_email,
            settings.zendesk_api_token,
            api_url=settings.zendesk_api_url,
            field_ids={k: int(v) for k, v in fields.items()},
            group_ids={k: int(v) for k, v in groups.items()},
            **options,
        )
    from connectors.freshdesk import FreshdeskConnector

    return FreshdeskConnector(
        settings.freshdesk_domain,
        settings.freshdesk_api_key,
        api_url=settings.freshdesk_api_url,
        field_names={k: str(v) for k, v in fields.items()},
        group_ids={k: int(v) for k, v in groups.items()},
        status_map=dict(mapping.statuses) if mapping else {},
        **options,
    )


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
