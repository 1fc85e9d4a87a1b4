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

from herald import metrics
from herald.bus import codec
from herald.constants import PATH_CALLBACK_TWILIO, TOPIC_STATUS_EVENTS
from herald.domain.status import to_wire
from herald.providers import twilio
from herald.settings import Settings

log = logging.getLogger(__name__)

MAX_CALLBACK_BYTES = 64 * 1024


class Ingress:
    def __init__(self, *, settings: Settings, producer: AIOKafkaProducer) -> None:
        self.settings = settings
        self.producer = producer

    def app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_CALLBACK_BYTES)
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
        await self.producer.send_and_wait(
            self.settings.topic(TOPIC_STATUS_EVENTS),
            codec.encode({"v": 1, "events": [to_wire(event)]}),
            key=codec.key(event.campaign_id),
        )
        metrics.CALLBACKS.labels(provider="twilio", outcome="accepted").inc()
        return web.Response(status=204)


async def _ok(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _error(status: int, field: str, message: str) -> web.Response:
    return web.json_response({"error": {"field": field, "message": message}}, status=status)
