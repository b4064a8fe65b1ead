"""findings: severity_rank and the indexes of the API and dashboard pages

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-25 13:05:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("findings") as batch:
        batch.add_column(sa.Column("severity_rank", sa.SmallInteger(), server_default="0", nullable=False))
    op.execute(
        "UPDATE findings SET severity_rank = CASE severity WHEN 'critical' THEN 4 WHEN 'high' THEN 3 "
        "WHEN 'medium' THEN 2 WHEN 'low' THEN 1 ELSE 0 END"
    )
    op.create_index(
        "ix_findings_tenant_status_last_seen",
        "findings",
        ["tenant", "status", "last_seen", "id"],
        unique=False,
    )
    op.create_index(
        "ix_findings_tenant_status_rank",
        "findings",
        ["tenant", "status", "severity_rank", "last_seen", "id"],
        unique=False,
    )
    op.create_index(
        "ix_findings_tenant_asset_last_seen",
        "findings",
        ["tenant", "asset_id", "last_seen", "id"],
        unique=False,
    )


def downgrade() -> None:
    op.drop_index("ix_findings_tenant_asset_last_seen", table_name="findings")
    op.drop_index("ix_findings_tenant_status_rank", table_name="findings")
    op.drop_index("ix_findings_tenant_status_last_seen", table_name="findings")
    with op.batch_alter_table("findings") as batch:
        batch.drop_column("severity_rank")
