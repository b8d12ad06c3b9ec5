"""a trigram index for the codes' search (app/qrcodes/search.py)

SQLite: an FTS5 table with the `trigram` tokenizer over each code's title, content and slug, filled from the
existing codes and kept in step by triggers (on qrcodes, and on links for a changed slug); its rowids map to
code ids through qrcode_search, whose INTEGER PRIMARY KEY survives VACUUM. PostgreSQL: the pg_trgm extension
(trusted since PostgreSQL 13: the database's owner may create it) and GIN indexes on the lowered columns,
which `lower(column) LIKE '%…%'` uses.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08 00:45:00.000000
"""
from collections.abc import Sequence

from alembic import op

revision: str = '0013'
down_revision: str | None = '0012'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# Names as in app/qrcodes/search.py, written out: a migration does not change with the code.
_POSTGRES_INDEXES = {
    "ix_qrcodes_title_trgm": ("qrcodes", "title"),
    "ix_qrcodes_content_trgm": ("qrcodes", "content"),
    "ix_links_slug_trgm": ("links", "slug"),
}
_ROW_OF = "(SELECT rowid FROM qrcode_search WHERE code_id = {code}.id)"
_TEXT_OF_NEW = (
    "INSERT INTO qrcode_search_text (rowid, title, content, slug) VALUES ("
    + _ROW_OF.format(code="new")
    + ", new.title, new.content, (SELECT slug FROM links WHERE id = new.link_id));"
)
_SQLITE = [
    "CREATE TABLE qrcode_search (rowid INTEGER PRIMARY KEY, code_id CHAR(32) NOT NULL UNIQUE)",
    "CREATE VIRTUAL TABLE qrcode_search_text USING fts5(title, content, slug, tokenize = 'trigram')",
    "INSERT INTO qrcode_search (code_id) SELECT id FROM qrcodes",
    "INSERT INTO qrcode_search_text (rowid, title, content, slug) SELECT s.rowid, q.title, q.content, l.slug "
    "FROM qrcode_search s JOIN qrcodes q ON q.id = s.code_id LEFT JOIN links l ON l.id = q.link_id",
    "CREATE TRIGGER qrcode_search_insert AFTER INSERT ON qrcodes BEGIN "
    "INSERT INTO qrcode_search (code_id) VALUES (new.id); " + _TEXT_OF_NEW + " END",
    "CREATE TRIGGER qrcode_search_update AFTER UPDATE OF title, content, link_id ON qrcodes BEGIN "
    "DELETE FROM qrcode_search_text WHERE rowid = " + _ROW_OF.format(code="old") + "; " + _TEXT_OF_NEW + " END",
    "CREATE TRIGGER qrcode_search_delete AFTER DELETE ON qrcodes BEGIN "
    "DELETE FROM qrcode_search_text WHERE rowid = " + _ROW_OF.format(code="old") + "; "
    "DELETE FROM qrcode_search WHERE code_id = old.id; END",
    "CREATE TRIGGER qrcode_search_slug AFTER UPDATE OF slug ON links BEGIN "
    "UPDATE qrcode_search_text SET slug = new.slug WHERE rowid IN (SELECT s.rowid FROM qrcode_search s "
    "JOIN qrcodes q ON q.id = s.code_id WHERE q.link_id = new.id); END",
]


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for statement in _SQLITE:
            op.execute(statement)
        return
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    for name, (table, column) in _POSTGRES_INDEXES.items():
        op.execute(f"CREATE INDEX {name} ON {table} USING gin (lower({column}) gin_trgm_ops)")


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        for trigger in ("qrcode_search_insert", "qrcode_search_update", "qrcode_search_delete",
                        "qrcode_search_slug"):
            op.execute(f"DROP TRIGGER {trigger}")
        op.execute("DROP TABLE qrcode_search_text")
        op.execute("DROP TABLE qrcode_search")
        return
    # The extension stays: other schemas of the database may use it.
    for name in _POSTGRES_INDEXES:
        op.execute(f"DROP INDEX {name}")
