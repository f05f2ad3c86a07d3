"""Statements compiled once and run straight on the DBAPI cursor, for the webhook hot path."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Dialect

_MISSING = object()


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
        # A column's bound parameters share its type object (one per row of a multi-row INSERT).
        self._types = [id(bind.type) for bind in binds]
        # Named parameters come from each execution; anonymous ones (literals
        # inside CASE and the like) carry their own value.
        self._keys = [None if bind.unique else bind.key for bind in binds]
        self._fixed = [bind.effective_value for bind in binds]

    def parameters(self, values: Mapping[str, Any], memo: dict[tuple[int, int], Any] | None = None
                   ) -> tuple | dict[str, Any]:
        """The DBAPI parameters of one execution.

        With `memo` (kept by the caller across the rows of one batch, while they are alive),
        a value object met again under the same column type (the batch's `now`, the changes
        a bulk close shares among its tickets) is processed once: the memo is keyed by the
        type's and the object's identity, so only the very same object is reused.
        """
        out = []
        columns = zip(self._keys, self._fixed, self._processors, self._types, strict=True)
        for key, fixed, process, kind in columns:
            value = fixed if key is None else values[key]
            if process is None or value is None:
                out.append(value)
            elif memo is None:
                out.append(process(value))
            else:
                slot = (kind, id(value))
                done = memo.get(slot, _MISSING)
                if done is _MISSING:
                    done = memo[slot] = process(value)
                out.append(done)
        return tuple(out) if self.positional else dict(zip(self._names, out, strict=True))

    def parameters_many(self, rows: Sequence[Mapping[str, Any]]) -> list[tuple | dict[str, Any]]:
        """parameters() of every row, each recurring value object processed once (see there)."""
        memo: dict[tuple[int, int], Any] = {}
        return [self.parameters(row, memo) for row in rows]

    def execute(self, cursor: Any, values: Mapping[str, Any]) -> list[tuple]:
        cursor.execute(self.sql, self.parameters(values))
        return cursor.fetchall()
