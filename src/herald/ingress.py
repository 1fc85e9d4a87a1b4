"""The callback ingress: provider webhooks in, status events out on status-events.

Each callback is verified with its provider's own signature scheme before anything else (a
bad or missing signature is a 401 and nothing is published), then parsed into status events
and answered 2xx only once they are on Kafka (acks=all), so a provider retries whatever
herald did not durably take. Batched webhooks (WhatsApp, SendGrid) are taken whole. Folding
is left to the status consumer, so the ingress answers fast.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Sequence

import anyio
import orjson
from aiohttp import web
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from herald import metrics
from herald.bus import envelope
from herald.bus.batcher import KeyedBatcher
from herald.constants import (
    PATH_CALLBACK_EMAIL,
    PATH_CALLBACK_RBM,
    PATH_CALLBACK_TWILIO,
    PATH_CALLBACK_VIBER,
    PATH_CALLBACK_WHATSAPP,
    TOPIC_STATUS_EVENTS,
)
from herald.domain import identities
from herald.domain.channels import Channel
from herald.domain.status import StatusEvent, to_wire
from herald.providers import email, rbm, twilio, viber, whatsapp
from herald.providers._http import CallbackError
from herald.settings import Settings

log = logging.getLogger(__name__)

# The secret_ref (HERALD_SECRET_<name>) of a Twilio Webhooks SharedKey, for webhooks that
# carry X-Twilio-Webhooks-Signature-Settings.

# SendGrid posts event batches of up to about 768 KB.
MAX_CALLBACK_BYTES = 1024 * 1024


class Ingress:
    def __init__(
        self,
        *,
        settings: Settings,
        producer: AIOKafkaProducer,
        email_public_key: str,
        channels: Collection[Channel] = frozenset(Channel),
    ) -> None:
        self.settings = settings
        self.email_public_key = email_public_key
        # A disabled channel has no route: its callbacks answer 404, whatever they are signed
        # with, since there is no secret to check them against.
        self.channels = frozenset(channels)
        self.batcher = KeyedBatcher(
            producer=producer,
            topic=settings.topic(TOPIC_STATUS_EVENTS),
            encode=envelope.status_items_value,
        )

    def app(self) -> web.Application:
        app = web.Application(
            client_max_size=MAX_CALLBACK_BYTES, middlewares=[metrics.observe_http]
        )
        if Channel.SMS in self.channels:
            app.router.add_post(PATH_CALLBACK_TWILIO, self.twilio)
        if Channel.WHATSAPP in self.channels:
            app.router.add_get(PATH_CALLBACK_WHATSAPP, self.whatsapp_challenge)
            app.router.add_post(PATH_CALLBACK_WHATSAPP, self.whatsapp)
        if Channel.RCS in self.channels:
            app.router.add_post(PATH_CALLBACK_RBM, self.rbm)
        if Channel.VIBER in self.channels:
            app.router.add_post(PATH_CALLBACK_VIBER, self.viber)
        if Channel.EMAIL in self.channels:
            app.router.add_post(PATH_CALLBACK_EMAIL, self.email)
        app.router.add_get("/healthz", _ok)
        app.router.add_get("/readyz", _ok)
        return app

    async def twilio(self, request: web.Request) -> web.Response:
        # A Webhooks Rule signs with its SharedKey (the algorithm named in this header);
        # without the header Twilio signs with the Auth Token and HMAC-SHA1.
        signed_with = request.headers.get(twilio.HEADER_SIGNATURE_SETTINGS)
        secret = (
            self.settings.twilio_auth_token.value
            if signed_with is None
            else self.settings.twilio_webhook_shared_key.value
        )
        try:
            form = await request.post()
        except (UnicodeDecodeError, ValueError):
            # Undecodable cannot be signed: treated as any other unsigned request.
            return _unsigned(request, "twilio", twilio.HEADER_SIGNATURE, secret)
        pairs = [(k, str(v)) for k, v in form.items()]
        # Twilio signs the URL it was given: herald's public ingress URL plus path and query.
        url = f"{self.settings.ingress_url}{request.path_qs}"
        if not secret or not twilio.verify_signature(
            url,
            pairs,
            secret,
            request.headers.get(twilio.HEADER_SIGNATURE),
            algorithm=twilio.signature_algorithm(signed_with),
        ):
            return _unsigned(request, "twilio", twilio.HEADER_SIGNATURE, secret)
        params = dict(pairs)
        try:
            event = twilio.parse_callback(params, request.query.get("m", ""), _now_ms())
        except CallbackError as exc:
            return _malformed("twilio", exc.reason)
        if event is None and (reason := twilio.ignored_reason(params)) is not None:
            # Answered 2xx all the same: a 4xx would make Twilio retry it for nothing.
            log.info("twilio callback ignored: %s", reason, extra={"event": "callback_ignored"})
        return await self._publish("twilio", [event] if event else [])

    async def whatsapp_challenge(self, request: web.Request) -> web.Response:
        params = {k: str(v) for k, v in request.query.items()}
        verify_token = self.settings.whatsapp_verify_token.value
        challenge = whatsapp.verify_challenge(params, verify_token) if verify_token else None
        if challenge is None:
            return _error(403, "hub.verify_token", "verification token does not match")
        return web.Response(text=challenge)

    async def whatsapp(self, request: web.Request) -> web.Response:
        body = await request.read()
        secret = self.settings.whatsapp_app_secret.value
        if not secret or not whatsapp.verify_signature(
            secret, body, request.headers.get("X-Hub-Signature-256")
        ):
            return _unsigned(request, "whatsapp", "X-Hub-Signature-256", secret)
        try:
            events = whatsapp.parse_webhook(_json(body), _now_ms())
        except CallbackError as exc:
            return _malformed("whatsapp", exc.reason)
        return await self._publish("whatsapp", events, ok_status=200)

    async def rbm(self, request: web.Request) -> web.Response:
        try:
            payload = _json(await request.read())
        except CallbackError as exc:
            return _malformed("rbm", exc.reason)
        client_token = self.settings.rbm_client_token.value
        if not client_token:
            return _unsigned(request, "rbm", "X-Goog-Signature", client_token)
        # Google's webhook setup: echo the secret for the registered client token.
        secret = rbm.registration_response(payload, client_token)
        if secret is not None:
            return web.Response(text=secret)
        if not isinstance(payload, dict) or not rbm.verify_signature(
            client_token, payload, request.headers.get("X-Goog-Signature")
        ):
            return _unsigned(request, "rbm", "X-Goog-Signature", client_token)
        try:
            events = rbm.parse_webhook(payload, _now_ms())
        except CallbackError as exc:
            return _malformed("rbm", exc.reason)
        return await self._publish("rbm", events, ok_status=200)

    async def viber(self, request: web.Request) -> web.Response:
        body = await request.read()
        token = self.settings.viber_auth_token.value
        if not token or not viber.verify_signature(
            token, body, request.headers.get("X-Viber-Content-Signature")
        ):
            return _unsigned(request, "viber", "X-Viber-Content-Signature", token)
        try:
            payload = _json(body)
            event = viber.parse_callback(payload, _now_ms())
            learned = viber.parse_identity(payload, _now_ms())
        except CallbackError as exc:
            return _malformed("viber", exc.reason)
        if learned is not None:
            # Who a Viber user is goes to the status consumer on the same topic, keyed by the
            # user id so that a subscribe and a later unsubscribe stay in order.
            try:
                await self.batcher.add(f"viber:user:{learned.address}", identities.to_wire(learned))
            except KafkaError:
                metrics.CALLBACKS.labels(provider="viber", outcome="unavailable").inc()
                return _error(503, "kafka", "status events cannot be stored right now")
            metrics.CALLBACKS.labels(provider="viber", outcome="accepted").inc()
            return web.Response(status=200)
        return await self._publish("viber", [event] if event else [], ok_status=200)

    async def email(self, request: web.Request) -> web.Response:
        body = await request.read()
        if not self.email_public_key or not email.verify_signature(
            self.email_public_key,
            request.headers.get(email.HEADER_TIMESTAMP, ""),
            body,
            request.headers.get(email.HEADER_SIGNATURE),
            now_s=time.time(),
        ):
            return _unsigned(request, "email", email.HEADER_SIGNATURE, self.email_public_key)
        try:
            events = email.parse_events(_json(body), _now_ms())
        except CallbackError as exc:
            return _malformed("email", exc.reason)
        return await self._publish("email", events)

    async def _publish(
        self, provider: str, events: Sequence[StatusEvent], ok_status: int = 204
    ) -> web.Response:
        if not events:
            metrics.CALLBACKS.labels(provider=provider, outcome="ignored").inc()
            return web.Response(status=ok_status)
        failed: list[BaseException] = []

        async def add(event: StatusEvent) -> None:
            # Events that name only the provider's id are keyed by it; the status consumer
            # resolves them to their campaign.
            key = event.campaign_id or f"{provider}:{event.provider_message_id}"
            try:
                await self.batcher.add(key, to_wire(event))
            except KafkaError as exc:
                failed.append(exc)

        if len(events) == 1:
            # Most callbacks carry one status: no task group for it.
            await add(events[0])
        else:
            async with anyio.create_task_group() as tg:
                for event in events:
                    tg.start_soon(add, event)
        if failed:
            # Not durable: a 503 makes the provider retry the callback later.
            metrics.CALLBACKS.labels(provider=provider, outcome="unavailable").inc()
            return _error(503, "kafka", "status events cannot be stored right now")
        metrics.child(metrics.CALLBACKS, provider=provider, outcome="accepted").inc(len(events))
        return web.Response(status=ok_status)


def _json(body: bytes) -> object:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise CallbackError("body is not JSON") from None


def _unsigned(request: web.Request, provider: str, header: str, secret: str) -> web.Response:
    metrics.refuse_signature(provider, signature=request.headers.get(header), secret=secret)
    metrics.CALLBACKS.labels(provider=provider, outcome="rejected").inc()
    log.warning("%s callback with a bad signature", provider, extra={"event": "bad_signature"})
    return _error(401, header, f"{header} is missing or does not match")


def _malformed(provider: str, reason: str) -> web.Response:
    metrics.CALLBACKS.labels(provider=provider, outcome="rejected").inc()
    return _error(400, "body", reason)


def _now_ms() -> int:
    return int(time.time() * 1000)


async def _ok(_: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


def _error(status: int, field: str, message: str) -> web.Response:
    return web.json_response({"error": {"field": field, "message": message}}, status=status)
