"""render claims: who renders a code since when, and how many renders of it started

A pool process SIGKILLed mid-render can lose its message (celery#3541), and a hard time limit
acknowledges it; the claim tells the republisher such a render from one merely queued, and the count
makes a code that kills its process `failed` after a bounded number of attempts (app/qrcodes/claims.py).

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07 19:30:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.kit.db

revision: str = '0010'
down_revision: str | None = '0009'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('qrcodes', schema=None) as batch_op:
        batch_op.add_column(sa.Column('render_claimed_by', sa.String(length=255), nullable=True))
        batch_op.add_column(sa.Column('render_claimed_at', app.kit.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('render_attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.create_index('ix_qrcodes_status_render_claimed', ['status', 'render_claimed_at'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('qrcodes', schema=None) as batch_op:
        batch_op.drop_index('ix_qrcodes_status_render_claimed')
        batch_op.drop_column('render_attempts')
        batch_op.drop_column('render_claimed_at')
        batch_op.drop_column('render_claimed_by')
