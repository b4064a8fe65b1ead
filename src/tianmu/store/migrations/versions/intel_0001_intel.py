"""intel: threat-intelligence indicators, STIX context objects, ATT&CK techniques and tactics

Revision ID: intel_0001
Revises: 0001
Create Date: 2026-11-25 13:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "intel_0001"
down_revision = "0001"
branch_labels = ("intel",)
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "intel_indicators",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(length=2048), nullable=False),
        sa.Column("exact", sa.Boolean(), nullable=False),
        sa.Column("confidence", sa.Integer(), nullable=False),
        sa.Column("valid_from", TZ, nullable=True),
        sa.Column("valid_until", TZ, nullable=True),
        sa.Column("labels", sa.JSON(), nullable=False),
        sa.Column("techniques", sa.JSON(), nullable=False),
        sa.Column("malware", sa.JSON(), nullable=False),
        sa.Column("actors", sa.JSON(), nullable=False),
        sa.Column("references", sa.JSON(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("origin", sa.String(length=2048), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_intel_indicators")),
    )
    op.create_index("ix_intel_indicators_type_value", "intel_indicators", ["type", "value"])
    op.create_index("ix_intel_indicators_source", "intel_indicators", ["source"])
    op.create_table(
        "intel_objects",
        sa.Column("source", sa.String(length=128), nullable=False),
        sa.Column("id", sa.String(length=128), nullable=False),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=512), nullable=True),
        sa.Column("data", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("source", "id", name=op.f("pk_intel_objects")),
    )
    op.create_table(
        "attack_techniques",
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("tactics", sa.JSON(), nullable=False),
        sa.Column("parent_id", sa.String(length=16), nullable=True),
        sa.Column("url", sa.String(length=512), nullable=True),
        sa.Column("deprecated", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_attack_techniques")),
    )
    op.create_table(
        "attack_tactics",
        sa.Column("shortname", sa.String(length=64), nullable=False),
        sa.Column("id", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("shortname", name=op.f("pk_attack_tactics")),
    )


def downgrade() -> None:
    op.drop_table("attack_tactics")
    op.drop_table("attack_techniques")
    op.drop_table("intel_objects")
    op.drop_index("ix_intel_indicators_source", table_name="intel_indicators")
    op.drop_index("ix_intel_indicators_type_value", table_name="intel_indicators")
    op.drop_table("intel_indicators")
