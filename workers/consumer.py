"""The worker's consumer (celeryconfig.worker_consumer): Celery's, with one step changed for RabbitMQ.

Celery's native delayed delivery (the countdowns of retries and webhook back-offs on quorum queues) binds
every queue of the app to its delay exchanges when a worker starts, and fails for a queue nobody declared
yet: a worker of the qr queue starting before any scans worker or publisher logs "Native delayed delivery
will not be available". So this step first declares every queue (and the dead_letters queue the quorum
queues send a message past their delivery limit to), then lets Celery bind them. On Redis the step is not
included, as Celery's is not.
"""

from __future__ import annotations

from celery.worker.consumer import Consumer as CeleryConsumer
from celery.worker.consumer.delayed_delivery import DelayedDelivery
from kombu import Exchange, Queue

from celeryconfig import DEAD_LETTERS

_CELERY_STEP = "celery.worker.consumer.delayed_delivery:DelayedDelivery"

# Kept for an operator, consumed by no worker (docs/operations.md, "Choosing a broker").
DEAD_LETTER_QUEUE = Queue(
    DEAD_LETTERS, Exchange(DEAD_LETTERS, type="fanout"), routing_key="#", queue_arguments={"x-queue-type": "quorum"}
)


class DelayedDeliveryOnEveryQueue(DelayedDelivery):
    def start(self, c: CeleryConsumer) -> None:
        with c.app.connection_for_write() as connection:
            channel = connection.default_channel
            for queue in [DEAD_LETTER_QUEUE, *c.app.amqp.queues.values()]:
                queue.bind(channel).declare()
        super().start(c)


class Consumer(CeleryConsumer):
    class Blueprint(CeleryConsumer.Blueprint):
        default_steps = [
            f"{__name__}:DelayedDeliveryOnEveryQueue" if step == _CELERY_STEP else step
            for step in CeleryConsumer.Blueprint.default_steps
        ]
