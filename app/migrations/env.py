from alembic import context

from app.kit.db import create_sync_engine
from app.kit.settings import get_settings
from app.models import Base
from app.qrcodes.search import is_search_index_name
from app.scans.partitions import is_partition_name

settings = context.config.attributes.get("settings") or get_settings()


def _described_by_the_models(name: str | None, type_: str, parent_names: dict) -> bool:
    # The scans' monthly partitions (PostgreSQL) come and go at run time; their parent is the model. The
    # codes' search index is SQL the models cannot say (an FTS5 table, trigram GIN indexes).
    partition = type_ == "table" and name is not None and is_partition_name(name)
    return not (partition or is_search_index_name(type_, name))


def run_migrations() -> None:
    engine = create_sync_engine(settings)
    with engine.connect() as connection:
        context.configure(
            connection=connection,
            target_metadata=Base.metadata,
            # SQLite alters tables by copying them; batch mode does that for us.
            render_as_batch=settings.is_sqlite,
            compare_type=True,
            include_name=_described_by_the_models,
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


run_migrations()
