"""The credential database's tables, in SQLAlchemy Core: one schema for SQLite and PostgreSQL.

Secrets are columns of Fernet tokens (`secret_sealed`), never the secrets themselves; OAuth 2.0
certificates are public and kept as PEM text. The
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
    Integer,
    MetaData,
    PrimaryKeyConstraint,
    String,
    Table,
    Text,
)

#: Where Alembic records the schema's revision: a name of its own, so that an application's
#: own Alembic history in the same database is left alone.
VERSION_TABLE = "tba_guard_alembic_version"
#: The PostgreSQL channel on which every change to a credential table is announced (by trigger).
NOTIFY_CHANNEL = "tba_guard_credentials"

#: What an integration may sign with unless told otherwise: both, as `Integration` says.
DEFAULT_SCHEMES = "tba,oauth2"

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
    # OAuth 2.0 (revision 0002): the client ID beside the consumer key, and the schemes the
    # integration may use, comma-separated ("tba,oauth2" while it migrates).
    Column("client_id", String(255), nullable=True),
    Column("schemes", String(32), nullable=False, server_default=DEFAULT_SCHEMES),
    # Governance (revision 0003): the slots allocated to the integration alone; NULL, the
    # usual case, counts it in the shared pool.
    Column("concurrency_limit", Integer, nullable=True),
    Index("tba_integrations_client_id", "client_id", unique=True),
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

#: OAuth 2.0 client-credentials mappings: an integration's certificate, the entity and role its
#: tokens act as. Tied to the consumer key (which never changes), so that a new client ID for
#: the integration carries its mappings along.
certificates = Table(
    "tba_certificates",
    metadata,
    Column("certificate_id", String(255), primary_key=True),
    Column(
        "consumer_key",
        String(255),
        ForeignKey("tba_integrations.consumer_key", name="tba_certificates_integration_fk"),
        nullable=False,
    ),
    Column("entity", String(255), nullable=False),
    Column("role", String(255), nullable=False),
    Column("certificate", Text, nullable=False),  # PEM: public, not sealed
    Column("not_before", Float, nullable=False),
    Column("not_after", Float, nullable=False),
    Column("state", String(16), nullable=False),  # "active" or "revoked" (kept, to say why)
    Column("created_at", Float, nullable=False),
    Column("revoked_at", Float, nullable=True),
    Index("tba_certificates_consumer_key", "consumer_key"),
)

#: Requests accepted per integration, token (or certificate ID) and scheme, as the guards flush
#: their counts: who still signs with TBA. No foreign key: counts outlive what they counted.
usage = Table(
    "tba_usage",
    metadata,
    Column("consumer_key", String(255), nullable=False),
    Column("token_id", String(255), nullable=False),
    Column("scheme", String(16), nullable=False),
    Column("count", Integer, nullable=False),
    Column("last_used", Float, nullable=False),
    PrimaryKeyConstraint("consumer_key", "token_id", "scheme", name="tba_usage_pkey"),
)
