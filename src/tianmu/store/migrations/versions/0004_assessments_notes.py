"""assessments: notes, what a run says it left out or stopped at (bounded JSON list of texts)

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04 19:50:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # Rows stored before have no notes to give back: an empty list, never NULL, so readers need no case.
    with op.batch_alter_table("assessments") as batch:
        batch.add_column(sa.Column("notes", sa.JSON(), nullable=False, server_default="[]"))


def downgrade() -> None:
    with op.batch_alter_table("assessments") as batch:
        batch.drop_column("notes")
