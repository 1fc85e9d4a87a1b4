"""Email over raw SMTP: send adapter, reply classification, SendGrid event webhooks.

Sends go over a small pool of persistent SMTP connections (aiosmtplib); a connection that
breaks is dropped and a fresh one opened on the next send. Delivery news arrives later as a
SendGrid Event Webhook: a signed JSON array of events. Herald's message id reaches them the
way SendGrid documents: the X-SMTPAPI header's `unique_args` (this adapter) or the v3 Mail
Send API's `custom_args` (providers/sendgrid.py), each surfaced as a top-level field of every
event. Classification of SMTP replies and parsing of events are pure functions, tested
without a network.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import functools
import json
import math
import re
import socket
from collections.abc import Mapping
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import formatdate, parseaddr
from enum import Enum
from typing import Final

import aiosmtplib
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_der_public_key

from herald.domain.channels import Channel
from herald.domain.status import RecipientStatus, StatusEvent, parse_message_id
from herald.providers._http import (
    MAX_DESCRIPTION_CHARS,
    epoch_ms,
    failure,
)
from herald.providers._http import CallbackError as CallbackError
from herald.providers._http import StatusBatch as StatusBatch
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.settings import Secret

SOURCE: Final = "sendgrid"

# Wire names: the Event Webhook's signature headers and the field herald's id travels in.
HEADER_SIGNATURE: Final = "X-Twilio-Email-Event-Webhook-Signature"
HEADER_TIMESTAMP: Final = "X-Twilio-Email-Event-Webhook-Timestamp"
HEADER_HERALD_ID: Final = "X-Herald-Message-Id"
# SendGrid's SMTP API header: its unique_args come back as top-level fields of every event.
HEADER_SMTPAPI: Final = "X-SMTPAPI"
FIELD_HERALD_ID: Final = "herald_message_id"
MESSAGE_ID_DOMAIN: Final = "herald"

# A pseudo reply code: the server said nothing (timeout, reset, closed connection).
NO_REPLY: Final = 0

SIGNATURE_TOLERANCE_S: Final = 600.0

# Basic codes that name a bad mailbox when the reply carries no enhanced status code.
_MAILBOX_CODES: Final = frozenset({550, 551, 553})
# Enhanced status codes (RFC 3463) about the recipient's mailbox...
_MAILBOX_STATUSES: Final = frozenset(
    {"5.1.1", "5.1.2", "5.1.3", "5.1.6", "5.1.10", "5.2.1", "5.2.2"}
)
# ...and those about the message or herald's sender: no other recipient would fare better.
_MESSAGE_STATUSES: Final = frozenset({"5.1.7", "5.1.8", "5.2.3", "5.3.4"})
_MESSAGE_STATUS_CLASSES: Final = ("5.6.", "5.7.")  # media / content, security / policy
_ENHANCED: Final = re.compile(r"^\s*([245]\.\d{1,3}\.\d{1,3})(?!\S)")

# Event type → (herald status, did the provider take the message).
_EVENT_STATUS: Final[Mapping[str, tuple[RecipientStatus, bool]]] = {
    "processed": (RecipientStatus.SENT, True),
    "delivered": (RecipientStatus.DELIVERED, True),
    "open": (RecipientStatus.READ, True),
    "bounce": (RecipientStatus.FAILED, True),
    "dropped": (RecipientStatus.FAILED, False),
}
# Known events with nothing to fold: a deferral is retried by the provider, the rest are
# engagement herald does not count. Any other type is new to herald and counted as skipped.
_IGNORED_EVENTS: Final = frozenset(
    {"deferred", "click", "spamreport", "unsubscribe", "group_unsubscribe", "group_resubscribe"}
)


class _Phase(Enum):
    SESSION = "session"  # greeting, EHLO, STARTTLS, AUTH
    ENVELOPE = "envelope"  # MAIL FROM, RCPT TO
    DATA = "data"  # the DATA command and the content: the server may have the message


class SmtpEmailProvider:
    name = "smtp"
    channel = Channel.EMAIL

    def __init__(
        self,
        *,
        host: str,
        port: int,
        username: str | None,
        password: Secret | None,
        use_tls: bool = False,
        timeout_s: float,
        pool_size: int = 8,
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self._host = host
        self._port = port
        self._username = username
        self._password = password
        self._use_tls = use_tls
        self._timeout_s = timeout_s
        self._slots = asyncio.Semaphore(pool_size)
        # Connected clients waiting for a send; LIFO keeps the warmest ones busy.
        self._idle: list[aiosmtplib.SMTP] = []
        self._local_hostname: str | None = None
        self._closed = False

    def __repr__(self) -> str:
        return f"SmtpEmailProvider(host={self._host!r}, port={self._port!r})"

    async def send(self, message: OutboundMessage) -> SendResult:
        if self._closed:
            return failure(ErrorClass.RETRYABLE, "closed", "provider is closed")
        try:
            raw = build_message(message)
            envelope_from = _envelope_address(message.sender)
            envelope_to = _envelope_address(message.to)
        except ValueError as exc:
            return failure(ErrorClass.PERMANENT, "invalid_message", _clip(str(exc)))
        message_id_header = _message_id_header(message.message_id)
        async with self._slots:
            pooled = self._idle.pop() if self._idle else None
            result, client = await self._transact(pooled, envelope_from, envelope_to, raw)
            if client is not None and client.is_connected and not self._closed:
                self._idle.append(client)
            elif client is not None:
                client.close()
        if result.accepted:
            result = SendResult(accepted=True, provider_message_id=message_id_header)
        return result

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        await asyncio.gather(*(_quit(client, self._timeout_s) for client in idle))

    async def _transact(
        self, client: aiosmtplib.SMTP | None, sender: str, to: str, raw: bytes
    ) -> tuple[SendResult, aiosmtplib.SMTP | None]:
        """One mail transaction; returns the result and the connection if it may be reused."""
        phase = _Phase.SESSION
        try:
            try:
                async with asyncio.timeout(self._timeout_s):
                    # A pooled connection may have been closed by the server while idle;
                    # nothing of this message was sent yet, so one retry on a fresh
                    # connection is safe.
                    for tries_left in (1, 0):
                        reused = client is not None and client.is_connected
                        if not reused:
                            if client is not None:
                                client.close()
                            phase = _Phase.SESSION
                            client = None
                            client = await self._connect()
                        assert client is not None
                        phase = _Phase.ENVELOPE
                        try:
                            await client.mail(sender)
                            await client.rcpt(to)
                        except aiosmtplib.SMTPServerDisconnected:
                            if reused and tries_left:
                                client.close()
                                continue
                            raise
                        except aiosmtplib.SMTPResponseException as exc:
                            if exc.code == 421 and reused and tries_left:
                                client.close()
                                continue
                            raise
                        phase = _Phase.DATA
                        reply = await client.data(raw)
                        return result_from_smtp(reply.code, reply.message, True), client
            except aiosmtplib.SMTPResponseException as exc:
                result = result_from_smtp(
                    exc.code,
                    exc.message,
                    phase is _Phase.DATA,
                    about_recipient=phase is not _Phase.SESSION
                    and not isinstance(exc, aiosmtplib.SMTPSenderRefused),
                )
                return result, await _after_refusal(client, exc.code, self._timeout_s)
            except ValueError as exc:
                # aiosmtplib refuses an address it cannot write safely, before sending it.
                if client is not None:
                    await _reset(client, self._timeout_s)
                reason = _describe("address cannot be written over SMTP", exc)
                return failure(ErrorClass.PERMANENT, "invalid_address", reason), client
            except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
                if client is not None:
                    client.close()
                if phase is _Phase.SESSION:
                    reason = _describe("could not connect", exc)
                    return failure(ErrorClass.RETRYABLE, "connect_failed", reason), None
                reason = _describe("no reply", exc)
                return result_from_smtp(NO_REPLY, reason, phase is _Phase.DATA), None
        except BaseException:
            # Cancelled mid-command: the connection's state is unknown; it cannot be reused.
            if client is not None:
                client.close()
            raise
        raise AssertionError("unreachable")  # every pass of the loop returns or retries

    async def _connect(self) -> aiosmtplib.SMTP:
        if self._local_hostname is None:
            # getfqdn can block on DNS; look it up once, off the loop.
            self._local_hostname = await asyncio.to_thread(socket.getfqdn)
        client = aiosmtplib.SMTP(
            hostname=self._host,
            port=self._port,
            username=self._username,
            password=self._password.value if self._password is not None else None,
            local_hostname=self._local_hostname,
            timeout=self._timeout_s,
            use_tls=self._use_tls,
            # Implicit TLS excludes STARTTLS; without it, upgrade when the server offers it.
            start_tls=False if self._use_tls else None,
        )
        await client.connect()
        return client


def build_message(message: OutboundMessage) -> bytes:
    """The RFC 5322 message: plain text, with herald's id in Message-ID, its own header and
    X-SMTPAPI unique_args (what SendGrid's Event Webhook hands back; other relays ignore it)."""
    email = EmailMessage()
    email["From"] = message.sender
    email["To"] = message.to
    email["Subject"] = message.subject or ""
    email["Date"] = formatdate(usegmt=True)
    email["Message-ID"] = _message_id_header(message.message_id)
    email[HEADER_HERALD_ID] = message.message_id
    email[HEADER_SMTPAPI] = smtpapi_header(message.message_id)
    # Quoted-printable keeps non-ASCII text 7-bit clean: no reliance on the server's 8BITMIME.
    email.set_content(message.body, cte=None if message.body.isascii() else "quoted-printable")
    return email.as_bytes(policy=SMTP_POLICY)


def smtpapi_header(message_id: str) -> str:
    """The X-SMTPAPI value carrying herald's id as a unique arg.

    json.dumps keeps the spaces after separators, where a long header may be folded.
    """
    return json.dumps({"unique_args": {FIELD_HERALD_ID: message_id}})


def unique_args(header_value: str | None) -> dict[str, str]:
    """The string unique_args of an X-SMTPAPI header value; {} when absent or malformed."""
    if not header_value:
        return {}
    try:
        data = json.loads(header_value)
    except ValueError:
        return {}
    args = data.get("unique_args") if isinstance(data, dict) else None
    if not isinstance(args, dict):
        return {}
    return {key: value for key, value in args.items() if isinstance(value, str)}


def result_from_smtp(
    code: int, message: str, after_data: bool, *, about_recipient: bool = True
) -> SendResult:
    """Classify one SMTP reply, or NO_REPLY when the connection timed out or was lost.

    `after_data`: the DATA command was sent, so a lost answer may hide an accepted message.
    `about_recipient`: False for replies to the greeting, EHLO, AUTH or MAIL FROM, where a
    5xx says something about herald's account or sender, never about the recipient's mailbox.
    """
    text = " ".join(message.split())
    if code == NO_REPLY:
        if after_data:
            return failure(ErrorClass.AMBIGUOUS, "no_reply", _clip(text or "no reply"))
        return failure(ErrorClass.RETRYABLE, "no_reply", _clip(text or "no reply"))
    if 200 <= code < 300:
        return SendResult(accepted=True)
    description = _clip(f"{code} {text}".strip())
    if not 400 <= code < 600:
        # Not a reply SMTP allows here: the session is confused and gets dropped.
        error_class = ErrorClass.AMBIGUOUS if after_data else ErrorClass.RETRYABLE
        return failure(error_class, "protocol", description)
    enhanced = enhanced_status(text)
    # An enhanced code of another class than the basic one is not to be trusted.
    if enhanced is not None and enhanced[0] != str(code)[0]:
        enhanced = None
    error_code = enhanced or str(code)
    if code < 500:
        return failure(ErrorClass.RETRYABLE, error_code, description)
    if about_recipient and is_mailbox_failure(code, enhanced):
        return failure(ErrorClass.UNREACHABLE, error_code, description)
    return failure(ErrorClass.PERMANENT, error_code, description)


def enhanced_status(text: str) -> str | None:
    """The RFC 3463 status code ("5.1.1") a reply or bounce text starts with, if any."""
    match = _ENHANCED.match(text)
    return match.group(1) if match else None


def is_mailbox_failure(code: int, enhanced: str | None) -> bool:
    """A 5xx about the recipient's mailbox (unknown, disabled, full), not about the message.

    An enhanced code that names the mailbox, or the message, decides: "550 5.7.1" is a policy
    refusal of the message. Otherwise the basic code does (550, 551, 553).
    """
    if enhanced in _MAILBOX_STATUSES:
        return True
    if enhanced is not None and (
        enhanced in _MESSAGE_STATUSES or enhanced.startswith(_MESSAGE_STATUS_CLASSES)
    ):
        return False
    return code in _MAILBOX_CODES


def parse_events(payload: object, received_at_ms: int) -> StatusBatch:
    """Status events from one Event Webhook POST (its JSON array, already decoded).

    Herald's id is the top-level `herald_message_id` field SendGrid copies from the send's
    unique_args (SMTP) or custom_args (v3 API). Events without a usable one were not sent by
    herald (another
    system on the same account, or a message sent without the tag) and are skipped, counted in
    the result's `skipped`, as are event types herald does not know. Deferrals and engagement
    events other than `open` (click, spamreport, unsubscribe, ...) yield nothing. Raises
    CallbackError when the payload is not an array of objects or an event has no type.
    """
    if not isinstance(payload, list):
        raise CallbackError("event payload must be a JSON array")
    batch = StatusBatch()
    for index, raw in enumerate(payload):
        if not isinstance(raw, dict):
            raise CallbackError(f"event {index} is not an object")
        kind = raw.get("event")
        if not isinstance(kind, str) or not kind.strip():
            raise CallbackError(f"event {index} has no event type")
        kind = kind.strip().lower()
        if kind in _IGNORED_EVENTS:
            continue
        mapped = _EVENT_STATUS.get(kind)
        ids = _herald_ids(raw.get(FIELD_HERALD_ID))
        if mapped is None or ids is None:
            batch.skipped += 1
            continue
        campaign_id, recipient_id, attempt = ids
        status, accepted = mapped
        error_code, description, fallback = _event_error(kind, raw)
        occurred_ms = epoch_ms(raw.get("timestamp"), unit_ms=1000)
        batch.append(
            StatusEvent(
                campaign_id=campaign_id,
                recipient_id=recipient_id,
                attempt=attempt,
                channel=Channel.EMAIL.value,
                status=status,
                # Unix seconds from the provider; a clock ahead of ours is capped at receipt.
                occurred_at_ms=min(occurred_ms or received_at_ms, received_at_ms),
                source=SOURCE,
                provider_message_id=_provider_message_id(raw),
                error_code=error_code,
                error_description=description,
                accepted=accepted,
                fallback=fallback,
            )
        )
    return batch


def verify_signature(
    public_key_b64: str,
    timestamp: str,
    body: bytes,
    signature_b64: str | None,
    *,
    now_s: float,
    tolerance_s: float = SIGNATURE_TOLERANCE_S,
) -> bool:
    """Check an Event Webhook signature: ECDSA P-256 / SHA-256 over timestamp + raw body.

    `public_key_b64` is the base64 DER SubjectPublicKeyInfo SendGrid shows; the signature is a
    base64 DER ECDSA signature. A timestamp further than `tolerance_s` from `now_s` (either way)
    is refused, so a captured request cannot be replayed later.
    """
    if not signature_b64 or not timestamp or not public_key_b64:
        return False
    stamp = timestamp.strip()
    # Ten digits cover every real second count; a longer one is refused before int() sees it.
    if not stamp.isascii() or not stamp.isdigit() or len(stamp) > 12:
        return False
    if not math.isfinite(now_s) or abs(now_s - int(stamp)) > tolerance_s:
        return False
    try:
        key = _public_key(public_key_b64.strip())
        signature = base64.b64decode(signature_b64.strip(), validate=True)
    except (ValueError, binascii.Error):
        return False
    try:
        key.verify(signature, stamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
    except InvalidSignature:
        return False
    return True


@functools.lru_cache(maxsize=8)
def _public_key(public_key_b64: str) -> ec.EllipticCurvePublicKey:
    key = load_der_public_key(base64.b64decode(public_key_b64, validate=True))
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        raise ValueError("the event webhook key must be an ECDSA P-256 public key")
    return key


def _event_error(kind: str, raw: Mapping[str, object]) -> tuple[str | None, str | None, bool]:
    """(error code, description, fallback) of a failure event; all empty for the others."""
    reason = raw.get("reason")
    description = _clip(" ".join(reason.split())) if isinstance(reason, str) and reason else None
    if kind == "bounce":
        status = raw.get("status")
        code = status.strip() if isinstance(status, str) and status.strip() else "bounce"
        # A hard bounce on the mailbox: the recipient may still be reached on another channel.
        fallback = code in _MAILBOX_STATUSES
        return code[:32], description or "bounced", fallback
    if kind == "dropped":
        return "dropped", description or "dropped", False
    return None, None, False


def _herald_ids(value: object) -> tuple[str, int, int] | None:
    if not isinstance(value, str):
        return None
    try:
        return parse_message_id(value)
    except ValueError:
        return None


def _provider_message_id(raw: Mapping[str, object]) -> str | None:
    for field in ("smtp-id", "sg_message_id"):
        value = raw.get(field)
        if isinstance(value, str) and value:
            return value[:200]
    return None


def _message_id_header(message_id: str) -> str:
    return f"<{message_id}@{MESSAGE_ID_DOMAIN}>"


def _envelope_address(value: str) -> str:
    """The bare address for MAIL FROM / RCPT TO ("Name <a@b>" → "a@b")."""
    if "\r" in value or "\n" in value:
        raise ValueError("an address cannot contain line breaks")
    _, address = parseaddr(value)
    if "@" not in address:
        raise ValueError(f"not an email address: {value[:80]!r}")
    return address


async def _after_refusal(
    client: aiosmtplib.SMTP | None, code: int, timeout_s: float
) -> aiosmtplib.SMTP | None:
    """The connection to keep after a refusal: reset for the next envelope, or dropped."""
    if client is None:
        return None
    if code == 421 or not client.is_connected:
        # 421: the server is closing this connection.
        client.close()
        return None
    await _reset(client, timeout_s)
    return client if client.is_connected else None


async def _reset(client: aiosmtplib.SMTP, timeout_s: float) -> None:
    if not client.is_connected:
        return
    try:
        async with asyncio.timeout(timeout_s):
            await client.rset()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        client.close()


async def _quit(client: aiosmtplib.SMTP, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            await client.quit()
    except (aiosmtplib.SMTPException, OSError, TimeoutError):
        pass
    finally:
        client.close()


def _describe(prefix: str, exc: BaseException) -> str:
    detail = " ".join(str(exc).split())
    kind = type(exc).__name__
    return _clip(f"{prefix} ({kind}: {detail})" if detail else f"{prefix} ({kind})")


def _clip(text: str) -> str:
    return text[:MAX_DESCRIPTION_CHARS]
