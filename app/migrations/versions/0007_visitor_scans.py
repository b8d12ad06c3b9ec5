"""visitor_scans: the rollup's own record of each day's visitors, instead of an index on scans.visitor

A random-order index made every stored scan cost a page write once it outgrew the cache
(app/analytics/models.py, VisitorScan). The table starts with the folded non-bot scans of the days whose
visitor salt still exists: the only ones a new scan's visitor can match.

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-26 07:45:00.000000
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = '0007'
down_revision: str | None = '0006'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('visitor_scans',
    sa.Column('day', sa.Date(), nullable=False),
    sa.Column('visitor', sa.String(length=32), nullable=False),
    sa.Column('scan_id', sa.BigInteger(), nullable=False),
    sa.PrimaryKeyConstraint('day', 'visitor', 'scan_id', name=op.f('pk_visitor_scans'))
    )
    # Scans are stored in UTC (SQLite: 'YYYY-MM-DD HH:MM:SS.ffffff' text; PostgreSQL: timestamptz).
    day = "date(s.scanned_at)" if op.get_bind().dialect.name == 'sqlite' else "(s.scanned_at AT TIME ZONE 'UTC')::date"
    op.execute(
        f"INSERT INTO visitor_scans (day, visitor, scan_id) "
        f"SELECT {day}, s.visitor, s.id FROM scans s "
        f"WHERE NOT s.is_bot AND s.id <= (SELECT coalesce(max(last_scan_id), 0) FROM analytics_state) "
        f"AND {day} >= (SELECT min(day) FROM visitor_salts)"
    )
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.drop_index('ix_scans_visitor')


def downgrade() -> None:
    with op.batch_alter_table('scans', schema=None) as batch_op:
        batch_op.create_index('ix_scans_visitor', ['visitor'], unique=False)

    op.drop_table('visitor_scans')
