"""network: website check templates imported into the knowledge base

Revision ID: network_0002
Revises: network_0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "network_0002"
down_revision = "network_0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "websec_checks",
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("source", sa.String(length=256), nullable=False),
        sa.Column("content_hash", sa.String(length=64), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("imported_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_websec_checks")),
    )
    op.create_index("ix_websec_checks_source", "websec_checks", ["source"])


def downgrade() -> None:
    op.drop_index("ix_websec_checks_source", table_name="websec_checks")
    op.drop_table("websec_checks")
