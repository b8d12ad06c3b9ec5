import uuid
from datetime import UTC, date, datetime

from alembic import command
from sqlalchemy import insert, inspect, select, text

from app.analytics.models import RollupState, VisitorScan
from app.identity.models import Workspace
from app.kit.db import create_sync_engine, dialect_of
from app.kit.migrate import alembic_config, upgrade
from app.links.models import Link
from app.scans import partitions
from app.scans.models import Scan, VisitorSalt
from tests.conftest import fresh_database
from tests.integration.analytics_helpers import scan_row


def test_migrations_match_the_models(backend):
    """`alembic check` raises when the models have changes no migration carries."""
    command.check(alembic_config(backend.settings))


def test_0007_remembers_the_folded_visitors_of_salted_days_and_drops_the_index_on_scans(backend, tmp_path):
    with fresh_database(backend, tmp_path, revision="0006") as settings:
        engine = create_sync_engine(settings)
        try:
            workspace, link = uuid.uuid4(), uuid.uuid4()
            salted, unsalted = date(2026, 5, 4), date(2026, 5, 3)
            # Late in the UTC day: a zone conversion on the way would move it to the next day.
            at = {day: datetime(day.year, day.month, day.day, 23, 30, tzinfo=UTC) for day in (salted, unsalted)}
            scans = [
                scan_row(link, at[salted], visitor="folded"),
                scan_row(link, at[salted], visitor="bot", bot=True),
                scan_row(link, at[unsalted], visitor="salt-gone"),
                scan_row(link, at[salted], visitor="not-folded-yet"),
            ]
            with engine.begin() as connection:
                connection.execute(insert(Workspace), {"id": workspace, "name": "migrating"})
                connection.execute(insert(Link), {"id": link, "workspace_id": workspace, "slug": "migrating",
                                                  "target_url": "https://example.com/"})
                connection.execute(insert(VisitorSalt), {"day": salted, "salt": b"s" * 32})
                ids = [connection.execute(insert(Scan).returning(Scan.id), row).scalar_one() for row in scans]
                connection.execute(insert(RollupState), {"name": "scans", "last_scan_id": ids[2], "purge_cursor": 0,
                                                         "updated_at": datetime.now(UTC)})
            upgrade(settings)
            with engine.connect() as connection:
                remembered = set(connection.execute(select(VisitorScan.day, VisitorScan.visitor, VisitorScan.scan_id)))
            assert remembered == {(salted, "folded", ids[0])}
            assert "ix_scans_visitor" not in {index["name"] for index in inspect(engine).get_indexes("scans")}

            command.downgrade(alembic_config(settings), "0006")
            assert "ix_scans_visitor" in {index["name"] for index in inspect(engine).get_indexes("scans")}
        finally:
            engine.dispose()


def test_0008_gives_stored_scans_the_class_their_is_bot_says(backend, tmp_path):
    with fresh_database(backend, tmp_path, revision="0007") as settings:
        engine = create_sync_engine(settings)
        try:
            workspace, link = uuid.uuid4(), uuid.uuid4()
            at = datetime(2026, 5, 4, 12, tzinfo=UTC)
            with engine.begin() as connection:
                connection.execute(insert(Workspace), {"id": workspace, "name": "migrating"})
                connection.execute(insert(Link), {"id": link, "workspace_id": workspace, "slug": "migrating",
                                                  "target_url": "https://example.com/"})
                for row in (scan_row(link, at, visitor="person"), scan_row(link, at, visitor="bot", bot=True)):
                    connection.execute(insert(Scan.__table__).values(row))
            upgrade(settings)
            with engine.connect() as connection:
                classes = dict(connection.execute(select(Scan.visitor, Scan.agent_class)).all())
            assert classes == {"person": "person", "bot": "bot"}
            command.downgrade(alembic_config(settings), "0007")
            assert "agent_class" not in {column["name"] for column in inspect(engine).get_columns("scans")}
        finally:
            engine.dispose()


def test_0012_partitions_scans_by_month_on_postgresql_keeping_every_row_and_its_id(backend, tmp_path):
    with fresh_database(backend, tmp_path, revision="0010") as settings:
        engine = create_sync_engine(settings)
        try:
            workspace, link = uuid.uuid4(), uuid.uuid4()
            now = datetime.now(UTC)
            times = [datetime(2025, 1, 31, 23, 59, 59, 999999, tzinfo=UTC), datetime(2026, 2, 1, tzinfo=UTC),
                     datetime(2026, 2, 14, 12, tzinfo=UTC), now]
            with engine.begin() as connection:
                connection.execute(insert(Workspace), {"id": workspace, "name": "migrating"})
                connection.execute(insert(Link), {"id": link, "workspace_id": workspace, "slug": "migrating",
                                                  "target_url": "https://example.com/"})
                for i, at in enumerate(times):
                    connection.execute(insert(Scan.__table__).values(scan_row(link, at, visitor=f"v{i}")))

            def stored() -> list[tuple]:
                with engine.connect() as connection:
                    return connection.execute(select(Scan.id, Scan.event_id, Scan.scanned_at).order_by(Scan.id)).all()

            before = stored()
            upgrade(settings)
            assert stored() == before
            with engine.begin() as connection:
                if partitions.is_partitioned(connection):
                    # From the oldest scan's month to three months after the current one, none missing.
                    months = partitions.present(connection)
                    current = partitions.month_of(now)
                    assert months[0] == date(2025, 1, 1)
                    assert months == partitions.months_from(months[0], len(months))
                    assert months[-1] == partitions.months_from(current, 4)[-1]
                    assert connection.scalar(text("SELECT count(*) FROM scans_y2026m02")) == 2
                # The same event at the same time is stored once; a new scan gets an id after the others.
                again = {"event_id": before[1].event_id, "scanned_at": before[1].scanned_at}
                duplicate = (dialect_of(connection).insert(Scan.__table__).values(scan_row(link, times[1]) | again)
                             .on_conflict_do_nothing(index_elements=["event_id", "scanned_at"]).returning(Scan.id))
                assert connection.execute(duplicate).all() == []
            with engine.begin() as connection:
                new_id = connection.execute(insert(Scan).returning(Scan.id), scan_row(link, now)).scalar_one()
            assert new_id > before[-1].id
            after = stored()

            command.downgrade(alembic_config(settings), "0010")
            assert stored() == after
            assert {c["name"] for c in inspect(engine).get_unique_constraints("scans")} == {"uq_scans_event_id"}
        finally:
            engine.dispose()
