"""scans partitioned by month on PostgreSQL; the dedup key is (event_id, scanned_at) on both backends

PostgreSQL: the plain table's rows move into a table range-partitioned on scanned_at, one partition per UTC
month from the oldest scan's to AHEAD months after the current one (or the newest scan's, if later); the
primary key becomes (id, scanned_at) and the unique key (event_id, scanned_at), as a partitioned table
wants the partition key in both. Ids and their sequence stay, so the rollups' watermark still holds.
SQLite keeps a plain table, with the same unique key (app/scans/partitions.py says why that keeps storage
exactly once).

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07 23:30:00.000000
"""
from collections.abc import Sequence
from datetime import date

from alembic import op
from sqlalchemy import text

revision: str = '0012'
down_revision: str | None = '0011'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AHEAD = 3  # months; afterwards beat's scans.create_partitions keeps them coming
_SCAN_INDEX = "CREATE INDEX ix_scans_link_scanned ON scans (link_id, scanned_at, event_id)"
_LINK_KEY = ("ALTER TABLE scans ADD CONSTRAINT fk_scans_link_id_links FOREIGN KEY (link_id) "
             "REFERENCES links (id) ON DELETE CASCADE")


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table('scans', schema=None) as batch_op:
            batch_op.drop_constraint('uq_scans_event_id', type_='unique')
            batch_op.create_unique_constraint('uq_scans_event_id_scanned_at', ['event_id', 'scanned_at'])
        return
    connection = op.get_bind()
    # No scan may be stored between the copy and the DROP: writers wait (readers do not) until this commits.
    op.execute("LOCK TABLE scans IN EXCLUSIVE MODE")
    # The sequence would go with the old table: it belongs to scans.id.
    op.execute("ALTER SEQUENCE scans_id_seq OWNED BY NONE")
    op.execute("CREATE TABLE scans_partitioned (LIKE scans INCLUDING DEFAULTS) PARTITION BY RANGE (scanned_at)")
    oldest, newest, today = connection.execute(text(
        "SELECT min(scanned_at AT TIME ZONE 'UTC')::date, max(scanned_at AT TIME ZONE 'UTC')::date, "
        "(now() AT TIME ZONE 'UTC')::date FROM scans"
    )).one()
    first = _month(oldest or today)
    last = max(_month(newest or today), _shift(_month(today), AHEAD))
    month = first
    while month <= last:
        following = _shift(month, 1)
        op.execute(f"CREATE TABLE scans_y{month.year:04d}m{month.month:02d} PARTITION OF scans_partitioned "
                   f"FOR VALUES FROM ('{month} 00:00:00+00') TO ('{following} 00:00:00+00')")
        month = following
    # Indexes and keys after the copy: built once over each partition, not row by row.
    op.execute("INSERT INTO scans_partitioned SELECT * FROM scans")
    op.execute("DROP TABLE scans")
    op.execute("ALTER TABLE scans_partitioned RENAME TO scans")
    op.execute("ALTER TABLE scans ADD CONSTRAINT pk_scans PRIMARY KEY (id, scanned_at)")
    op.execute("ALTER TABLE scans ADD CONSTRAINT uq_scans_event_id_scanned_at UNIQUE (event_id, scanned_at)")
    op.execute(_LINK_KEY)
    op.execute(_SCAN_INDEX)
    op.execute("ALTER SEQUENCE scans_id_seq OWNED BY scans.id")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        with op.batch_alter_table('scans', schema=None) as batch_op:
            batch_op.drop_constraint('uq_scans_event_id_scanned_at', type_='unique')
            batch_op.create_unique_constraint('uq_scans_event_id', ['event_id'])
        return
    op.execute("LOCK TABLE scans IN EXCLUSIVE MODE")
    op.execute("ALTER SEQUENCE scans_id_seq OWNED BY NONE")
    op.execute("CREATE TABLE scans_plain (LIKE scans INCLUDING DEFAULTS)")
    op.execute("INSERT INTO scans_plain SELECT * FROM scans")
    op.execute("DROP TABLE scans")  # and its partitions
    op.execute("ALTER TABLE scans_plain RENAME TO scans")
    op.execute("ALTER TABLE scans ADD CONSTRAINT pk_scans PRIMARY KEY (id)")
    op.execute("ALTER TABLE scans ADD CONSTRAINT uq_scans_event_id UNIQUE (event_id)")
    op.execute(_LINK_KEY)
    op.execute(_SCAN_INDEX)
    op.execute("ALTER SEQUENCE scans_id_seq OWNED BY scans.id")


def _month(day: date) -> date:
    return day.replace(day=1)


def _shift(month: date, months: int) -> date:
    index = month.year * 12 + month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)
