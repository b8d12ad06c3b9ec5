"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-25 10:29:46.017406
"""
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import app.kit.db

revision: str = '0001'
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('workspaces',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=False),
    sa.Column('created_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_workspaces')),
    sa.UniqueConstraint('name', name=op.f('uq_workspaces_name'))
    )
    op.create_table('api_keys',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('prefix', sa.String(length=16), nullable=False),
    sa.Column('key_hash', sa.String(length=64), nullable=False),
    sa.Column('scope', sa.String(length=10), nullable=False),
    sa.Column('name', sa.String(length=100), nullable=True),
    sa.Column('created_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('last_used_at', app.kit.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('revoked_at', app.kit.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(
        ['workspace_id'], ['workspaces.id'], name=op.f('fk_api_keys_workspace_id_workspaces'), ondelete='CASCADE'
    ),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_api_keys')),
    sa.UniqueConstraint('prefix', name=op.f('uq_api_keys_prefix'))
    )
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_api_keys_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('links',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('slug', sa.String(length=64), nullable=False),
    sa.Column('target_url', sa.Text(), nullable=False),
    sa.Column('created_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', app.kit.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(
        ['workspace_id'], ['workspaces.id'], name=op.f('fk_links_workspace_id_workspaces'), ondelete='CASCADE'
    ),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_links')),
    sa.UniqueConstraint('slug', name=op.f('uq_links_slug'))
    )
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_links_workspace_id'), ['workspace_id'], unique=False)

    op.create_table('qrcodes',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('workspace_id', sa.Uuid(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('data', sa.JSON(), nullable=False),
    sa.Column('content', sa.Text(), nullable=False),
    sa.Column('style', sa.JSON(), nullable=False),
    sa.Column('title', sa.String(length=200), nullable=True),
    sa.Column('link_id', sa.Uuid(), nullable=True),
    sa.Column('status', sa.String(length=10), nullable=False),
    sa.Column('error', sa.Text(), nullable=True),
    sa.Column('images', sa.JSON(), nullable=False),
    sa.Column('render_requested_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('rendered_at', app.kit.db.UTCDateTime(timezone=True), nullable=True),
    sa.Column('created_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', app.kit.db.UTCDateTime(timezone=True), nullable=False),
    sa.Column('deleted_at', app.kit.db.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['link_id'], ['links.id'], name=op.f('fk_qrcodes_link_id_links')),
    sa.ForeignKeyConstraint(
        ['workspace_id'], ['workspaces.id'], name=op.f('fk_qrcodes_workspace_id_workspaces'), ondelete='CASCADE'
    ),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_qrcodes')),
    sa.UniqueConstraint('link_id', name=op.f('uq_qrcodes_link_id'))
    )
    with op.batch_alter_table('qrcodes', schema=None) as batch_op:
        batch_op.create_index('ix_qrcodes_status_render_requested', ['status', 'render_requested_at'], unique=False)
        batch_op.create_index('ix_qrcodes_workspace_created', ['workspace_id', 'created_at', 'id'], unique=False)

    op.create_table('qrcode_tags',
    sa.Column('code_id', sa.Uuid(), nullable=False),
    sa.Column('tag', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(
        ['code_id'], ['qrcodes.id'], name=op.f('fk_qrcode_tags_code_id_qrcodes'), ondelete='CASCADE'
    ),
    sa.PrimaryKeyConstraint('code_id', 'tag', name=op.f('pk_qrcode_tags'))
    )
    with op.batch_alter_table('qrcode_tags', schema=None) as batch_op:
        batch_op.create_index('ix_qrcode_tags_tag', ['tag', 'code_id'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('qrcode_tags', schema=None) as batch_op:
        batch_op.drop_index('ix_qrcode_tags_tag')

    op.drop_table('qrcode_tags')
    with op.batch_alter_table('qrcodes', schema=None) as batch_op:
        batch_op.drop_index('ix_qrcodes_workspace_created')
        batch_op.drop_index('ix_qrcodes_status_render_requested')

    op.drop_table('qrcodes')
    with op.batch_alter_table('links', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_links_workspace_id'))

    op.drop_table('links')
    with op.batch_alter_table('api_keys', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_api_keys_workspace_id'))

    op.drop_table('api_keys')
    op.drop_table('workspaces')
