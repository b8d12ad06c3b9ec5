"""analytics: hourly and daily buckets, the rollup's state, an index on scans.visitor for the rollup

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 18:46:46.712982
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.kit.db

revision: str = '0004'
down_revision: str | None = '0003'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('analytics_state',
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('last_scan_id', sa.BigInteger(), nullable=False),
    sa.Column('as_of', app.kit.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('closed_before', sa.Date(), nullable=True),
    sa.Column('purged_before', sa.Date(), nullable=True),
    sa.Column('purge_cursor', sa.BigInteger(), nullable=False),
    sa.Column('updated_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_analytics_state'))
    )
    op.create_table('analytics_daily',
    sa.Column('dimension', sa.String(length=8), nullable=False),
    sa.Column('start', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('link_id', sa.Uuid(), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('scans', sa.Integer(), nullable=False),
    sa.Column('bots', sa.Integer(), nullable=False),
    sa.Column('visitors', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(
        ['link_id'], ['links.id'], name=op.f('fk_analytics_daily_link_id_links'), ondelete='CASCADE'
    ),
    sa.PrimaryKeyConstraint('link_id', 'dimension', 'start', 'value', name=op.f('pk_analytics_daily'))
    )
    op.create_table('analytics_hourly',
    sa.Column('dimension', sa.String(length=8), nullable=False),
    sa.Column('start', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('link_id', sa.Uuid(), nullable=False),
    sa.Column('value', sa.String(length=255), nullable=False),
    sa.Column('scans', sa.Integer(), nullable=False),
    sa.Column('bots', sa.Integer(), nullable=False),
    sa.Column('visitors', sa.Integer(), nullable=False),
    sa.Column('first_seen', sa.Integer(), nullable=False),
    sa.Column('last_seen', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(
        ['link_id'], ['links.id'], name=op.f('fk_analytics_hourly_link_id_links'), ondelete='CASCADE'
    ),
    sa.PrimaryKeyConstraint('dimension', 'start', 'link_id', 'value', name=op.f('pk_analytics_hourly'))
    )
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.create_index('ix_scans_visitor', ['visitor'], unique=False)

    if op.get_bind().dialect.name == 'postgresql':
        # Rollups add to the same buckets again and again (today's, every minute): room on each page lets
        # PostgreSQL update a row in place (a HOT update) instead of adding a primary-key entry per update.
        for table in ('analytics_hourly', 'analytics_daily'):
            op.execute(f'ALTER TABLE {table} SET (fillfactor = 70)')



def downgrade() -> None:
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.drop_index('ix_scans_visitor')

    op.drop_table('analytics_hourly')
    op.drop_table('analytics_daily')
    op.drop_table('analytics_state')
