"""The dead_letters queue on RabbitMQ: where a quorum queue puts a message past its delivery limit
(celeryconfig.RABBITMQ_DELIVERY_LIMIT), kept for an operator instead of dropped. No worker consumes it
(docs/operations.md says how to look at it and send it back)."""

from __future__ import annotations

from celery import bootsteps
from celery.worker.consumer import Tasks
from kombu import Exchange, Queue

from celeryconfig import DEAD_LETTERS

DEAD_LETTER_QUEUE = Queue(
    DEAD_LETTERS, Exchange(DEAD_LETTERS, type="fanout"), routing_key="#", queue_arguments={"x-queue-type": "quorum"}
)


class DeclareDeadLetters(bootsteps.StartStopStep):
    """Declares the exchange the task queues dead-letter to, and its queue, each time the worker's consumer
    connects (RabbitMQ discards a dead letter whose exchange does not exist)."""

    requires = (Tasks,)

    def include_if(self, c: object) -> bool:
        return c.app.connection_for_write().transport.driver_type == "amqp"

    def start(self, c: object) -> None:
        DEAD_LETTER_QUEUE.bind(c.connection.default_channel).declare()
