"""kombu's Redis transport, changed so a broker restart loses no message (celeryconfig.py registers it for
redis:// and rediss:// broker URLs).

A worker holds its unacknowledged messages in kombu's `unacked` hash (a message stays there until it is
acknowledged, or put back in its queue). When the broker goes away, Celery closes the worker's connection,
and kombu (5.x) then goes wrong in three ways, each changed here:

1. Closing a channel puts its unacknowledged messages back in their queues, which fails with the broker
   away ("Restoring N unacknowledged message(s)", then nothing): they wait in `unacked` for
   `visibility_timeout` (15 min). Here the tags whose put-back failed are kept (`_AWAITING_RESTORE`) and
   put back by the first channel this process opens once the broker answers again: the reconnect.
2. A message acknowledged or rejected after its channel closed (Celery cancels the running task at the
   connection loss, and the end of its pool process is reported later, as a lost worker: reject and
   requeue) goes through the closed channel, which kombu left without its connection: an AttributeError
   ('NoneType' object has no attribute 'client'), which Celery does not expect from an acknowledgement:
   "Unrecoverable error", and the worker's main process exits. Here a channel keeps its connection
   parameters, so a late acknowledgement or requeue reaches the broker (or fails as a connection error).
3. A requeue puts the message back in one transaction that deletes it from `unacked`, then pushes it to
   the queues its routing finds; a routing lookup that raises is logged ("Could not restore message") and
   swallowed, and the transaction goes on: deleted, pushed nowhere. A closed channel has lost its exchange
   types and broker state, so its lookups raise: here it keeps them.

Putting back is one Redis transaction per message that reads it from `unacked` first (WATCH), so a message
put back twice (a late requeue and the reconnect's), or acknowledged in between, is pushed at most once.
"""

from __future__ import annotations

import structlog
from kombu.transport import redis

log = structlog.get_logger(__name__)

# Delivery tags of messages this process held when its broker connection was lost, whose put-back failed:
# (the `unacked` hash's key, the tag). Process-wide: the worker opens a new connection (a new Transport)
# on each reconnect.
_AWAITING_RESTORE: set[tuple[str, str]] = set()


class QoS(redis.QoS):
    def restore_unacked(self, client: object = None) -> None:
        try:
            super().restore_unacked(client)
        except Exception as exc:  # noqa: BLE001 - whatever the cause, the messages must not be dropped
            tags = list(self._delivered)
            _AWAITING_RESTORE.update((self.unacked_key, tag) for tag in tags)
            self._delivered.clear()
            log.warning("broker_restore_deferred", messages=len(tags), error=repr(exc))


class Channel(redis.Channel):
    QoS = QoS

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # connects: the broker answers
        # What a late acknowledgement or requeue needs once the channel is closed (kombu forgets it then).
        self._kept_connparams = {mode: redis.Channel._connparams(self, asynchronous=mode) for mode in (False, True)}
        self._kept_state = self.connection.state
        self._restore_awaiting()

    def _connparams(self, asynchronous: bool = False) -> dict[str, object]:
        if self.connection is not None and self.connection.client is not None:
            return super()._connparams(asynchronous=asynchronous)
        return dict(self._kept_connparams[asynchronous])

    @property
    def state(self) -> object:
        return self.connection.state if self.connection is not None else self._kept_state

    def _restore_awaiting(self) -> None:
        pending = [tag for key, tag in list(_AWAITING_RESTORE) if key == self.unacked_key]
        for tag in pending:
            try:
                self.qos.restore_by_tag(tag)
            except self.connection_errors:
                return  # gone again: the next channel tries
            _AWAITING_RESTORE.discard((self.unacked_key, tag))
        if pending:
            log.info("broker_restore_done", messages=len(pending))

    def close(self) -> None:
        exchange_types = self.exchange_types
        super().close()
        if exchange_types is not None:
            self.exchange_types = exchange_types


class Transport(redis.Transport):
    Channel = Channel
