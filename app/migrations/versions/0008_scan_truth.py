"""scans.agent_class: person, bot or unknown (app/scans/agents.py)

Existing rows get the class their is_bot says; `qrflow scans reclassify` then judges them again with the
current lists, and finds the unknown ones.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07 19:50:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0008'
down_revision: str | None = '0007'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.add_column(sa.Column('agent_class', sa.String(length=8), server_default='person', nullable=False))
    op.execute("UPDATE scans SET agent_class = 'bot' WHERE is_bot")


def downgrade() -> None:
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.drop_column('agent_class')
