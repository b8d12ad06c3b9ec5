"""people: accounts that sign in to the dashboard, each in a workspace with a role

Revision ID: 0011_people
Revises: 0010
Create Date: 2026-12-07 23:10:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.kit.db

revision: str = '0011_people'
down_revision: str | None = '0010'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        'people',
        sa.Column('id', sa.Uuid(), nullable=False),
        sa.Column('workspace_id', sa.Uuid(), nullable=False),
        sa.Column('email', sa.String(length=254), nullable=False),
        sa.Column('password_hash', sa.String(length=255), nullable=False),
        sa.Column('role', sa.String(length=10), nullable=False),
        sa.Column('must_change_password', sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column('disabled_at', app.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.Column('created_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
        sa.Column('last_sign_in_at', app.kit.db.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(['workspace_id'], ['workspaces.id'], name=op.f('fk_people_workspace_id_workspaces'),
                                ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_people')),
        sa.UniqueConstraint('email', name=op.f('uq_people_email')),
    )
    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_people_workspace_id'), ['workspace_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('people', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_people_workspace_id'))
    op.drop_table('people')
