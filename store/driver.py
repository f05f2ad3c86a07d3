"""Statements compiled once and run straight on the DBAPI cursor, for the webhook hot path."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Dialect


class DriverStatement:
    """A Core statement compiled once for `dialect`, executed with the DBAPI cursor.

    The column types still process every value (JSON, aware datetimes): what
    is saved is SQLAlchemy's per-execution machinery, which costs more than
    the statement itself on the webhook path.
    """

    def __init__(self, statement: Any, dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        self.sql = str(compiled)
        self.positional = compiled.positional
        names = list(compiled.positiontup or ()) if self.positional else list(compiled.binds)
        binds = [compiled.binds[name] for name in names]
        self._names = names
        self._processors = [bind.type.bind_processor(dialect) for bind in binds]
        # Named parameters come from each execution; anonymous ones (literals
        # inside CASE and the like) carry their own value.
        self._keys = [None if bind.unique else bind.key for bind in binds]
        self._fixed = [bind.effective_value for bind in binds]

    def parameters(self, values: Mapping[str, Any]) -> tuple | dict[str, Any]:
        out = []
        for key, fixed, process in zip(self._keys, self._fixed, self._processors, strict=True):
            value = fixed if key is None else values[key]
            out.append(process(value) if process is not None and value is not None else value)
        return tuple(out) if self.positional else dict(zip(self._names, out, strict=True))

    def execute(self, cursor: Any, values: Mapping[str, Any]) -> list[tuple]:
        cursor.execute(self.sql, self.parameters(values))
        return cursor.fetchall()
