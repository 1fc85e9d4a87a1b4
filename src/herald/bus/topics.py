"""Create herald's topics when they are missing: development and the embedded broker only.

In production, topics come from Strimzi KafkaTopic resources in deploy/ (their partitions,
replicas and retention); herald creating them would race the topic operator, so it leaves
them alone unless HERALD_KAFKA_CREATE_TOPICS says otherwise.
"""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from herald.bus.client import DEPENDENCY, connection_kwargs, transient
from herald.constants import ALL_TOPICS
from herald.retry import until_up
from herald.settings import Settings

log = logging.getLogger(__name__)

# The embedded broker has a single node.
REPLICATION_FACTOR = 1


async def ensure_topics(settings: Settings) -> None:
    if not settings.kafka_create_topics:
        log.info(
            "topics are not created by herald (deploy/ owns them; "
            "HERALD_KAFKA_CREATE_TOPICS=true creates missing ones)",
            extra={"event": "topics_not_created"},
        )
        return
    kwargs = connection_kwargs(settings)

    async def create_missing() -> None:
        admin = AIOKafkaAdminClient(**kwargs)
        try:
            await admin.start()
            existing = set(await admin.list_topics())
            wanted = [
                NewTopic(settings.topic(name), settings.topic_partitions, REPLICATION_FACTOR)
                for name in ALL_TOPICS
                if settings.topic(name) not in existing
            ]
            if wanted:
                # Another process may have created them first.
                with contextlib.suppress(TopicAlreadyExistsError):
                    await admin.create_topics(wanted)
                log.info("topics created", extra={"event": "topics_created"})
        finally:
            await admin.close()

    await until_up(
        DEPENDENCY,
        create_missing,
        timeout_s=settings.startup_timeout_s,
        transient=transient,
        where=settings.kafka_bootstrap,
    )
