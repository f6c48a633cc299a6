"""Migrations build exactly the models, from empty, on both dialects."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy import Engine

from newsletter import schema
from newsletter.db import make_engine


def test_models_and_migrations_do_not_drift(engine: Engine) -> None:
    # alembic check: autogenerate against the migrated database finds nothing to do.
    schema.check(engine)


def test_upgrade_from_empty_database(tmp_path, pg_url: str) -> None:  # type: ignore[no-untyped-def]
    sqlite = make_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert schema.current_revision(sqlite) is None
    assert schema.upgrade(sqlite) is True
    assert schema.current_revision(sqlite) == schema.head_revision(sqlite)
    assert schema.upgrade(sqlite) is False  # idempotent
    tables = set(sa.inspect(sqlite).get_table_names())
    assert {"papers", "paper_keys", "ingests", "feeds"} <= tables

    # The session's PostgreSQL database was upgraded from empty by the pg_url fixture.
    pg = make_engine(pg_url)
    assert schema.current_revision(pg) == schema.head_revision(pg)
    assert set(schema.metadata.tables) <= set(sa.inspect(pg).get_table_names())
    pg.dispose()


def test_sqlite_runs_in_wal_mode(tmp_path) -> None:  # type: ignore[no-untyped-def]
    eng = make_engine(f"sqlite:///{tmp_path / 'wal.db'}")
    with eng.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
