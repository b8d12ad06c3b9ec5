"""The rollup's chunk on SQLite follows how long a transaction held the write lock (issue #21)."""

from app.analytics.sqlite_turns import SQLITE_CHUNK, SQLITE_TURN_SECONDS, next_chunk


def test_a_chunk_that_held_the_lock_too_long_shrinks_in_proportion():
    assert next_chunk(1000, SQLITE_TURN_SECONDS * 4) == 250
    assert next_chunk(100, 1000.0) == 50  # never below the floor: the rollup keeps moving


def test_a_quick_chunk_grows_back_up_to_the_cap():
    assert next_chunk(250, SQLITE_TURN_SECONDS / 10) == 500
    assert next_chunk(SQLITE_CHUNK, 0.0) == SQLITE_CHUNK


def test_a_chunk_about_the_turn_stays():
    assert next_chunk(400, SQLITE_TURN_SECONDS * 0.8) == 400
