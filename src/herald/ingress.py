"""The callback ingress: provider webhooks in, status events out on status-events.

Each callback is verified with the provider's own signature scheme before anything else;
answered 2xx only once the event is on Kafka (acks=all), so a provider retries whatever
herald did not durably take.
"""

from __future__ import annotations

import logging
import time

from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from herald import metrics
from herald.bus import codec
from herald.bus.batcher import KeyedBatcher
from herald.constants import PATH_CALLBACK_TWILIO, TOPIC_STATUS_EVENTS
from herald.domain.status import to_wire
from herald.providers import twilio
from herald.settings import Settings

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 64 * 1024


class Ingress:
    def __init__(self, *, settings: Settings, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.batcher = KeyedBatcher(
            producer=producer,
            topic=settings.topic(TOPIC_STATUS_EVENTS),
            encode=lambda events: codec.encode({"v": 1, "events": events}),
        )

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_CALLBACK_BYTES, middlewares=[metrics.observe_http]
        )
        app.router.add_post(PATH_CALLBACK_TWILIO, self.twilio)
        app.router.add_get("/healthz", _ok)
        app.router.add_get("/readyz", _ok)
        return app

    async def twilio(self, request: web.Request) -> web.Response:
        form = await request.post()
        params = {k: str(v) for k, v in form.items()}
        # Twilio signs the URL it was given: herald's public ingress URL plus path and query.
        url = f"{self.settings.ingress_url}{request.path_qs}"
        signature = request.headers.get("X-Twilio-Signature", "")
        token = self.settings.twilio_auth_token.value
        if not twilio.verify_signature(url, params, token, signature):
            metrics.CALLBACKS.labels(provider="twilio", outcome="rejected").inc()
            return _error(403, "signature", "X-Twilio-Signature does not match")
        mid = request.query.get("m", "")
        try:
            event = twilio.parse_callback(params, mid, int(time.time() * 1000))
        except twilio.CallbackError as exc:
            metrics.CALLBACKS.labels(provider="twilio", outcome="rejected").inc()
            return _error(400, "callback", exc.reason)
        if event is None:
            metrics.CALLBACKS.labels(provider="twilio", outcome="ignored").inc()
            return web.Response(status=204)
        try:
            await self.batcher.add(event.campaign_id, to_wire(event))
        except KafkaError:
            # Not durable: a 503 makes the provider retry the callback later.
            metrics.CALLBACKS.labels(provider="twilio", outcome="unavailable").inc()
            return _error(503, "kafka", "status events cannot be stored right now")
        metrics.CALLBACKS.labels(provider="twilio", outcome="accepted").inc()
        return web.Response(status=204)


async def _ok(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _error(status: int, field: str, message: str) -> web.Response:
    return web.json_response({"error": {"field": field, "message": message}}, status=status)
