"""Alembic environment: runs against the engine handed in by ``newsletter.schema``."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Engine

from newsletter.config import get_settings
from newsletter.db import make_engine
from newsletter.schema import metadata

config = context.config


def run_migrations_online() -> None:
    engine = config.attributes.get("engine")
    if not isinstance(engine, Engine):
        url = config.get_main_option("sqlalchemy.url") or get_settings().database_url
        engine = make_engine(url)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=metadata,
            # SQLite cannot ALTER most things; batch mode recreates the table instead.
            render_as_batch=connection.dialect.name == "sqlite",
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()


run_migrations_online()
