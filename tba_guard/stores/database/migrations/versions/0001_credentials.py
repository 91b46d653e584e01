"""Integrations and access tokens, secrets sealed; on PostgreSQL, a change notice per row.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

# Every insert, update or delete announces `integration:<consumer key>` or `token:<token id>`
# on the channel, delivered at commit: a change made by hand in SQL reaches the caches too.
NOTIFY_FUNCTION = """
CREATE FUNCTION tba_guard_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    changed jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN changed := to_jsonb(OLD); ELSE changed := to_jsonb(NEW); END IF;
    PERFORM pg_notify('tba_guard_credentials', TG_ARGV[0] || ':' || (changed ->> TG_ARGV[1]));
    RETURN NULL;
END $$
"""


def upgrade() -> None:
    op.create_table(
        "tba_integrations",
        sa.Column("consumer_key", sa.String(255), primary_key=True),
        sa.Column("name", sa.String(255), nullable=False),
        sa.Column("secret_sealed", sa.Text, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("authorization_flow", sa.Boolean, nullable=False),
        sa.Column("callback_url", sa.Text, nullable=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
    )
    op.create_table(
        "tba_tokens",
        sa.Column("token_id", sa.String(255), primary_key=True),
        sa.Column("secret_sealed", sa.Text, nullable=False),
        sa.Column(
            "consumer_key",
            sa.String(255),
            sa.ForeignKey("tba_integrations.consumer_key", name="tba_tokens_integration_fk"),
            nullable=False,
        ),
        sa.Column("entity", sa.String(255), nullable=False),
        sa.Column("role", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean, nullable=False),
        sa.Column("revoked", sa.Boolean, nullable=False),
        sa.Column("expires_at", sa.Float, nullable=True),
        sa.Column("account", sa.String(255), nullable=True),
        sa.Column("issued_by", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("updated_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("tba_tokens_consumer_key", "tba_tokens", ["consumer_key"])
    if op.get_bind().dialect.name == "postgresql":
        op.execute(NOTIFY_FUNCTION)
        for table, kind, key in (
            ("tba_integrations", "integration", "consumer_key"),
            ("tba_tokens", "token", "token_id"),
        ):
            op.execute(
                f"CREATE TRIGGER {table}_notify AFTER INSERT OR UPDATE OR DELETE ON {table} "
                f"FOR EACH ROW EXECUTE FUNCTION tba_guard_notify('{kind}', '{key}')"
            )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER tba_tokens_notify ON tba_tokens")
        op.execute("DROP TRIGGER tba_integrations_notify ON tba_integrations")
        op.execute("DROP FUNCTION tba_guard_notify()")
    op.drop_index("tba_tokens_consumer_key", table_name="tba_tokens")
    op.drop_table("tba_tokens")
    op.drop_table("tba_integrations")
