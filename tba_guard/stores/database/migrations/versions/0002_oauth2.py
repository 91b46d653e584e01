"""OAuth 2.0 beside TBA: integrations gain a client ID and their schemes; certificates (the
client-credentials mappings, announced on change like the other tables) and usage counts.

Revision ID: 0002
Revises: 0001
Create Date: 2025-06-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("tba_integrations", sa.Column("client_id", sa.String(255), nullable=True))
    # Existing integrations keep TBA and may start OAuth 2.0: the records' default.
    op.add_column(
        "tba_integrations",
        sa.Column("schemes", sa.String(32), nullable=False, server_default="tba,oauth2"),
    )
    op.create_index("tba_integrations_client_id", "tba_integrations", ["client_id"], unique=True)
    op.create_table(
        "tba_certificates",
        sa.Column("certificate_id", sa.String(255), primary_key=True),
        sa.Column(
            "consumer_key",
            sa.String(255),
            sa.ForeignKey("tba_integrations.consumer_key", name="tba_certificates_integration_fk"),
            nullable=False,
        ),
        sa.Column("entity", sa.String(255), nullable=False),
        sa.Column("role", sa.String(255), nullable=False),
        sa.Column("certificate", sa.Text, nullable=False),
        sa.Column("not_before", sa.Float, nullable=False),
        sa.Column("not_after", sa.Float, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("revoked_at", sa.Float, nullable=True),
    )
    op.create_index("tba_certificates_consumer_key", "tba_certificates", ["consumer_key"])
    op.create_table(
        "tba_usage",
        sa.Column("consumer_key", sa.String(255), nullable=False),
        sa.Column("token_id", sa.String(255), nullable=False),
        sa.Column("scheme", sa.String(16), nullable=False),
        sa.Column("count", sa.Integer, nullable=False),
        sa.Column("last_used", sa.Float, nullable=False),
        sa.PrimaryKeyConstraint("consumer_key", "token_id", "scheme", name="tba_usage_pkey"),
    )
    if op.get_bind().dialect.name == "postgresql":
        # tba_guard_notify() is revision 0001's: `certificate:<certificate id>` on the channel.
        op.execute(
            "CREATE TRIGGER tba_certificates_notify AFTER INSERT OR UPDATE OR DELETE ON "
            "tba_certificates FOR EACH ROW EXECUTE FUNCTION "
            "tba_guard_notify('certificate', 'certificate_id')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP TRIGGER tba_certificates_notify ON tba_certificates")
    op.drop_table("tba_usage")
    op.drop_index("tba_certificates_consumer_key", table_name="tba_certificates")
    op.drop_table("tba_certificates")
    # SQLite drops an indexed column only by copying the table: batch mode does it.
    with op.batch_alter_table("tba_integrations") as batch:
        batch.drop_index("tba_integrations_client_id")
        batch.drop_column("schemes")
        batch.drop_column("client_id")
