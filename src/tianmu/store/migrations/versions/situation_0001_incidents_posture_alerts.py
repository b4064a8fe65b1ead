"""situation: incidents, posture history and alert delivery state

Revision ID: situation_0001
Revises: 0001
Create Date: 2026-11-25 13:15:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "situation_0001"
down_revision = "0001"
branch_labels = ("situation",)
depends_on = None

TZ = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "situation_incidents",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("key", sa.String(length=32), nullable=False),
        sa.Column("title", sa.Text(), nullable=False),
        sa.Column("severity", sa.String(length=16), nullable=False),
        sa.Column("stage", sa.String(length=32), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("assignee", sa.String(length=256), nullable=True),
        sa.Column("tactics", sa.JSON(), nullable=False),
        sa.Column("assets", sa.JSON(), nullable=False),
        sa.Column("sources", sa.JSON(), nullable=False),
        sa.Column("entities", sa.JSON(), nullable=False),
        sa.Column("finding_fingerprints", sa.JSON(), nullable=False),
        sa.Column("timeline", sa.JSON(), nullable=False),
        sa.Column("first_seen", TZ, nullable=True),
        sa.Column("last_seen", TZ, nullable=True),
        sa.Column("updated", TZ, nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_situation_incidents")),
        sa.UniqueConstraint("tenant", "key", name="uq_situation_incidents_tenant_key"),
    )
    op.create_index(
        "ix_situation_incidents_tenant_last_seen",
        "situation_incidents",
        ["tenant", "last_seen"],
        unique=False,
    )
    op.create_index(
        "ix_situation_incidents_tenant_status", "situation_incidents", ["tenant", "status"], unique=False
    )
    op.create_table(
        "situation_posture",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("assessment_id", sa.Integer(), nullable=True),
        sa.Column("taken_at", TZ, nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("level", sa.String(length=16), nullable=False),
        sa.Column("open_findings", sa.Integer(), nullable=False),
        sa.Column("open_incidents", sa.Integer(), nullable=False),
        sa.Column("drivers", sa.JSON(), nullable=False),
        sa.Column("assets", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["assessment_id"],
            ["assessments.id"],
            name=op.f("fk_situation_posture_assessment_id_assessments"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_situation_posture")),
    )
    op.create_index(
        "ix_situation_posture_tenant_taken_at", "situation_posture", ["tenant", "taken_at"], unique=False
    )
    op.create_table(
        "situation_alert_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("tenant", sa.String(length=64), nullable=False),
        sa.Column("rule", sa.String(length=128), nullable=False),
        sa.Column("subject", sa.String(length=256), nullable=False),
        sa.Column("state", sa.String(length=256), nullable=False),
        sa.Column("delivered_at", TZ, nullable=False),
        sa.Column("channels", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_situation_alert_state")),
        sa.UniqueConstraint("tenant", "rule", "subject", name="uq_situation_alert_state_tenant_rule_subject"),
    )


def downgrade() -> None:
    op.drop_table("situation_alert_state")
    op.drop_index("ix_situation_posture_tenant_taken_at", table_name="situation_posture")
    op.drop_table("situation_posture")
    op.drop_index("ix_situation_incidents_tenant_status", table_name="situation_incidents")
    op.drop_index("ix_situation_incidents_tenant_last_seen", table_name="situation_incidents")
    op.drop_table("situation_incidents")
