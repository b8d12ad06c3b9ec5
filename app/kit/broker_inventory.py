"""What the broker holds for a queue.

On Redis, every message: those waiting in the queue, and those a worker took and has not acknowledged yet
(kombu's Redis transport keeps each in its `unacked` hash, with the time it was taken in `unacked_index`,
until the ack). On RabbitMQ, AMQP reads a queue only by consuming it (a browse would redeliver every
message, counting against the quorum queues' delivery limit) and cannot look at what a consumer holds; so
there the inventory is how many messages wait (a passive queue declare), and the messages the workers took
and have not started, as they answer Celery's `inspect reserved` (the workers' own prefetch, management
plugin or not). app/qrcodes/recovery.py says what the republishers make of each.

The republishers ask it before they publish a render again: a code whose message is held is waiting, not
lost, and publishing it again would only grow the queue it waits in (issue #14, item 7).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass

from celery import Celery
from kombu.transport.virtual import Message

# Messages read per round trip: a backlog of any length is read in bounded pieces.
_PAGE = 500


@dataclass(frozen=True)
class HeldMessage:
    task: str
    kwargs: dict
    # When a worker took it (seconds since the epoch), or None while it waits in the queue.
    taken_at: float | None


def inventory_of(celery: Celery) -> RedisInventory | RabbitMQInventory:
    """The inventory of the app's broker."""
    with celery.connection_for_read() as connection:
        rabbitmq = connection.transport.driver_type == "amqp"
    return RabbitMQInventory(celery) if rabbitmq else RedisInventory(celery)


class RabbitMQInventory:
    lists_messages = False
    # How long the workers have to answer `inspect reserved`: each answers from its main process, at once
    # unless the host is very busy; one that does not answer in time is taken to hold nothing.
    INSPECT_TIMEOUT_SECONDS = 2.0

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def held(self, queue: str) -> Iterator[HeldMessage]:
        """The queue's messages the workers took and have not started (their prefetch)."""
        replies = self._celery.control.inspect(timeout=self.INSPECT_TIMEOUT_SECONDS).reserved() or {}
        for requests in replies.values():
            for request in requests:
                # A countdown's message arrives through the delay exchanges, its routing key prefixed.
                if (request.get("delivery_info") or {}).get("routing_key", "").rsplit(".", 1)[-1] == queue:
                    yield HeldMessage(task=request.get("name", ""), kwargs=request.get("kwargs") or {}, taken_at=None)

    def waiting(self, queue: str) -> int:
        """Messages ready in the queue, not those consumers hold; 0 for a queue not declared yet."""
        with self._celery.connection_for_read() as connection:
            try:
                _name, messages, _consumers = connection.default_channel.queue_declare(queue, passive=True)
            except connection.channel_errors:  # 404: nobody declared it yet, so nothing waits in it
                return 0
        return messages


class RedisInventory:
    lists_messages = True

    def __init__(self, celery: Celery) -> None:
        self._celery = celery

    def held(self, queue: str) -> Iterator[HeldMessage]:
        """The queue's waiting messages first, then those taken and unacknowledged. A message a worker
        takes meanwhile moves from the one to the other, so it is seen at least once."""
        with self._celery.connection_for_read() as connection:
            channel = connection.default_channel
            client = channel.client
            # kombu's own names for the queue's lists (one per priority step) and its unacked indices.
            for key in dict.fromkeys(channel._q_for_pri(queue, step) for step in channel.priority_steps):
                start = 0
                while raws := client.lrange(_prefixed(client, "LRANGE", key), start, start + _PAGE - 1):
                    for raw in raws:
                        yield self._read(channel, json.loads(raw), None)
                    start += _PAGE
            taken = client.zrange(channel.unacked_index_key, 0, -1, withscores=True)
            taken_at = {tag.decode(): score for tag, score in taken}
            for tag, raw in client.hscan_iter(_prefixed(client, "HSCAN", channel.unacked_key), count=_PAGE):
                payload, _exchange, routing_key = json.loads(raw)
                if routing_key == queue:
                    yield self._read(channel, payload, taken_at.get(tag.decode(), 0.0))

    @staticmethod
    def _read(channel: object, payload: dict, taken_at: float | None) -> HeldMessage:
        message = Message(payload, channel=channel)
        _args, kwargs, _embed = message.decode()  # Celery's message protocol 2: body is (args, kwargs, embed)
        return HeldMessage(task=message.headers.get("task", ""), kwargs=kwargs, taken_at=taken_at)


BrokerInventory = RedisInventory | RabbitMQInventory


def _prefixed(client: object, command: str, key: str) -> str:
    """The key as Redis knows it: kombu's client adds the transport's `global_keyprefix` (instances sharing
    a Redis) to the commands kombu itself sends, which do not include LRANGE and HSCAN."""
    prefix = getattr(client, "global_keyprefix", "")
    return key if not prefix or command in getattr(client, "PREFIXED_SIMPLE_COMMANDS", ()) else prefix + key
