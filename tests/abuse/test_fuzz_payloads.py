"""Fuzzed input at herald's two doors: campaign.confirmed events and provider callbacks.

- `parse_campaign_confirmed` answers every value with an event or an EventError naming a
  field, never anything else; valid events round-trip.
- Every provider's parse and verify functions answer arbitrary and mutated payloads with
  events or CallbackError (verify: a bool), and what they produce the status consumer reads.
- The real ingress on a socket, publishing to the real broker: fuzzed bodies get 2xx or 4xx,
  never 5xx; unsigned, forged, tampered and replayed callbacks get 401 and nothing reaches
  the status topic (read back from the broker), while the same callbacks signed right do.
"""

from __future__ import annotations

import base64
import contextlib
import json
import time
import urllib.parse
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, timedelta, timezone
from typing import Any

import httpx
import orjson
import pytest
from aiohttp import web
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from herald.bus import codec
from herald.bus.producer import producer
from herald.bus.topics import ensure_topics
from herald.constants import (
    PATH_CALLBACK_EMAIL,
    PATH_CALLBACK_RBM,
    PATH_CALLBACK_TWILIO,
    PATH_CALLBACK_VIBER,
    PATH_CALLBACK_WHATSAPP,
)
from herald.domain.channels import Channel, SendingMode, chain
from herald.domain.events import CampaignConfirmed, EventError, parse_campaign_confirmed
from herald.domain.status import RecipientStatus, StatusEvent, from_wire, to_wire
from herald.embedded import free_port
from herald.ingress import Ingress
from herald.providers import email, rbm, twilio, viber, whatsapp
from herald.providers._http import CallbackError
from herald.settings import Secret, Settings
from tests.abuse.support import EmailSigner, rbm_push, status_records, whatsapp_webhook

FUZZ = settings(max_examples=80, deadline=None, database=None, derandomize=True)

JSON = st.recursive(
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(-(2**63), 2**64 - 1),  # what JSON encoders (and providers) emit
        st.floats(),
        st.text(max_size=12),
        st.sampled_from(["", " ", "cmp.1.1", "campaign.confirmed", "SMS", "delivered"]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=16,
)


# Mutation of valid documents ---------------------------------------------------------------


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _paths(item, (*path, index))


def _mutated(value: Any, path: tuple[Any, ...], new: Any, delete: bool) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        copy = dict(value)
        if delete and not rest:
            copy.pop(head, None)
        else:
            copy[head] = _mutated(value[head], rest, new, delete)
        return copy
    items = list(value)
    if delete and not rest:
        del items[head]
    else:
        items[head] = _mutated(items[head], rest, new, delete)
    return items


def mutations(valid: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    """A valid document with one to three of its values replaced by JSON, or removed."""

    @st.composite
    def build(draw: st.DrawFn) -> Any:
        doc = draw(valid)
        for _ in range(draw(st.integers(1, 3))):
            path = draw(st.sampled_from(list(_paths(doc))))
            doc = _mutated(doc, path, draw(JSON), draw(st.booleans()))
        return doc

    return build()


# campaign.confirmed ------------------------------------------------------------------------

TEXT = st.text(min_size=1, max_size=20).filter(str.strip)
IDS = st.text(st.characters(blacklist_categories=["Zs", "Cc", "Zl", "Zp"]), min_size=1, max_size=20)


ZONED = st.datetimes(
    timezones=st.sampled_from(
        [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-14))]
    )
)


@st.composite
def confirmed_events(draw: st.DrawFn) -> dict[str, Any]:
    mode = draw(st.sampled_from(list(SendingMode)))
    sections = {
        Channel.SMS: st.fixed_dictionaries({"body": TEXT}, optional={"sender": TEXT}),
        Channel.WHATSAPP: st.fixed_dictionaries(
            {"template_name": TEXT, "language": TEXT},
            optional={"components": st.lists(st.dictionaries(TEXT, TEXT), max_size=2)},
        ),
        Channel.RCS: st.fixed_dictionaries({"agent_id": TEXT, "text": TEXT}),
        Channel.VIBER: st.fixed_dictionaries({"sender": TEXT, "text": TEXT}),
        Channel.EMAIL: st.fixed_dictionaries({"from": TEXT, "subject": TEXT, "body": TEXT}),
    }
    audience = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "contact_ids": st.lists(TEXT, max_size=3),
                "list_ids": st.lists(TEXT, max_size=3),
                "segment_id": TEXT,
                "tags": st.lists(TEXT, max_size=3),
                "destinations": st.lists(st.just("+14155550100"), max_size=2),
            },
        ).filter(lambda a: any(a.values()))
    )
    return {
        "type": "campaign.confirmed",
        "version": 1,
        "event_id": draw(IDS),
        "campaign_id": draw(IDS),
        "account_id": draw(IDS),
        "name": draw(st.one_of(st.none(), TEXT)),
        "sending_mode": mode.value,
        "content": {ch.value: draw(sections[ch]) for ch in chain(mode)},
        "audience": audience,
        "variable_mappings": draw(st.dictionaries(TEXT, TEXT, max_size=2)),
        "recipient_variables": draw(
            st.dictionaries(TEXT, st.dictionaries(TEXT, TEXT, max_size=2), max_size=2)
        ),
        "scheduled_at": draw(st.one_of(st.none(), ZONED.map(lambda d: d.isoformat()))),
        "batch_size": draw(st.integers(1, 100_000)),
        "batch_delay_ms": draw(st.integers(0, 3_600_000)),
        "fallback_window_s": draw(st.integers(1, 604_800)),
    }


def _parse(raw: object) -> CampaignConfirmed | None:
    try:
        return parse_campaign_confirmed(raw)
    except EventError as exc:
        assert isinstance(exc.field, str) and exc.field
        assert isinstance(exc.message, str) and exc.message
        return None


@FUZZ
@given(raw=confirmed_events())
def test_valid_events_parse_and_round_trip(raw: dict[str, Any]) -> None:
    event = parse_campaign_confirmed(raw)
    assert (event.event_id, event.campaign_id, event.account_id) == (
        raw["event_id"],
        raw["campaign_id"],
        raw["account_id"],
    )
    assert event.channels == chain(SendingMode(raw["sending_mode"]))
    for channel in event.channels:
        assert event.content.for_channel(channel) is not None
    assert event.audience.tags == tuple(raw["audience"].get("tags", ()))
    assert event.batch_size == raw["batch_size"]


@FUZZ
@given(raw=st.one_of(JSON, mutations(confirmed_events())))
@example(raw={"type": "campaign.confirmed", "version": True})
@example(raw={"type": "campaign.confirmed", "version": 1, "sending_mode": ["SMS"]})
def test_fuzzed_events_parse_or_name_a_field(raw: object) -> None:
    _parse(raw)


# Provider callbacks: parse and verify ------------------------------------------------------

MESSAGE_IDS = st.one_of(
    st.builds(lambda c, r, a: f"{c}.{r}.{a}", IDS, st.integers(1, 10_000), st.integers(1, 3)),
    st.text(max_size=20),
    st.sampled_from(["", "..", "c.0.1", "c.1.0", "c.-1.1", ".1.1", "c.1_0.1", "c. 1.1"]),
)
TIMESTAMPS = st.one_of(
    st.integers(-10, 2**40),
    st.text(st.sampled_from("0123456789 "), max_size=12),
    st.none(),
    st.sampled_from(["", "1e9", "-5", "1700000000.5"]),
)


def _readable(events: list[StatusEvent]) -> None:
    """The ingress can publish every event it parsed, and the status consumer read it back."""
    for event in events:
        assert isinstance(event.status, RecipientStatus)
        assert from_wire(codec.decode(codec.encode(to_wire(event)))).status is event.status
        assert type(event.occurred_at_ms) is int and event.occurred_at_ms > 0


def _whatsapp_statuses() -> st.SearchStrategy[Any]:
    return st.fixed_dictionaries(
        {
            "id": st.text(min_size=1, max_size=12),
            "status": st.sampled_from(["sent", "delivered", "read", "failed", "deleted"]),
            "biz_opaque_callback_data": MESSAGE_IDS,
            "timestamp": TIMESTAMPS,
        },
        optional={"errors": st.lists(st.dictionaries(st.sampled_from(["code", "title"]), JSON))},
    )


WHATSAPP_WEBHOOKS = st.lists(_whatsapp_statuses(), max_size=3).map(whatsapp_webhook)
RBM_EVENTS = st.fixed_dictionaries(
    {
        "eventType": st.sampled_from(["DELIVERED", "READ", "TTL_EXPIRATION_REVOKED", "IS_TYPING"]),
        "messageId": MESSAGE_IDS,
    },
    optional={
        "sendTime": st.one_of(st.text(max_size=30), st.just("2026-01-01T00:00:00.123456789Z"))
    },
)
VIBER_CALLBACKS = st.fixed_dictionaries(
    {
        "event": st.sampled_from(["delivered", "seen", "failed", "subscribed", "message"]),
        "message_token": st.one_of(st.integers(-5, 2**63), st.text(max_size=10)),
    },
    optional={"timestamp": TIMESTAMPS, "desc": JSON},
)
EMAIL_EVENTS = st.lists(
    st.fixed_dictionaries(
        {
            "event": st.sampled_from(["processed", "delivered", "open", "bounce", "dropped", "x"]),
            "herald_message_id": MESSAGE_IDS,
        },
        optional={
            "timestamp": TIMESTAMPS,
            "reason": JSON,
            "status": JSON,
            "smtp-id": JSON,
            "sg_message_id": JSON,
        },
    ),
    max_size=3,
)


@FUZZ
@given(
    params=st.dictionaries(
        st.sampled_from(["MessageStatus", "SmsStatus", "ErrorCode", "MessageSid", "To", "x"]),
        st.one_of(
            st.text(max_size=12),
            st.sampled_from(["delivered", "undelivered", "failed", "sent", "queued", "READ "]),
        ),
    ),
    message_id=MESSAGE_IDS,
)
def test_twilio_callbacks_parse_or_are_refused(params: dict[str, str], message_id: str) -> None:
    try:
        event = twilio.parse_callback(params, message_id, 1_700_000_000_000)
    except CallbackError:
        return
    _readable([event] if event else [])


@FUZZ
@given(payload=st.one_of(JSON, WHATSAPP_WEBHOOKS, mutations(WHATSAPP_WEBHOOKS)))
def test_whatsapp_webhooks_parse_or_are_refused(payload: object) -> None:
    try:
        batch = whatsapp.parse_webhook(payload, 1_700_000_000_000)
    except CallbackError:
        return
    _readable(list(batch))


@FUZZ
@given(payload=st.one_of(JSON, RBM_EVENTS.map(rbm_push), mutations(RBM_EVENTS.map(rbm_push))))
@example(payload={"message": {"data": "not base64!"}})
@example(payload={"message": {"data": base64.b64encode(b"[1]").decode()}})
def test_rbm_pushes_parse_or_are_refused(payload: object) -> None:
    assert rbm.registration_response(payload, "token") in (None, *_secrets(payload))
    if isinstance(payload, dict):
        assert rbm.verify_signature("token", payload, "c2ln") is False
    try:
        batch = rbm.parse_webhook(payload, 1_700_000_000_000)
    except CallbackError:
        return
    _readable(list(batch))


def _secrets(payload: object) -> tuple[str, ...]:
    secret = payload.get("secret") if isinstance(payload, dict) else None
    return (secret,) if isinstance(secret, str) else ()


@FUZZ
@given(payload=st.one_of(JSON, VIBER_CALLBACKS, mutations(VIBER_CALLBACKS)))
def test_viber_callbacks_parse_or_are_refused(payload: object) -> None:
    try:
        event = viber.parse_callback(payload, 1_700_000_000_000)
    except CallbackError:
        return
    _readable([event] if event else [])


@FUZZ
@given(payload=st.one_of(JSON, EMAIL_EVENTS, mutations(EMAIL_EVENTS)))
def test_email_events_parse_or_are_refused(payload: object) -> None:
    try:
        batch = email.parse_events(payload, 1_700_000_000_000)
    except CallbackError:
        return
    _readable(list(batch))


HEADERS = st.one_of(st.none(), st.text(max_size=100), st.sampled_from(["sha256=", "=", " "]))


@FUZZ
@given(body=st.binary(max_size=200), header=HEADERS, secret=st.text(max_size=20))
def test_signature_checks_only_ever_answer_a_bool(
    body: bytes, header: str | None, secret: str
) -> None:
    params = {"a": body.decode("latin-1")}
    assert twilio.verify_signature("https://h/x", params, secret, header) in (True, False)
    assert whatsapp.verify_signature(secret, body, header) in (True, False)
    assert viber.verify_signature(secret, body, header) in (True, False)
    # A signature made with another secret never passes.
    other = secret + "x"
    assert not whatsapp.verify_signature(secret, body, whatsapp.signature(other, body))
    assert not viber.verify_signature(secret, body, viber.signature(other, body))
    assert not twilio.verify_signature(
        "https://h/x", params, secret, twilio.signature("https://h/x", params, other)
    )


SIGNER = EmailSigner()


@FUZZ
@given(
    timestamp=st.one_of(st.text(max_size=20), st.integers(0, 2**34).map(str)),
    signature=HEADERS,
    body=st.binary(max_size=100),
)
def test_email_signature_check_only_ever_answers_a_bool(
    timestamp: str, signature: str | None, body: bytes
) -> None:
    now = time.time()
    ok = email.verify_signature(SIGNER.public_key, timestamp, body, signature, now_s=now)
    assert ok is False
    stamp = str(int(now))
    signed = SIGNER.sign(stamp, body)
    assert email.verify_signature(SIGNER.public_key, stamp, body, signed, now_s=now)
    assert not email.verify_signature(SIGNER.public_key, stamp, body + b"x", signed, now_s=now)


# Crashes found by the fuzzing above, kept as regressions -------------------------------------


@pytest.mark.parametrize("stamp", ["²", "1²", "١٢٣", "9" * 5000, 2**70])
def test_timestamps_that_are_not_numbers_fall_back_to_receipt(stamp: object) -> None:
    # Was: '²'.isdigit() is True but int('²') raises, so epoch_ms raised ValueError (a 500 at
    # the ingress); a timestamp past 64 bits reached orjson in the batcher (TypeError, 500).
    received = 1_700_000_000_000
    status = {
        "id": "w",
        "status": "delivered",
        "timestamp": stamp,
        "biz_opaque_callback_data": "c.1.1",
    }
    wa = whatsapp.parse_webhook(whatsapp_webhook([status]), received)
    vb = viber.parse_callback(
        {"event": "delivered", "message_token": 1, "timestamp": stamp}, received
    )
    em = email.parse_events(
        [{"event": "open", "herald_message_id": "c.1.1", "timestamp": stamp}], received
    )
    assert vb is not None
    events = [wa[0], vb, em[0]]
    _readable(events)
    assert all(0 < e.occurred_at_ms <= received for e in events)


def test_an_absurd_email_timestamp_is_refused_not_raised() -> None:
    # Was: int() of a 4,301+ digit header raised ValueError: an unsigned request got a 500.
    now = time.time()
    assert not email.verify_signature(SIGNER.public_key, "1" * 5000, b"[]", "c2ln", now_s=now)


@pytest.mark.parametrize("message_id", ["cmp.1.33", f"cmp.{2**63}.1", "cmp.１.1"])
def test_what_the_ingress_accepts_the_status_consumer_reads(message_id: str) -> None:
    # Was: parse_message_id took any attempt and recipient id that from_wire and the store
    # refuse, so the ingress published events the status consumer dead-lettered.
    try:
        event = twilio.parse_callback({"MessageStatus": "delivered"}, message_id, 1)
    except CallbackError:
        return  # refused at the door
    assert event is not None
    _readable([event])


# The ingress on a socket -------------------------------------------------------------------


@dataclass
class Door:
    """The running ingress, its secrets, and how to sign a callback for each provider."""

    settings: Settings
    signer: EmailSigner
    http: httpx.AsyncClient

    @property
    def twilio_token(self) -> str:
        return self.settings.twilio_auth_token.value

    def twilio(self, params: dict[str, str], message_id: str, *, token: str | None = None) -> Any:
        path = f"{PATH_CALLBACK_TWILIO}?m={urllib.parse.quote(message_id)}"
        url = f"{self.settings.ingress_url}{path}"
        headers = {"X-Twilio-Signature": twilio.signature(url, params, token or self.twilio_token)}
        return (
            path,
            urllib.parse.urlencode(params).encode(),
            headers,
            "application/x-www-form-urlencoded",
        )

    def whatsapp(self, payload: Any, *, secret: str | None = None) -> Any:
        body = _json(payload)
        key = secret or self.settings.whatsapp_app_secret.value
        return (
            PATH_CALLBACK_WHATSAPP,
            body,
            {"X-Hub-Signature-256": whatsapp.signature(key, body)},
            None,
        )

    def rbm(self, payload: Any, *, token: str | None = None) -> Any:
        body = _json(payload)
        data = payload["message"]["data"].encode() if _has_data(payload) else b""
        key = token or self.settings.rbm_client_token.value
        return (
            PATH_CALLBACK_RBM,
            body,
            {"X-Goog-Signature": rbm.signature(key, base64.b64decode(data))},
            None,
        )

    def viber(self, payload: Any, *, token: str | None = None) -> Any:
        body = _json(payload)
        key = token or self.settings.viber_auth_token.value
        return (
            PATH_CALLBACK_VIBER,
            body,
            {"X-Viber-Content-Signature": viber.signature(key, body)},
            None,
        )

    def email(
        self, payload: Any, *, stamp: int | None = None, signer: EmailSigner | None = None
    ) -> Any:
        body = _json(payload)
        when = str(int(time.time()) if stamp is None else stamp)
        headers = {
            email.HEADER_TIMESTAMP: when,
            email.HEADER_SIGNATURE: (signer or self.signer).sign(when, body),
        }
        return PATH_CALLBACK_EMAIL, body, headers, None

    async def send(
        self, request: Any, *, drop: str | None = None, body: bytes | None = None
    ) -> httpx.Response:
        path, raw, headers, content_type = request
        headers = {k: v for k, v in headers.items() if k != drop}
        headers["Content-Type"] = content_type or "application/json"
        return await self.http.post(path, content=raw if body is None else body, headers=headers)


def _json(payload: Any) -> bytes:
    """What a provider might post: any JSON, numbers past 64 bits included."""
    return json.dumps(payload).encode()


def _has_data(payload: Any) -> bool:
    message = payload.get("message") if isinstance(payload, dict) else None
    return isinstance(message, dict) and isinstance(message.get("data"), str)


@pytest.fixture
async def door(settings: Settings) -> AsyncIterator[Door]:
    """The ingress for one test, on that test's settings (and so its own status topic)."""
    async with _opened(settings) as opened:
        yield opened


@pytest.fixture(scope="module")
async def shared_door(kafka_bootstrap: str) -> AsyncIterator[Door]:
    """One ingress for the fuzzing and the known-crash tests, which need no database."""
    settings = Settings.development(
        kafka_bootstrap=kafka_bootstrap,
        topic_prefix=f"t{uuid.uuid4().hex[:10]}.",
        topic_partitions=2,
        ingress_port=free_port(),
        metrics_port=0,
    )
    async with _opened(settings) as opened:
        yield opened


@contextlib.asynccontextmanager
async def _opened(settings: Settings) -> AsyncIterator[Door]:
    run = uuid.uuid4().hex[:8]
    settings = replace(
        settings,
        twilio_auth_token=Secret(f"tw-{run}"),
        whatsapp_app_secret=Secret(f"wa-{run}"),
        rbm_client_token=Secret(f"rbm-{run}"),
        viber_auth_token=Secret(f"vb-{run}"),
    )
    await ensure_topics(settings)
    signer = EmailSigner()
    async with producer(settings) as kafka:
        ingress = Ingress(settings=settings, producer=kafka, email_public_key=signer.public_key)
        runner = web.AppRunner(ingress.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.ingress_port).start()
        try:
            async with httpx.AsyncClient(base_url=settings.ingress_url, timeout=15) as http:
                yield Door(settings=settings, signer=signer, http=http)
        finally:
            await runner.cleanup()


def _valid_requests(door: Door, campaign: str) -> dict[str, Any]:
    """One correctly signed callback per provider, each naming a distinct recipient."""
    return {
        "twilio": door.twilio(
            {"MessageStatus": "delivered", "MessageSid": "SM1"}, f"{campaign}.1.1"
        ),
        "whatsapp": door.whatsapp(
            whatsapp_webhook(
                [{"id": "wamid.1", "status": "read", "biz_opaque_callback_data": f"{campaign}.2.1"}]
            )
        ),
        "rbm": door.rbm(rbm_push({"eventType": "DELIVERED", "messageId": f"{campaign}.3.1"})),
        "viber": door.viber({"event": "delivered", "message_token": 5_000_000_004}),
        "email": door.email([{"event": "delivered", "herald_message_id": f"{campaign}.5.1"}]),
    }


async def test_unsigned_forged_tampered_and_replayed_callbacks_publish_nothing(door: Door) -> None:
    campaign = f"cmp-{uuid.uuid4().hex[:6]}"
    valid = _valid_requests(door, campaign)
    headers = {
        "twilio": "X-Twilio-Signature",
        "whatsapp": "X-Hub-Signature-256",
        "rbm": "X-Goog-Signature",
        "viber": "X-Viber-Content-Signature",
        "email": email.HEADER_SIGNATURE,
    }
    wrong = "not-the-secret"
    stranger = EmailSigner()
    payloads = {
        "twilio": ({"MessageStatus": "delivered", "MessageSid": "SM1"}, f"{campaign}.1.1"),
        "whatsapp": orjson.loads(valid["whatsapp"][1]),
        "rbm": orjson.loads(valid["rbm"][1]),
        "viber": orjson.loads(valid["viber"][1]),
        "email": orjson.loads(valid["email"][1]),
    }
    forged = {
        "twilio": door.twilio(*payloads["twilio"], token=wrong),
        "whatsapp": door.whatsapp(payloads["whatsapp"], secret=wrong),
        "rbm": door.rbm(payloads["rbm"], token=wrong),
        "viber": door.viber(payloads["viber"], token=wrong),
        "email": door.email(payloads["email"], signer=stranger),
    }
    refused = 0
    for provider, request in valid.items():
        # Unsigned: the signature header left out.
        response = await door.send(request, drop=headers[provider])
        assert response.status_code == 401, (provider, response.text)
        assert response.json()["error"]["field"] == headers[provider]
        # Forged: signed with another secret or key.
        assert (await door.send(forged[provider])).status_code == 401, provider
        # Tampered: the signature of one body sent with another.
        _, raw, _, _ = request
        if provider == "twilio":
            body = urllib.parse.urlencode({"MessageStatus": "delivered", "MessageSid": "SM2"})
            tampered = body.encode()
        elif provider == "rbm":
            push = orjson.loads(raw)
            event = {"eventType": "READ", "messageId": f"{campaign}.3.1"}
            push["message"]["data"] = base64.b64encode(orjson.dumps(event)).decode()
            tampered = orjson.dumps(push)
        else:
            tampered = raw.replace(b"delivered", b"failed").replace(b'"read"', b'"failed"')
        assert tampered != raw
        assert (await door.send(request, body=tampered)).status_code == 401, provider
        refused += 3
    # Replayed: a captured email webhook, signed right but an hour old (or from the future).
    for skew_s in (-3600, 3600):
        stale = door.email(payloads["email"], stamp=int(time.time()) + skew_s)
        assert (await door.send(stale)).status_code == 401
    # The RBM setup handshake with the wrong client token echoes nothing.
    handshake = {"clientToken": wrong, "secret": "echo-me"}
    response = await door.http.post(PATH_CALLBACK_RBM, content=orjson.dumps(handshake))
    assert response.status_code == 401 and "echo-me" not in response.text
    assert refused == 15

    assert await status_records(door.settings) == []

    # The same callbacks signed right are taken and published: the topic was being read.
    for provider, request in valid.items():
        response = await door.send(request)
        assert response.status_code in (200, 204), (provider, response.text)
    published = [e for record in await status_records(door.settings) for e in record["events"]]
    assert sorted((e["c"], e["r"], e["s"]) for e in published) == sorted(
        [
            ("", 0, "delivered"),
            (campaign, 1, "delivered"),
            (campaign, 2, "read"),
            (campaign, 3, "delivered"),
            (campaign, 5, "delivered"),
        ]
    )


BODIES = {
    "twilio": st.dictionaries(
        st.sampled_from(["MessageStatus", "ErrorCode", "MessageSid", "SmsStatus", "x"]),
        st.one_of(st.text(max_size=12), st.sampled_from(["delivered", "failed", "queued"])),
    ),
    "whatsapp": st.one_of(JSON, WHATSAPP_WEBHOOKS, mutations(WHATSAPP_WEBHOOKS)),
    "rbm": st.one_of(JSON, RBM_EVENTS.map(rbm_push), mutations(RBM_EVENTS.map(rbm_push))),
    "viber": st.one_of(JSON, VIBER_CALLBACKS, mutations(VIBER_CALLBACKS)),
    "email": st.one_of(JSON, EMAIL_EVENTS, mutations(EMAIL_EVENTS)),
}


@st.composite
def callbacks(draw: st.DrawFn) -> tuple[str, Any, str, bool]:
    provider = draw(st.sampled_from(sorted(BODIES)))
    return provider, draw(BODIES[provider]), draw(MESSAGE_IDS), draw(st.booleans())


@settings(
    max_examples=150,
    deadline=None,
    database=None,
    derandomize=True,
    phases=[Phase.explicit, Phase.generate],  # a failure reports its example, unshrunk
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(callback=callbacks(), junk=st.binary(max_size=64))
async def test_fuzzed_callbacks_never_fail_the_ingress(
    shared_door: Door, callback: tuple[str, Any, str, bool], junk: bytes
) -> None:
    door = shared_door
    provider, payload, message_id, signed = callback
    if provider == "twilio":
        params = {k: v for k, v in payload.items() if "\x00" not in v}
        request = door.twilio(params, message_id)
    else:
        request = getattr(door, provider)(payload)
    name = next(iter(request[2]))
    response = await door.send(request, drop=None if signed else name)
    assert response.status_code < 500, (provider, payload, response.text)
    if not signed:
        assert response.status_code in (400, 401), (provider, response.text)
    # Bytes that are not JSON at all: refused, never a crash. (Bytes that are not UTF-8 at
    # the Twilio door are a known bug, pinned below.)
    if provider == "twilio":
        junk = junk.decode("utf-8", "replace").encode()
    if junk == request[1]:
        return  # the very bytes that were signed (an empty form): genuine, not junk
    raw = await door.send(request, body=junk)
    assert raw.status_code in (400, 401), (provider, raw.text)


# Found by the fuzzing above; each answered 500. Kept as regressions.
INGRESS_CRASHES = (
    "twilio-body-not-utf8",  # request.post() raised UnicodeDecodeError before the check
    "email-timestamp-5000-digits",  # int() of the header raised ValueError (unsigned!)
    "whatsapp-timestamp-superscript",  # epoch_ms: '²'.isdigit(), then int('²') raised
    "viber-timestamp-past-int64",  # orjson refused it in the batcher: TypeError
)


@pytest.mark.parametrize("case", INGRESS_CRASHES)
async def test_crashes_the_fuzzing_found_stay_fixed(shared_door: Door, case: str) -> None:
    door = shared_door
    if case == "twilio-body-not-utf8":
        call = door.twilio({"MessageStatus": "delivered"}, "c.1.1")
        response = await door.send(call, body=b"\x80\x81=\xff")
        assert response.status_code == 401
    elif case == "email-timestamp-5000-digits":
        response = await door.http.post(
            PATH_CALLBACK_EMAIL,
            content=b"[]",
            headers={email.HEADER_TIMESTAMP: "1" * 5000, email.HEADER_SIGNATURE: "c2ln"},
        )
        assert response.status_code == 401
    else:
        if case == "whatsapp-timestamp-superscript":
            status = {
                "id": "w",
                "status": "delivered",
                "timestamp": "²",
                "biz_opaque_callback_data": "c.1.1",
            }
            call = door.whatsapp(whatsapp_webhook([status]))
        else:
            call = door.viber({"event": "delivered", "message_token": 7, "timestamp": 2**70})
        response = await door.send(call)
        assert response.status_code in (200, 204), response.text
