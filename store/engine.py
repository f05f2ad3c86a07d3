"""Engine construction per dialect (SQLite pragmas, PostgreSQL pooling) and write transactions."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.pool import StaticPool

from store.driver import DriverStatement

# Seconds a webhook, /healthz or a job waits for the database before it gives up:
# connecting, a statement, a lock, a pooled connection. Webhooks then answer 503
# within seconds (Zendesk gives up on a delivery after 12 s) instead of hanging.
DEFAULT_TIMEOUT_SECONDS = 5.0
# Below the usual idle timeouts of proxies and PgBouncer.
POSTGRES_POOL_RECYCLE_S = 1800
# Connections a process keeps open, and may open beyond that under load: enough
# for every thread of a web process (gunicorn.conf.py's WEB_THREADS, 16), so a
# burst of webhooks never waits for a pooled connection.
POOL_SIZE = 5
POOL_MAX_OVERFLOW = 20
T = TypeVar("T")

_BEGIN_OPTION = "deskpilot_sqlite_begin"


def public_url(url: str | URL) -> str:
    """The URL with any password masked, safe for logs and error messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except ArgumentError:
        return "<unparseable database URL>"


def normalize_url(url: str) -> URL:
    """Parse `url`, mapping bare postgres:// and postgresql:// onto the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        # SQLAlchemy maps a bare postgresql:// to psycopg2, which is not installed;
        # postgres:// is the Heroku-style spelling SQLAlchemy rejects outright.
        if url.startswith(prefix):
            url = "postgresql+psycopg://" + url[len(prefix) :]
    try:
        return make_url(url)
    except ArgumentError as err:
        raise ValueError(
            f"database URL {public_url(url)!r} is not a valid SQLAlchemy URL: use "
            "sqlite:///path/to/file.db or postgresql+psycopg://user:pass@host/db"
        ) from err


def postgres_timeouts(timeout_seconds: float) -> dict[str, Any]:
    """libpq connection parameters that bound every wait on PostgreSQL by `timeout_seconds`.

    connect_timeout bounds connecting; statement_timeout and lock_timeout bound
    a statement the server runs or a lock it waits for; tcp_user_timeout and the
    keepalives end a connection whose packets are dropped (the server never
    answers, so no server-side timeout can fire).
    https://www.postgresql.org/docs/current/libpq-connect.html#LIBPQ-PARAMKEYWORDS
    https://www.postgresql.org/docs/current/runtime-config-client.html#GUC-STATEMENT-TIMEOUT
    """
    millis = max(1, round(timeout_seconds * 1000))
    return {
        "connect_timeout": max(2, round(timeout_seconds)),  # libpq treats 1 as 2
        "options": f"-c statement_timeout={millis} -c lock_timeout={millis}",
        "tcp_user_timeout": millis,
        "keepalives": 1,
        "keepalives_idle": max(1, round(timeout_seconds)),
        "keepalives_interval": 1,
        "keepalives_count": 3,
    }


def create_store_engine(url: str, timeout_seconds: float = DEFAULT_TIMEOUT_SECONDS) -> Engine:
    """An Engine for `url`, configured for the store's concurrency model.

    Every wait for the database (connect, statement, lock, pool checkout) ends
    after about `timeout_seconds` with an error instead of hanging.
    """
    parsed = normalize_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(parsed, timeout_seconds)
    if backend == "postgresql":
        if parsed.get_driver_name() != "psycopg":
            raise ValueError(
                f"database URL {public_url(parsed)!r}: use the psycopg 3 driver "
                "(postgresql+psycopg://...), the one in requirements.txt"
            )
        # No pre-ping: it costs a round trip on every checkout, on the webhook
        # path too. A connection PostgreSQL dropped fails its first statement
        # as invalidated instead, and `retry_on_disconnect` runs the work again
        # on a fresh one.
        return sa.create_engine(
            parsed,
            pool_recycle=POSTGRES_POOL_RECYCLE_S,
            pool_size=POOL_SIZE,
            max_overflow=POOL_MAX_OVERFLOW,
            pool_timeout=timeout_seconds,
            connect_args=postgres_timeouts(timeout_seconds),
            json_serializer=_postgres_json,
        )
    raise ValueError(
        f"database URL {public_url(parsed)!r}: only sqlite:/// and postgresql+psycopg:// are supported"
    )


# An escaped NUL preceded by an even number of backslashes (an odd number would make
# it the literal text "\\u0000" rather than the character).
_ESCAPED_NUL = re.compile(r"(?<!\\)((?:\\\\)*)\\u0000")


def _postgres_json(value: object) -> str:
    # jsonb rejects the NUL character ("\u0000 is disallowed",
    # https://www.postgresql.org/docs/current/datatype-json.html); a vendor payload
    # carrying one must still be stored, so it becomes U+FFFD, the replacement character.
    text = json.dumps(value)
    # The substring test runs in C over the whole document; the pattern only where it can match.
    return _ESCAPED_NUL.sub(r"\1\\ufffd", text) if "\\u0000" in text else text


def _sqlite_engine(url: URL, timeout_seconds: float) -> Engine:
    database = url.database or ""
    in_memory = database in ("", ":memory:") or database.startswith("file::memory:")
    # Python's sqlite3 waits `timeout` seconds for a lock; busy_timeout (set on
    # connect) says the same to SQLite itself.
    kwargs: dict[str, Any] = {"connect_args": {"timeout": timeout_seconds}}
    if in_memory:
        # One shared connection, or every pooled connection would see its own empty
        # database. Fine for single-threaded tests; use a file for anything else.
        kwargs = {"poolclass": StaticPool,
                  "connect_args": {"check_same_thread": False, "timeout": timeout_seconds}}
    else:
        kwargs.update(pool_timeout=timeout_seconds, pool_size=POOL_SIZE, max_overflow=POOL_MAX_OVERFLOW)
        folder = Path(database).expanduser().resolve().parent
        if not folder.is_dir():
            raise ValueError(
                f"database URL {public_url(url)!r}: folder {folder} does not exist; "
                "create it or point the URL at an existing folder"
            )
    engine = sa.create_engine(url, **kwargs)
    busy_ms = max(1, round(timeout_seconds * 1000))

    def on_connect(dbapi_connection: Any, record: Any) -> None:
        _sqlite_on_connect(dbapi_connection, record, busy_ms)

    event.listen(engine, "connect", on_connect)
    event.listen(engine, "begin", _sqlite_on_begin)
    return engine


def _sqlite_on_connect(dbapi_connection: Any, _record: Any, busy_ms: int) -> None:
    # Python's sqlite3 (legacy transaction control, Python < 3.16) would issue its own
    # deferred BEGIN lazily; turn that off and emit BEGIN ourselves, as SQLAlchemy's
    # SQLite docs describe ("Enabling Non-Legacy SQLite Transactional Modes").
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        # WAL lets readers run alongside the single writer (https://www.sqlite.org/wal.html).
        cursor.execute("PRAGMA journal_mode=WAL")
        # In WAL mode NORMAL syncs at checkpoints instead of every commit: a
        # crash of the process loses nothing; a power cut may drop the last
        # commits (https://www.sqlite.org/pragma.html#pragma_synchronous), and
        # the reconciliation sweep finds those tickets again in the helpdesk's
        # incremental export. It triples webhook intake on an ordinary disk.
        cursor.execute("PRAGMA synchronous=NORMAL")
        # Milliseconds a writer waits for the lock before "database is locked".
        cursor.execute(f"PRAGMA busy_timeout={int(busy_ms)}")
        cursor.execute("PRAGMA foreign_keys=ON")
    finally:
        cursor.close()


def _sqlite_on_begin(conn: Connection) -> None:
    # A deferred transaction that reads and then writes can fail with SQLITE_BUSY
    # without waiting for busy_timeout when another writer got in first
    # (https://www.sqlite.org/lang_transaction.html); writers take the lock up front.
    mode = conn.get_execution_options().get(_BEGIN_OPTION, "DEFERRED")
    conn.exec_driver_sql(f"BEGIN {mode}")


def retry_on_disconnect(work: Callable[[], T]) -> T:
    """Run `work`; if the database dropped the pooled connection, once more on a new one."""
    try:
        return work()
    except sa.exc.DBAPIError as err:
        if not err.connection_invalidated:
            raise
        return work()


@contextmanager
def write_transaction(engine: Engine) -> Iterator[Connection]:
    """A committed-on-success transaction that may write (BEGIN IMMEDIATE on SQLite)."""
    with engine.connect() as conn:
        conn.execution_options(**{_BEGIN_OPTION: "IMMEDIATE"})
        with conn.begin():
            yield conn


@contextmanager
def read_transaction(engine: Engine) -> Iterator[Connection]:
    """A transaction for reads (a plain deferred BEGIN on SQLite, so it never waits on writers)."""
    with engine.connect() as conn, conn.begin():
        yield conn


def one_of(conn: Connection, column: Any, values: Sequence[Any]) -> Any:
    """`column IN values`, as PostgreSQL plans it well: `column = ANY(array)`.

    An IN list is one bound parameter per value: PostgreSQL plans a 100-key list
    for its values in about 7 ms, and psycopg prepares a statement run five times,
    after which the server may switch to one generic plan that scans every row of
    the source (115-130 ms to clear a sweep chunk's board targets). One array
    parameter is planned in about 1 ms and its generic plan keeps to the index.
    SQLite has no arrays: the IN list stays.
    """
    if conn.dialect.name == "postgresql":
        array = sa.bindparam(None, list(values), type_=postgresql.ARRAY(column.type))
        return column == sa.any_(array)
    return column.in_(list(values))


# Statements of the bulk paths, compiled once per dialect and shape (see insert_many).
_MANY: dict[Hashable, Any] = {}

# Rows per statement of insert_many: on PostgreSQL each column is one array parameter,
# so a statement's size does not grow with its rows; SQLite's multi-row INSERT (with
# RETURNING) has one parameter per value.
UNNEST_BATCH = 1000
RETURNING_BATCH = 100


def insert_many(conn: Connection, table: sa.Table, rows: Sequence[dict], *, conflict: Sequence[str] = (),
                update: Sequence[str] = (), returning: Sequence[str] = ()) -> list[tuple]:
    """INSERT `rows` (dicts with the same keys) into `table`: a few statements for any number.

    With `conflict` (a unique key's columns), a row whose key exists is skipped, or with
    `update` it sets those columns of the stored row (an upsert); a key given twice is
    written as the last of its rows, as one statement per row in order would leave it.
    `returning` names columns of the rows written to return, in no promised order (match
    them to `rows` by a key among them); a skipped row is not returned.

    Every value still goes through its column's type (JSON, aware UTC instants). On
    PostgreSQL a batch is one `INSERT ... SELECT FROM unnest(...)`, one array parameter
    per column: one statement to parse, plan and execute for UNNEST_BATCH rows, where
    one execution per row costs the server about as much again as the rows' data and a
    multi-row VALUES list is too long for psycopg to cache its conversion. SQLite runs
    one compiled statement as an executemany, or with `returning` multi-row INSERTs.
    """
    if not rows:
        return []
    if update and not conflict:
        raise ValueError("insert_many: update needs the conflict key it applies on")
    columns = tuple(rows[0])
    if update:
        rows = _last_per_key(rows, conflict)
    dialect = conn.dialect
    shape = (dialect.name, table.name, columns, tuple(conflict), tuple(update), tuple(returning))
    if dialect.name == "postgresql":
        statement = _MANY.get(shape)
        if statement is None:
            statement = _MANY[shape] = _UnnestInsert(table, columns, conflict, update, returning, dialect)
        out: list[tuple] = []
        for start in range(0, len(rows), UNNEST_BATCH):
            batch = statement.parameters(rows[start : start + UNNEST_BATCH])
            result = conn.exec_driver_sql(statement.sql, batch)
            if returning:
                out.extend(tuple(row) for row in result)
        return out
    if not returning:
        statement = _MANY.get(shape)
        if statement is None:
            built = _insert(conn, table, {c: sa.bindparam(c, type_=table.c[c].type) for c in columns},
                            conflict, update)
            statement = _MANY[shape] = DriverStatement(built, dialect)
        conn.exec_driver_sql(statement.sql, statement.parameters_many(rows))
        return []
    out = []
    for start in range(0, len(rows), RETURNING_BATCH):
        batch = rows[start : start + RETURNING_BATCH]
        key = (*shape, len(batch))
        statement = _MANY.get(key)
        if statement is None:
            values = [{column: sa.bindparam(f"{column}_{n}", type_=table.c[column].type)
                       for column in columns} for n in range(len(batch))]
            built = _insert(conn, table, values, conflict, update)
            built = built.returning(*(table.c[name] for name in returning))
            statement = _MANY[key] = DriverStatement(built, dialect)
        flat = {f"{column}_{n}": row[column] for n, row in enumerate(batch) for column in columns}
        out.extend(tuple(row) for row in conn.exec_driver_sql(statement.sql, statement.parameters(flat, {})))
    return out


def _insert(conn: Connection, table: sa.Table, values: Any, conflict: Sequence[str], update: Sequence[str]
            ) -> Any:
    if not conflict:
        return sa.insert(table).values(values)
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    built = insert(table).values(values)
    index = [table.c[name] for name in conflict]
    if not update:
        return built.on_conflict_do_nothing(index_elements=index)
    return built.on_conflict_do_update(index_elements=index,
                                       set_={name: built.excluded[name] for name in update})


def _last_per_key(rows: Sequence[dict], key: Sequence[str]) -> Sequence[dict]:
    """`rows` with each key once, at its last row (an upsert statement may set a row only once)."""
    last = {tuple(row[name] for name in key): row for row in rows}
    return rows if len(last) == len(rows) else list(last.values())


class _UnnestInsert:
    """`INSERT INTO t (columns) SELECT * FROM unnest(CAST(%(c0)s AS type[]), ...)` for PostgreSQL,
    with its ON CONFLICT and RETURNING; each parameter is the list of a column's processed values."""

    def __init__(self, table: sa.Table, columns: Sequence[str], conflict: Sequence[str],
                 update: Sequence[str], returning: Sequence[str], dialect: Any) -> None:
        # JSON goes as text (cast by the server): a document shared by many rows is serialized once.
        arrays = [sa.cast(sa.bindparam(f"c{n}"), postgresql.ARRAY(table.c[name].type))
                  for n, name in enumerate(columns)]
        rows = sa.select(sa.literal_column("*")).select_from(sa.func.unnest(*arrays))
        built = postgresql.insert(table).from_select(list(columns), rows)
        if conflict:
            index = [table.c[name] for name in conflict]
            built = (built.on_conflict_do_update(index_elements=index,
                                                 set_={name: built.excluded[name] for name in update})
                     if update else built.on_conflict_do_nothing(index_elements=index))
        if returning:
            built = built.returning(*(table.c[name] for name in returning))
        sql = str(built.compile(dialect=dialect))
        for n in range(len(columns)):  # psycopg dumps these arrays in binary: no escaping of each value
            sql = sql.replace(f"%(c{n})s", f"%(c{n})b")
        self.sql = sql
        self._columns = [(f"c{n}", name, _unnest_processor(table.c[name].type, dialect))
                         for n, name in enumerate(columns)]

    def parameters(self, rows: Sequence[Mapping[str, Any]]) -> dict[str, list]:
        out = {}
        for key, name, process in self._columns:
            values = [row[name] for row in rows]
            if process is not None:
                done: dict[int, Any] = {}  # a value object met again (the batch's `now`) is processed once
                values = [None if value is None else done[id(value)] if id(value) in done
                          else done.setdefault(id(value), process(value)) for value in values]
            out[key] = values
        return out


def _unnest_processor(column_type: Any, dialect: Any) -> Callable[[Any], Any] | None:
    """What makes a column's value an array element: the column type's own bind processing,
    except that JSON is serialized here (as the engine's json_serializer does) to text."""
    if isinstance(column_type.dialect_impl(dialect), sa.JSON):
        return _postgres_json
    return column_type.dialect_impl(dialect).bind_processor(dialect)
