"""Concurrency governance: an integration may keep its allocation of the account's slots.

Revision ID: 0003
Revises: 0002
Create Date: 2025-07-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL for every existing integration: it keeps counting in the shared pool. The NOTIFY
    # trigger of revision 0001 fires on any change of the row, this column's included.
    op.add_column("tba_integrations", sa.Column("concurrency_limit", sa.Integer, nullable=True))


def downgrade() -> None:
    # Batch mode, in place: SQLite (3.35 and later) drops a plain column itself, where a copy
    # of the table would trip the foreign keys of the tokens and certificates pointing at it.
    with op.batch_alter_table("tba_integrations", recreate="never") as batch:
        batch.drop_column("concurrency_limit")
