"""Versioned migrations with Alembic: `tba-guard db upgrade` brings any database to the head
revision the package ships, and `current` tells where a database stands."""

from __future__ import annotations

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

from .schema import VERSION_TABLE

SCRIPT_LOCATION = "tba_guard.stores.database:migrations"


def _config() -> Config:
    config = Config()
    config.set_main_option("script_location", SCRIPT_LOCATION)
    return config


def head() -> str:
    """The revision this package's code reads and writes."""
    revision = ScriptDirectory.from_config(_config()).get_current_head()
    assert revision is not None  # the package ships at least one migration
    return revision


def current(engine: Engine) -> str | None:
    """The database's revision, or None when no migration ever ran on it."""
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"version_table": VERSION_TABLE})
        return context.get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    config = _config()
    with engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            # Readers then never wait on a writer, across processes; kept in the file.
            connection.exec_driver_sql("PRAGMA journal_mode = WAL")
        config.attributes["connection"] = connection
        command.upgrade(config, revision)
