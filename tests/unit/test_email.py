"""Email adapter: SMTP reply classification, event webhook parsing, webhook signatures."""

from __future__ import annotations

import base64
import email
import email.policy
from email.message import EmailMessage
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus
from herald.providers.base import ErrorClass, OutboundMessage
from herald.providers.email import (
    NO_REPLY,
    CallbackError,
    build_message,
    enhanced_status,
    parse_events,
    result_from_smtp,
    verify_signature,
)
from herald.simulator.smtp import AddressBehaviour, email_outcome

R, U, P, A = (
    ErrorClass.RETRYABLE,
    ErrorClass.UNREACHABLE,
    ErrorClass.PERMANENT,
    ErrorClass.AMBIGUOUS,
)


# -- SMTP replies ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "message", "after_data", "about_recipient", "error_class", "error_code"),
    [
        # Accepted.
        (250, "2.0.0 Ok: queued as 4C2F", True, True, None, None),
        (251, "User not local; will forward", False, True, None, None),
        # Transient: try again, whatever the phase.
        (421, "4.7.0 Too many connections", False, True, R, "4.7.0"),
        (421, "Service not available", True, True, R, "421"),
        (450, "4.2.1 Mailbox busy", False, True, R, "4.2.1"),
        (451, "4.3.0 Local error in processing", True, True, R, "4.3.0"),
        (452, "4.5.3 Too many recipients", False, True, R, "4.5.3"),
        (452, "Insufficient system storage", True, True, R, "452"),
        # Bad mailbox: the recipient cannot be reached on this channel.
        (550, "5.1.1 User unknown", False, True, U, "5.1.1"),
        (550, "Mailbox unavailable", False, True, U, "550"),
        (551, "User not local", False, True, U, "551"),
        (553, "Mailbox name not allowed", False, True, U, "553"),
        (554, "5.1.1 No such user", True, True, U, "5.1.1"),
        (550, "5.2.1 Mailbox disabled", False, True, U, "5.2.1"),
        (550, "5.5.0 Requested action not taken: mailbox unavailable", False, True, U, "5.5.0"),
        # Other permanent refusals: policy, content, size, sender, syntax.
        (550, "5.7.1 Message rejected as spam", True, True, P, "5.7.1"),
        (554, "5.6.0 Message content rejected", True, True, P, "5.6.0"),
        (552, "5.3.4 Message too big", True, True, P, "5.3.4"),
        (552, "5.2.3 Message length exceeds limit", True, True, P, "5.2.3"),
        (550, "5.1.8 Bad sender domain", False, True, P, "5.1.8"),
        (554, "5.0.0 Delivery failed", True, True, P, "5.0.0"),
        (554, "Transaction failed", True, True, P, "554"),
        (500, "Syntax error, command unrecognised", False, True, P, "500"),
        # Refusals of herald's own session or sender never blame the recipient.
        (550, "5.1.1 Sender unknown", False, False, P, "5.1.1"),
        (553, "Sender address rejected", False, False, P, "553"),
        (535, "5.7.8 Authentication credentials invalid", False, False, P, "5.7.8"),
        (421, "4.3.2 Shutting down", False, False, R, "4.3.2"),
        # An enhanced code of another class than the basic one is ignored.
        (550, "4.1.1 Confused", False, True, U, "550"),
        # No reply at all: before DATA nothing was taken; after it, the server may have it.
        (NO_REPLY, "connection reset", False, True, R, "no_reply"),
        (NO_REPLY, "read timed out", True, True, A, "no_reply"),
        # Replies SMTP does not allow here.
        (354, "Start mail input", False, True, R, "protocol"),
        (354, "Start mail input", True, True, A, "protocol"),
    ],
)
def test_result_from_smtp(
    code: int,
    message: str,
    after_data: bool,
    about_recipient: bool,
    error_class: ErrorClass | None,
    error_code: str | None,
) -> None:
    result = result_from_smtp(code, message, after_data, about_recipient=about_recipient)
    assert result.accepted is (error_class is None)
    assert result.error_class is error_class
    assert result.error_code == error_code
    if error_class is not None:
        assert result.error_description
        assert len(result.error_description) <= 200


def test_result_from_smtp_description_is_short_and_single_line() -> None:
    result = result_from_smtp(554, "first line\nsecond line " + "x" * 500, True)
    assert result.error_description is not None
    assert result.error_description.startswith("554 first line second line")
    assert "\n" not in result.error_description
    assert len(result.error_description) == 200


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("5.1.1 User unknown", "5.1.1"),
        ("  4.7.0 try later", "4.7.0"),
        ("5.1.10 null MX", "5.1.10"),
        ("User unknown", None),
        ("5.1.1x", None),
        ("3.1.1 nonsense class", None),
        ("", None),
    ],
)
def test_enhanced_status(text: str, expected: str | None) -> None:
    assert enhanced_status(text) == expected


# -- the message on the wire -------------------------------------------------------------


def outbound(**overrides: Any) -> OutboundMessage:
    fields: dict[str, Any] = {
        "message_id": "camp-1.7.2",
        "channel": Channel.EMAIL,
        "to": "ada@example.org",
        "sender": "Herald <news@herald.example>",
        "body": "Héllo\n.a line starting with a dot\n",
        "callback_url": "",
        "subject": "Spring sale",
    }
    fields.update(overrides)
    return OutboundMessage(**fields)


def test_build_message_headers_and_body() -> None:
    raw = build_message(outbound())
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["From"] == "Herald <news@herald.example>"
    assert parsed["To"] == "ada@example.org"
    assert parsed["Subject"] == "Spring sale"
    assert parsed["Message-ID"] == "<camp-1.7.2@herald>"
    assert parsed["X-Herald-Message-Id"] == "camp-1.7.2"
    assert parsed["Date"]
    assert parsed.get_content_type() == "text/plain"
    assert isinstance(parsed, EmailMessage)
    assert parsed["Content-Transfer-Encoding"] == "quoted-printable"
    # MIME text travels with CRLF line ends.
    assert parsed.get_content() == "Héllo\r\n.a line starting with a dot\r\n"
    # Non-ASCII text is transfer-encoded: the message itself is 7-bit clean.
    assert raw.isascii()


def test_build_message_ascii_body_stays_plain() -> None:
    raw = build_message(outbound(body="Plain text.\n"))
    parsed = email.message_from_bytes(raw, policy=email.policy.default)
    assert parsed["Content-Transfer-Encoding"] == "7bit"
    assert b"\r\n\r\nPlain text.\r\n" in raw


def test_build_message_refuses_header_injection() -> None:
    with pytest.raises(ValueError):
        build_message(outbound(subject="hi\r\nBcc: everyone@example.org"))


# -- event webhook -----------------------------------------------------------------------

RECEIVED_MS = 1_700_000_100_000


def event(kind: str, **fields: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "email": "ada@example.org",
        "timestamp": 1_700_000_000,
        "event": kind,
        "sg_event_id": "evt-1",
        "sg_message_id": "sg-1.filter0001.0",
        "smtp-id": "<camp-1.7.2@herald>",
        "herald_message_id": "camp-1.7.2",
    }
    base.update(fields)
    return base


@pytest.mark.parametrize(
    ("raw", "status", "accepted", "error_code", "description", "fallback"),
    [
        (event("processed"), RecipientStatus.SENT, True, None, None, False),
        (event("delivered", response="250 OK"), RecipientStatus.DELIVERED, True, None, None, False),
        (event("open", useragent="Mail/1.0"), RecipientStatus.READ, True, None, None, False),
        (
            event("bounce", type="bounce", status="5.1.1", reason="550 5.1.1 no such user"),
            RecipientStatus.FAILED,
            True,
            "5.1.1",
            "550 5.1.1 no such user",
            True,
        ),
        (
            event("bounce", type="blocked", status="5.7.1", reason="blocked by policy"),
            RecipientStatus.FAILED,
            True,
            "5.7.1",
            "blocked by policy",
            False,
        ),
        (
            event("bounce", type="bounce"),
            RecipientStatus.FAILED,
            True,
            "bounce",
            "bounced",
            False,
        ),
        (
            event("dropped", reason="Bounced Address"),
            RecipientStatus.FAILED,
            False,
            "dropped",
            "Bounced Address",
            False,
        ),
    ],
)
def test_parse_events_maps_each_type(
    raw: dict[str, Any],
    status: RecipientStatus,
    accepted: bool,
    error_code: str | None,
    description: str | None,
    fallback: bool,
) -> None:
    [parsed] = parse_events([raw], RECEIVED_MS)
    assert parsed.campaign_id == "camp-1"
    assert parsed.recipient_id == 7
    assert parsed.attempt == 2
    assert parsed.channel == "email"
    assert parsed.status is status
    assert parsed.accepted is accepted
    assert parsed.error_code == error_code
    assert parsed.error_description == description
    assert parsed.fallback is fallback
    assert parsed.source == "sendgrid"
    assert parsed.provider_message_id == "<camp-1.7.2@herald>"
    assert parsed.occurred_at_ms == 1_700_000_000_000


@pytest.mark.parametrize(
    "kind", ["deferred", "click", "spamreport", "unsubscribe", "group_unsubscribe", "DEFERRED"]
)
def test_parse_events_ignores_types_herald_does_not_fold(kind: str) -> None:
    parsed = parse_events([event(kind)], RECEIVED_MS)
    assert parsed == []
    assert parsed.skipped == 0


@pytest.mark.parametrize(
    "raw",
    [
        {k: v for k, v in event("delivered").items() if k != "herald_message_id"},
        event("delivered", herald_message_id=17),
        event("delivered", herald_message_id="camp-1"),
        event("delivered", herald_message_id="camp-1.0.1"),
        event("delivered", herald_message_id="camp-1.x.1"),
        event("brand_new_event"),
    ],
)
def test_parse_events_skips_and_counts_what_is_not_herald_s(raw: dict[str, Any]) -> None:
    # Refusing the whole POST would make the provider redeliver herald's own events for days.
    parsed = parse_events([raw, event("delivered")], RECEIVED_MS)
    assert [e.status for e in parsed] == [RecipientStatus.DELIVERED]
    assert parsed.skipped == 1


def test_parse_events_keeps_order_and_empty_batches() -> None:
    batch = [event("processed"), event("delivered"), event("open")]
    statuses = [e.status for e in parse_events(batch, RECEIVED_MS)]
    assert statuses == [RecipientStatus.SENT, RecipientStatus.DELIVERED, RecipientStatus.READ]
    assert parse_events([], RECEIVED_MS) == []


@pytest.mark.parametrize(
    ("timestamp", "expected_ms"),
    [
        (1_700_000_000, 1_700_000_000_000),
        (1_800_000_000, RECEIVED_MS),  # ahead of our clock: capped at receipt
        ("1700000000", 1_700_000_000_000),
        ("soon", RECEIVED_MS),
        (None, RECEIVED_MS),
        (True, RECEIVED_MS),
        (-5, RECEIVED_MS),
    ],
)
def test_parse_events_occurred_at(timestamp: object, expected_ms: int) -> None:
    [parsed] = parse_events([event("delivered", timestamp=timestamp)], RECEIVED_MS)
    assert parsed.occurred_at_ms == expected_ms


def test_parse_events_provider_id_falls_back_to_sg_message_id() -> None:
    raw = event("delivered")
    del raw["smtp-id"]
    [parsed] = parse_events([raw], RECEIVED_MS)
    assert parsed.provider_message_id == "sg-1.filter0001.0"


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"event": "delivered"}, "JSON array"),
        ("[]", "JSON array"),
        (None, "JSON array"),
        ([1], "not an object"),
        ([event("delivered"), ["nested"]], "event 1 is not an object"),
        ([{"herald_message_id": "camp-1.7.2"}], "no event type"),
        ([event("")], "no event type"),
        ([event("delivered", event=7)], "no event type"),
        ([event("  ")], "no event type"),
    ],
)
def test_parse_events_rejects_malformed_payloads(payload: object, reason: str) -> None:
    with pytest.raises(CallbackError) as caught:
        parse_events(payload, RECEIVED_MS)
    assert reason in caught.value.reason


# -- signatures --------------------------------------------------------------------------

NOW_S = 1_700_000_000.0
BODY = b'[{"event":"delivered","herald_message_id":"camp-1.7.2"}]\r\n'


@pytest.fixture(scope="module")
def key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def public_b64(private_key: ec.EllipticCurvePrivateKey) -> str:
    der = private_key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sign(private_key: ec.EllipticCurvePrivateKey, timestamp: str, body: bytes) -> str:
    """Signed here with the library directly, separately from the simulator's signer."""
    der = private_key.sign(timestamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return base64.b64encode(der).decode()


def test_signature_valid(key: ec.EllipticCurvePrivateKey) -> None:
    stamp = str(int(NOW_S))
    assert verify_signature(public_b64(key), stamp, BODY, sign(key, stamp, BODY), now_s=NOW_S)


def test_signature_tampered_body(key: ec.EllipticCurvePrivateKey) -> None:
    stamp = str(int(NOW_S))
    signature = sign(key, stamp, BODY)
    tampered = BODY.replace(b"delivered", b"bounce")
    assert not verify_signature(public_b64(key), stamp, tampered, signature, now_s=NOW_S)


def test_signature_tampered_timestamp(key: ec.EllipticCurvePrivateKey) -> None:
    stamp = str(int(NOW_S))
    signature = sign(key, stamp, BODY)
    other = str(int(NOW_S) - 1)
    assert not verify_signature(public_b64(key), other, BODY, signature, now_s=NOW_S)


@pytest.mark.parametrize("signature", [None, "", "not base64!", base64.b64encode(b"junk").decode()])
def test_signature_missing_or_garbage(
    key: ec.EllipticCurvePrivateKey, signature: str | None
) -> None:
    stamp = str(int(NOW_S))
    assert not verify_signature(public_b64(key), stamp, BODY, signature, now_s=NOW_S)


@pytest.mark.parametrize(
    ("age_s", "tolerance_s", "ok"),
    [
        (0, 600, True),
        (600, 600, True),
        (601, 600, False),  # expired: a replay
        (-600, 600, True),  # small clock skew the other way
        (-601, 600, False),  # from the future
        (100, 60, False),
    ],
)
def test_signature_timestamp_tolerance(
    key: ec.EllipticCurvePrivateKey, age_s: int, tolerance_s: float, ok: bool
) -> None:
    stamp = str(int(NOW_S) - age_s)
    signature = sign(key, stamp, BODY)
    result = verify_signature(
        public_b64(key), stamp, BODY, signature, now_s=NOW_S, tolerance_s=tolerance_s
    )
    assert result is ok


@pytest.mark.parametrize("stamp", ["", "soon", "1.7e9", "-1700000000", " ", "١٧٠٠٠٠٠٠٠٠"])
def test_signature_malformed_timestamp(key: ec.EllipticCurvePrivateKey, stamp: str) -> None:
    signature = sign(key, stamp, BODY)
    assert not verify_signature(public_b64(key), stamp, BODY, signature, now_s=NOW_S)


def test_signature_wrong_or_malformed_key(key: ec.EllipticCurvePrivateKey) -> None:
    stamp = str(int(NOW_S))
    signature = sign(key, stamp, BODY)
    other = public_b64(ec.generate_private_key(ec.SECP256R1()))
    p384 = public_b64(ec.generate_private_key(ec.SECP384R1()))
    for public in (other, p384, "", "not a key", base64.b64encode(b"\x30\x03junk").decode()):
        assert not verify_signature(public, stamp, BODY, signature, now_s=NOW_S)


# Known-answer vector from the unit tests of SendGrid's own Python SDK (sendgrid-python,
# test/unit/test_eventwebhook.py): a real key, timestamp and signature over a compact JSON
# body with its trailing CRLF. It shows herald reads the wire format as SendGrid writes it.
SENDGRID_PUBLIC_KEY = (
    "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE83T4O/n84iotIvIW4mdBgQ/7dAfSmpqIM8kF9mN1flpVKS3GRqe6"
    "2gw+2fNNRaINXvVpiglSI8eNEc6wEA3F+g=="
)
SENDGRID_SIGNATURE = (
    "MEUCIGHQVtGj+Y3LkG9fLcxf3qfI10QysgDWmMOVmxG0u6ZUAiEAyBiXDWzM+uOe5W0JuG+luQAbPIqHh89M15Tlu"
    "LtEZtM="
)
SENDGRID_TIMESTAMP = "1600112502"
SENDGRID_BODY = (
    b'[{"email":"hello@world.com","event":"dropped","reason":"Bounced Address",'
    b'"sg_event_id":"ZHJvcC0xMDk5NDkxOS1MUnpYbF9OSFN0T0doUTRrb2ZTbV9BLTA",'
    b'"sg_message_id":"LRzXl_NHStOGhQ4kofSm_A.filterdrecv-p3mdw1-756b745b58-kmzbl-18-5F5FC76C-9.0",'
    b'"smtp-id":"<LRzXl_NHStOGhQ4kofSm_A@ismtpd0039p1iad1.sendgrid.net>",'
    b'"timestamp":1600112492}]\r\n'
)


def test_signature_sendgrid_known_answer() -> None:
    now_s = float(SENDGRID_TIMESTAMP) + 5
    assert verify_signature(
        SENDGRID_PUBLIC_KEY, SENDGRID_TIMESTAMP, SENDGRID_BODY, SENDGRID_SIGNATURE, now_s=now_s
    )
    assert not verify_signature(
        SENDGRID_PUBLIC_KEY, SENDGRID_TIMESTAMP, SENDGRID_BODY[:-2], SENDGRID_SIGNATURE, now_s=now_s
    )
    # The real payload carries no herald id: nothing for herald in it.
    parsed = parse_events(orjson.loads(SENDGRID_BODY), 0)
    assert parsed == []
    assert parsed.skipped == 1


# -- simulator outcomes ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "behaviour", "opens"),
    [
        ("ada@example.org", AddressBehaviour.DELIVER, False),
        ("ada-open@example.org", AddressBehaviour.DELIVER, True),
        ("OPEN.ada@example.org", AddressBehaviour.DELIVER, True),
        ("bounce@example.org", AddressBehaviour.BOUNCE, False),
        ("reject+1@example.org", AddressBehaviour.REJECT, False),
        ("tempfail-open@example.org", AddressBehaviour.TEMPFAIL, True),
        ("reject-bounce@example.org", AddressBehaviour.REJECT, False),
        ("ada@bounce.example.org", AddressBehaviour.DELIVER, False),  # the domain is not read
    ],
)
def test_email_outcome(address: str, behaviour: AddressBehaviour, opens: bool) -> None:
    outcome = email_outcome(address)
    assert outcome.behaviour is behaviour
    assert outcome.opens is opens


# -- SendGrid: X-SMTPAPI unique_args and the v3 Mail Send adapter -----------------------


def test_build_message_carries_smtpapi_unique_args() -> None:
    from herald.providers.email import HEADER_SMTPAPI, unique_args

    parsed = email.message_from_bytes(build_message(outbound()), policy=email.policy.default)
    assert unique_args(str(parsed[HEADER_SMTPAPI])) == {"herald_message_id": "camp-1.7.2"}


@pytest.mark.parametrize(
    "value",
    [None, "", "not json", "[]", '{"unique_args": []}', '{"category": "x"}'],
)
def test_unique_args_of_anything_else_is_empty(value: str | None) -> None:
    from herald.providers.email import unique_args

    assert unique_args(value) == {}


def test_unique_args_keeps_string_values_only() -> None:
    from herald.providers.email import unique_args

    assert unique_args('{"unique_args": {"a": "1", "b": 2}}') == {"a": "1"}


def test_sendgrid_request_body() -> None:
    from herald.providers.sendgrid import request_body

    body = request_body(outbound())
    assert body["personalizations"][0]["custom_args"] == {"herald_message_id": "camp-1.7.2"}
    assert body["content"] == [{"type": "text/plain", "value": outbound().body}]
    with pytest.raises(ValueError):
        request_body(outbound(to="x\r\n@y"))
    with pytest.raises(ValueError):
        request_body(outbound(sender="nobody"))
    assert "subject" not in request_body(outbound(subject=""))


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"X-RateLimit-Reset": "1000030"}, 30.0),
        ({"X-RateLimit-Reset": "999990"}, 0.0),
        ({"X-RateLimit-Reset": "9000000"}, None),  # too far to wait for inside one retry
        ({"Retry-After": "7"}, 7.0),
        ({}, None),
    ],
)
def test_sendgrid_rate_limit_wait(headers: dict[str, str], expected: float | None) -> None:
    from herald.providers.sendgrid import result_from_response

    result = result_from_response(429, b"", headers, now_s=1_000_000.0)
    assert result.error_class is ErrorClass.RATE_LIMITED
    assert result.retry_after_s == expected
