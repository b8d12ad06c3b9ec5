"""scans: stored scan events, visitor salts, link limits and scan counts

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25 18:24:33.459083
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.kit.db

revision: str = '0003'
down_revision: str | None = '0002'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('visitor_salts',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('salt', sa.LargeBinary(length=32), nullable=False),
    sa.PrimaryKeyConstraint('day', name=op.f('pk_visitor_salts'))
    )
    op.create_table('scans',
    sa.Column('id', sa.BigInteger().with_variant(sa.Integer(), 'sqlite'), autoincrement=True, nullable=False),
    sa.Column('event_id', sa.Uuid(), nullable=False),
    sa.Column('link_id', sa.Uuid(), nullable=False),
    sa.Column('scanned_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('stored_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('user_agent', sa.Text(), nullable=True),
    sa.Column('referrer', sa.Text(), nullable=True),
    sa.Column('referrer_host', sa.String(length=255), nullable=True),
    sa.Column('browser', sa.String(length=64), nullable=True),
    sa.Column('os', sa.String(length=64), nullable=True),
    sa.Column('device', sa.String(length=8), nullable=False),
    sa.Column('is_bot', sa.Boolean(), nullable=False),
    sa.Column('country', sa.String(length=2), nullable=True),
    sa.Column('visitor', sa.String(length=32), nullable=False),
    sa.Column('ip_anonymized', sa.String(length=64), nullable=True),
    sa.ForeignKeyConstraint(['link_id'], ['links.id'], name=op.f('fk_scans_link_id_links'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_scans')),
    sa.UniqueConstraint('event_id', name=op.f('uq_scans_event_id'))
    )
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.create_index('ix_scans_link_scanned', ['link_id', 'scanned_at', 'event_id'], unique=False)

    # Existing links get the defaults (server_default) so the columns can be NOT NULL.
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.add_column(sa.Column('forward_query', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('disabled', sa.Boolean(), nullable=False, server_default=sa.false()))
        batch_op.add_column(sa.Column('expires_at', app.kit.db.UTCDateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('max_scans', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('scans_total', sa.Integer(), nullable=False, server_default='0'))



def downgrade() -> None:
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_column('scans_total')
        batch_op.drop_column('max_scans')
        batch_op.drop_column('expires_at')
        batch_op.drop_column('disabled')
        batch_op.drop_column('forward_query')

    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.drop_index('ix_scans_link_scanned')

    op.drop_table('scans')
    op.drop_table('visitor_salts')
