"""Alembic's environment for the credential database: migrations run on the connection that
`tba_guard.stores.database.migrate` hands over, with the revision kept in a table of its own."""

from __future__ import annotations

from alembic import context

from tba_guard.stores.database.schema import VERSION_TABLE, metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    version_table=VERSION_TABLE,
    # SQLite alters a table by copying it; Alembic's batch mode does that for us.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
