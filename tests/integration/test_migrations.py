from alembic import command

from app.migrate import alembic_config


def test_migrations_match_the_models(backend):
    """`alembic check` raises when the models have changes no migration carries."""
    command.check(alembic_config(backend.settings))
