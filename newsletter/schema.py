"""The database schema: every model module, and Alembic migrations to head.

``newsletter init`` and every entry point call :func:`upgrade`; a test runs
:func:`check` so models and migrations never drift.
"""

from __future__ import annotations

from importlib.resources import as_file, files

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

# Importing the model modules registers their tables on Base.metadata.
import newsletter.digest.models
import newsletter.papers.models
import newsletter.status
import newsletter.subscribers.models  # noqa: F401
from newsletter.db import Base

metadata = Base.metadata


def alembic_config(engine: Engine) -> Config:
    """An Alembic Config for the packaged ``migrations/``, bound to ``engine``."""
    cfg = Config()
    cfg.set_main_option("script_location", str(files("newsletter.migrations")))
    cfg.set_main_option(
        "sqlalchemy.url", engine.url.render_as_string(hide_password=False).replace("%", "%%")
    )
    cfg.attributes["engine"] = engine
    return cfg


def head_revision(engine: Engine) -> str | None:
    return ScriptDirectory.from_config(alembic_config(engine)).get_current_head()


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine) -> bool:
    """Upgrade the database to head; returns True when anything was applied."""
    if current_revision(engine) == head_revision(engine):
        return False
    with as_file(files("newsletter.migrations")):
        command.upgrade(alembic_config(engine), "head")
    return True


def check(engine: Engine) -> None:
    """Raise if the models differ from what the migrations build (``alembic check``)."""
    command.check(alembic_config(engine))
