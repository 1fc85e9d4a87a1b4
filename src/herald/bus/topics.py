"""Create herald's topics when they are missing (development and the embedded broker).

In production, topics come from Strimzi KafkaTopic resources with their own partitions and
retention; creating them here is then a no-op.
"""

from __future__ import annotations

import contextlib
import logging

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from herald.constants import ALL_TOPICS
from herald.settings import Settings

log = logging.getLogger(__name__)


async def ensure_topics(settings: Settings) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        wanted = [
            NewTopic(settings.topic(name), settings.topic_partitions, 1)
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
