"""A scan batch that runs out of time is published again, counted in its message, and given up after
MAX_TIMED_OUT_TRIES: never lost to Celery's acknowledgement at the hard limit, never retried for ever."""

from __future__ import annotations

from billiard.exceptions import TimeLimitExceeded

from tasks import scans


class _Recorder:
    def __init__(self) -> None:
        self.sent: list[dict] = []

    def apply_async(self, *, kwargs: dict, countdown: int) -> None:
        self.sent.append(kwargs)


def test_a_batch_past_the_hard_limit_is_published_again_with_its_try_counted():
    task = _Recorder()
    scans._ScanBatchTask.on_failure(task, TimeLimitExceeded(60), "id", (), {"events": ["e1", "e2"]}, None)
    assert task.sent == [{"events": ["e1", "e2"], "timed_out": 1}]


def test_other_failures_are_not_published_again_here():
    task = _Recorder()
    scans._ScanBatchTask.on_failure(task, ValueError("bug"), "id", (), {"events": ["e1"]}, None)
    assert task.sent == []


def test_a_batch_that_never_finishes_is_given_up_after_the_last_try():
    task = _Recorder()
    kwargs = {"events": ["e1"], "timed_out": scans.MAX_TIMED_OUT_TRIES - 2}
    scans._ScanBatchTask.on_failure(task, TimeLimitExceeded(60), "id", (), kwargs, None)
    assert task.sent == [{"events": ["e1"], "timed_out": scans.MAX_TIMED_OUT_TRIES - 1}]
    scans._ScanBatchTask.on_failure(task, TimeLimitExceeded(60), "id", (), task.sent[-1], None)
    assert len(task.sent) == 1
