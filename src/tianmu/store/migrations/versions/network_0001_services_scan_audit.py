"""network: discovered services and the scan audit trail

Revision ID: network_0001
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "network_0001"
down_revision = "0001"
branch_labels = ("network",)
depends_on = None


def upgrade() -> None:
    op.create_table(
        "services",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("asset_id", sa.Integer(), nullable=False),
        sa.Column("address", sa.String(length=64), nullable=False),
        sa.Column("port", sa.Integer(), nullable=False),
        sa.Column("transport", sa.String(length=8), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("service", sa.String(length=64), nullable=True),
        sa.Column("product", sa.String(length=256), nullable=True),
        sa.Column("version", sa.String(length=128), nullable=True),
        sa.Column("cpe", sa.String(length=512), nullable=True),
        sa.Column("banner", sa.Text(), nullable=True),
        sa.Column("tls", sa.JSON(), nullable=True),
        sa.Column("info", sa.JSON(), nullable=False),
        sa.Column("first_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_seen", sa.DateTime(timezone=True), nullable=False),
        sa.Column("closed_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["asset_id"], ["assets.id"], name=op.f("fk_services_asset_id_assets"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_services")),
        sa.UniqueConstraint("tenant", "address", "port", "transport", name="uq_services_tenant_address_port"),
    )
    op.create_index("ix_services_tenant_asset", "services", ["tenant", "asset_id"])
    op.create_index("ix_services_tenant_state", "services", ["tenant", "state"])
    op.create_table(
        "scan_audit",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("action", sa.String(length=32), nullable=False),
        sa.Column("started", sa.DateTime(timezone=True), nullable=False),
        sa.Column("finished", sa.DateTime(timezone=True), nullable=True),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("ports", sa.Text(), nullable=True),
        sa.Column("authorized", sa.Integer(), nullable=False),
        sa.Column("engine", sa.String(length=32), nullable=True),
        sa.Column("summary", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scan_audit")),
    )
    op.create_index("ix_scan_audit_tenant_started", "scan_audit", ["tenant", "started"])


def downgrade() -> None:
    op.drop_index("ix_scan_audit_tenant_started", table_name="scan_audit")
    op.drop_table("scan_audit")
    op.drop_index("ix_services_tenant_state", table_name="services")
    op.drop_index("ix_services_tenant_asset", table_name="services")
    op.drop_table("services")
