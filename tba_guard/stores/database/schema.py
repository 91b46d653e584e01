"""The credential database's tables, in SQLAlchemy Core: one schema for SQLite and PostgreSQL.

Secrets are columns of Fernet tokens (`secret_sealed`), never the secrets themselves. The
migrations in `migrations/versions/` create these tables; this module is what the code reads
and writes, and a test checks that the two agree.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    MetaData,
    String,
    Table,
    Text,
)

#: Where Alembic records the schema's revision: a name of its own, so that an application's
#: own Alembic history in the same database is left alone.
VERSION_TABLE = "tba_guard_alembic_version"
#: The PostgreSQL channel on which every change to either table is announced (by trigger).
NOTIFY_CHANNEL = "tba_guard_credentials"

metadata = MetaData()

integrations = Table(
    "tba_integrations",
    metadata,
    Column("consumer_key", String(255), primary_key=True),
    Column("name", String(255), nullable=False),
    Column("secret_sealed", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("authorization_flow", Boolean, nullable=False),
    Column("callback_url", Text, nullable=True),
    Column("created_at", Float, nullable=False),  # epoch seconds, as the records keep time
    Column("updated_at", Float, nullable=False),
)

tokens = Table(
    "tba_tokens",
    metadata,
    Column("token_id", String(255), primary_key=True),
    Column("secret_sealed", Text, nullable=False),
    Column(
        "consumer_key",
        String(255),
        ForeignKey("tba_integrations.consumer_key", name="tba_tokens_integration_fk"),
        nullable=False,
    ),
    Column("entity", String(255), nullable=False),
    Column("role", String(255), nullable=False),
    Column("active", Boolean, nullable=False),
    Column("revoked", Boolean, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("account", String(255), nullable=True),
    # Who issued it: "cli", "import" or "flow". The flow's tokens are checked against their
    # user (entity and role) on every use, so they are served through the flow's token store.
    Column("issued_by", String(16), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Index("tba_tokens_consumer_key", "consumer_key"),
)
