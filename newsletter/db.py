"""Engine and session factory, the declarative Base, and ``session_scope``.

The same models and queries run on SQLite (embedded default) and PostgreSQL.
Services take a Session and never commit; the entry point owns the transaction.
"""

from __future__ import annotations

import functools
import itertools
import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from sqlalchemy import DateTime, Dialect, Engine, MetaData, Table, create_engine, event
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Session, sessionmaker
from sqlalchemy.sql.schema import CallableColumnDefault, ScalarElementColumnDefault
from sqlalchemy.types import TypeDecorator

# Stable constraint names, so Alembic autogenerate and both dialects agree.
NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

# Writers wait this long for SQLite's lock instead of failing at once ("database is
# locked"): the web app, scheduler and worker share one file in `newsletter serve`.
SQLITE_BUSY_TIMEOUT_MS = 30_000


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every dialect.

    SQLite has no time zones and hands back naive datetimes; we store UTC and attach
    the zone on the way out, and refuse naive datetimes on the way in.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r}: pass an aware UTC datetime")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


def utcnow() -> datetime:
    return datetime.now(UTC)


def is_sqlite(url_or_engine: str | Engine) -> bool:
    url = url_or_engine.url if isinstance(url_or_engine, Engine) else make_url(url_or_engine)
    return url.get_backend_name() == "sqlite"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    # WAL lets the web app read while the worker writes; NORMAL is durable enough in WAL.
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


class JSONText(str):
    """A value for a JSON column that is already JSON text: stored as it is.

    For bulk writers that build the same JSON fragment for many rows (the planner's
    outbox items) and would otherwise pay to serialise it again for every row.
    """

    __slots__ = ()


def _json_serializer(value: Any) -> str:
    if type(value) is JSONText:
        return str(value)
    return json.dumps(value)


def make_engine(url: str, **kwargs: Any) -> Engine:
    """An Engine for ``url``; for SQLite, creates the parent folder and sets pragmas."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not db.startswith("file:"):
            Path(db).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
            json_serializer=_json_serializer,
            **kwargs,
        )
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.drivername in {"postgresql", "postgres"}:
        parsed = parsed.set(drivername="postgresql+psycopg")
    return create_engine(parsed, pool_pre_ping=True, json_serializer=_json_serializer, **kwargs)


def table_of(model: type[Base]) -> Table:
    """The Core table of a mapped class. Statements on it skip the ORM's bulk paths,
    which cost more than the statement for executemany INSERTs and UPDATEs by key."""
    return model.metadata.tables[model.__tablename__]


def insert_ignoring_conflicts(
    session: Session, model: type[Base], index_elements: list[str]
) -> Any:
    """``INSERT … ON CONFLICT (index_elements) DO NOTHING`` for the session's dialect
    (PostgreSQL or SQLite): a row another writer stored meanwhile is left as it is."""
    from sqlalchemy.dialects.postgresql import insert as pg_insert
    from sqlalchemy.dialects.sqlite import insert as sqlite_insert

    dialect = session.get_bind().dialect.name
    ins = pg_insert if dialect == "postgresql" else sqlite_insert
    # On the table (see table_of): a Core executemany batches rows into multi-row
    # INSERTs and collects RETURNING rows once, where the ORM's bulk path re-splices
    # its results batch after batch.
    return ins(table_of(model)).on_conflict_do_nothing(index_elements=index_elements)


def bulk_insert_ignoring_conflicts(
    session: Session,
    model: type[Base],
    rows: list[dict[str, Any]],
    index_elements: list[str],
    returning: str,
    *,
    chunk: int = 1000,
) -> list[Any]:
    """Insert many rows, leaving alone any that conflict on ``index_elements``;
    returns the ``returning`` column of the rows this call inserted.

    Every row has the keys of the first. On PostgreSQL the rows are streamed with
    ``COPY`` into a temporary table and moved with one ``INSERT … SELECT … ON CONFLICT
    DO NOTHING``: a multi-row INSERT makes psycopg parse and bind a statement of
    thousands of placeholders per chunk, which was a third of planning 100,000
    subscribers. Values pass through each column type's bind processing first, as in
    any other statement. Elsewhere: multi-row INSERTs of ``chunk`` rows (under
    SQLite's bound-parameter limit at about a dozen columns).
    """
    if not rows:
        return []
    table = table_of(model)
    if session.get_bind().dialect.name != "postgresql":
        out: list[Any] = []
        stmt = insert_ignoring_conflicts(session, model, index_elements).returning(
            table.c[returning]
        )
        for i in range(0, len(rows), chunk):
            out += session.execute(stmt, rows[i : i + chunk]).scalars()
        return out
    return _copy_insert_ignoring_conflicts(session, table, rows, index_elements, returning)


def _copy_insert_ignoring_conflicts(
    session: Session,
    table: Table,
    rows: list[dict[str, Any]],
    index_elements: list[str],
    returning: str,
) -> list[Any]:
    conn = session.connection()
    dialect = conn.dialect
    given = list(rows[0])
    for name in given:
        table.c[name]  # KeyError: not a column
    # Python-side column defaults, which an INSERT statement would fill in (the
    # database fills in its own for the columns left out).
    defaults: list[tuple[str, Callable[[], Any]]] = []
    for c in table.c:
        d = c.default
        if c.name in given:
            continue
        if isinstance(d, CallableColumnDefault):
            # SQLAlchemy wraps a zero-argument default to take the execution context.
            defaults.append((c.name, functools.partial(d.arg, cast(Any, None))))
        elif isinstance(d, ScalarElementColumnDefault):
            defaults.append((c.name, itertools.repeat(d.arg).__next__))
    names = given + [name for name, _ in defaults]
    processors = [table.c[n].type.bind_processor(dialect) for n in names]
    staging = f"_staging_{table.name}"
    quoted = ", ".join(dialect.identifier_preparer.quote(n) for n in names)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        # Column types without defaults, constraints or indexes; gone at commit, and
        # dropped below so that a second call in the same transaction can make it again.
        cursor.execute(
            f"CREATE TEMPORARY TABLE {staging} ON COMMIT DROP AS "
            f"SELECT {quoted} FROM {table.name} WITH NO DATA"
        )
        with cursor.copy(f"COPY {staging} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                values = [row[n] for n in given]
                values += [make() for _, make in defaults]
                for i, process in enumerate(processors):
                    if process is not None and values[i] is not None:
                        values[i] = process(values[i])
                copy.write_row(values)
        cursor.execute(
            f"INSERT INTO {table.name} ({quoted}) SELECT {quoted} FROM {staging} "
            f"ON CONFLICT ({', '.join(index_elements)}) DO NOTHING "
            f"RETURNING {returning}"
        )
        out = [r[0] for r in cursor.fetchall()]
        cursor.execute(f"DROP TABLE {staging}")
        return out
    finally:
        cursor.close()


def make_session_factory(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


@contextmanager
def session_scope(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction: commit on success, roll back on any exception."""
    session = factory()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()
