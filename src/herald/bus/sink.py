"""The status sink of a delivery pass (ports.StatusSink): the status-events topic."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaProducer

from herald.bus import codec, envelope
from herald.constants import TOPIC_STATUS_EVENTS
from herald.domain.status import StatusEvent
from herald.settings import Settings


class StatusTopic:
    """One record per publish, keyed by campaign (its events fold in order), acknowledged
    before publish returns."""

    def __init__(self, producer: AIOKafkaProducer, settings: Settings) -> None:
        self.producer = producer
        self.topic = settings.topic(TOPIC_STATUS_EVENTS)

    async def publish(self, campaign_id: str, events: Sequence[StatusEvent]) -> None:
        if events:
            value = envelope.status_value(events)
            await self.producer.send_and_wait(self.topic, value, key=codec.key(campaign_id))
