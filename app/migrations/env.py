from alembic import context

from app.kit.db import create_sync_engine
from app.kit.settings import get_settings
from app.models import Base

settings = context.config.attributes.get("settings") or get_settings()


def run_migrations() -> None:
    engine = create_sync_engine(settings)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            # SQLite alters tables by copying them; batch mode does that for us.
            render_as_batch=settings.is_sqlite,
            compare_type=True,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
