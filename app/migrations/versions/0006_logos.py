"""logos: images a workspace places in the centre of its codes

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25 18:47:21.599632
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.kit.db

revision: str = '0006'
down_revision: str | None = '0005'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('logos',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('media_type', sa.String(length=32), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('size_bytes', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('created_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.ForeignKeyConstraint(
        ['workspace_id'], ['workspaces.id'], name=op.f('fk_logos_workspace_id_workspaces'), ondelete='CASCADE'
    ),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_logos'))
    )
    with op.batch_alter_table('logos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_logos_workspace_id'), ['workspace_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('logos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_logos_workspace_id'))

    op.drop_table('logos')
