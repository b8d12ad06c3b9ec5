"""Alembic, driven from code: the migrations ship inside the package, so `qrflow migrate` works anywhere."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.kit.db import make_private
from app.kit.settings import Settings

MIGRATIONS = Path(__file__).resolve().parents[1] / "migrations"  # app/migrations, shipped as package data


def alembic_config(settings: Settings) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["settings"] = settings
    return config


def upgrade(settings: Settings, revision: str = "head") -> None:
    make_private(settings)
    command.upgrade(alembic_config(settings), revision)
