"""batches: a request's many codes, and the row each came from

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-25 18:48:22.892089
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.kit.db

revision: str = '0005'
down_revision: str | None = '0004'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('batches',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('source', sa.String(length=8), nullable=False),
    sa.Column('formats', sa.JSON(), nullable=False),
    sa.Column('total', sa.Integer(), nullable=False),
    sa.Column('rejected', sa.JSON(), nullable=False),
    sa.Column('rejected_rows', sa.Integer(), nullable=False),
    sa.Column('created_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(
        ['workspace_id'], ['workspaces.id'], name=op.f('fk_batches_workspace_id_workspaces'), ondelete='CASCADE'
    ),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_batches'))
    )
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_batches_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('batch_items',
    sa.Column('batch_id', sa.Uuid(), nullable=False),
    sa.Column('row', sa.Integer(), autoincrement=False, nullable=False),
    sa.Column('code_id', sa.Uuid(), nullable=False),
    sa.ForeignKeyConstraint(
        ['batch_id'], ['batches.id'], name=op.f('fk_batch_items_batch_id_batches'), ondelete='CASCADE'
    ),
    sa.ForeignKeyConstraint(
        ['code_id'], ['qrcodes.id'], name=op.f('fk_batch_items_code_id_qrcodes'), ondelete='CASCADE'
    ),
    sa.PrimaryKeyConstraint('batch_id', 'row', name=op.f('pk_batch_items')),
    sa.UniqueConstraint('code_id', name=op.f('uq_batch_items_code_id'))
    )


def downgrade() -> None:
    op.drop_table('batch_items')
    with op.batch_alter_table('batches', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_batches_workspace_id'))

    op.drop_table('batches')
