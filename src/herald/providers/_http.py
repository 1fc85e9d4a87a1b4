"""Plumbing shared by the HTTP provider adapters.

One request helper that turns transport failures into SendResults, the timeout rule that tells
"nothing was sent" apart from "the answer was lost", and the small parsing helpers every
adapter needs. Nothing here knows a provider's wire format.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any, Final

import aiohttp
import orjson
from yarl import URL

from herald.domain.status import StatusEvent
from herald.providers.base import ErrorClass, SendResult

# Error descriptions are stored and shown to operators; keep provider text short.
MAX_DESCRIPTION_CHARS: Final = 200
_MASK: Final = "**********"


class CallbackError(ValueError):
    """A status callback or webhook herald cannot interpret."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class StatusBatch(list[StatusEvent]):
    """The status events of one webhook, plus how many statuses were skipped.

    A status is skipped when it does not name a herald message (sent by another system on the
    same account, or an unknown status word). It is counted rather than refused: refusing
    would make the provider redeliver the whole webhook, herald's events included, for days.
    """

    def __init__(self, events: Iterable[StatusEvent] = (), *, skipped: int = 0) -> None:
        super().__init__(events)
        self.skipped = skipped


@dataclass(frozen=True, kw_only=True)
class Answer:
    """What came back from a provider: the status line, Retry-After and the body."""

    status: int
    body: bytes
    retry_after: str | None = None


def client_timeout(timeout_s: float, connect_timeout_s: float | None) -> aiohttp.ClientTimeout:
    # The connect phase must time out before the total budget does: only then can a timeout
    # be told apart as "nothing was sent" (retryable) from "lost answer" (ambiguous).
    connect_s = timeout_s / 2 if connect_timeout_s is None else connect_timeout_s
    return aiohttp.ClientTimeout(total=timeout_s, connect=min(connect_s, timeout_s))


async def exchange(
    session: aiohttp.ClientSession,
    method: str,
    url: str | URL,
    *,
    headers: Mapping[str, str],
    budget: aiohttp.ClientTimeout,
    data: bytes | Mapping[str, str] | None = None,
) -> Answer | SendResult:
    """One request; an Answer, or a classified SendResult when the transport failed."""
    try:
        async with session.request(
            method,
            url,
            data=data,
            timeout=budget,
            # A redirected POST could be sent twice; none of the providers redirect these calls.
            allow_redirects=False,
            headers=headers,
        ) as response:
            status = response.status
            retry_after = response.headers.get("Retry-After")
            try:
                body = await response.read()
            except (aiohttp.ClientError, TimeoutError):
                # The status line already says what happened; the body only adds detail.
                body = b""
    except (aiohttp.ClientError, TimeoutError) as exc:
        return result_from_exception(exc)
    return Answer(status=status, body=body, retry_after=retry_after)


def result_from_exception(exc: BaseException) -> SendResult:
    """Classify a transport failure by whether the request can have reached the provider."""
    kind = type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return failure(ErrorClass.RETRYABLE, "connect_timeout", f"connect timed out ({kind})")
    if isinstance(exc, aiohttp.ClientConnectorError):
        # Refused, DNS, TLS handshake: no request bytes were written.
        return failure(ErrorClass.RETRYABLE, "connect_failed", f"could not connect ({kind})")
    if isinstance(exc, aiohttp.InvalidURL):
        return failure(ErrorClass.PERMANENT, "invalid_url", f"invalid provider URL ({kind})")
    if isinstance(exc, TimeoutError):
        # Read timeout, or the total budget ran out after connecting: the provider may have it.
        return failure(ErrorClass.AMBIGUOUS, "timeout", f"no answer in time ({kind})")
    return failure(ErrorClass.AMBIGUOUS, "connection_lost", f"connection lost ({kind})")


def failure(
    error_class: ErrorClass,
    code: str,
    description: str,
    *,
    retry_after_s: float | None = None,
) -> SendResult:
    return SendResult(
        accepted=False,
        error_class=error_class,
        error_code=code,
        error_description=description,
        retry_after_s=retry_after_s,
    )


def parse_retry_after_s(value: str | None) -> float | None:
    """Seconds from a Retry-After header; None when absent or not a number of seconds."""
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def json_object(body: bytes) -> dict[str, Any]:
    """The JSON object in body; {} for anything else (empty, not JSON, not an object)."""
    if not body:
        return {}
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        return {}
    return data if isinstance(data, dict) else {}


def short_text(value: object, fallback: str) -> str:
    """Provider text cut to a storable length, or fallback when there is none."""
    if isinstance(value, str) and value.strip():
        return value.strip()[:MAX_DESCRIPTION_CHARS]
    return fallback


def redacted(result: SendResult, *secrets: str) -> SendResult:
    """The result with any credential echoed in the provider's text masked out."""
    text = result.error_description
    if text is None:
        return result
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, _MASK)
    return result if text == result.error_description else replace(result, error_description=text)


def bearer_authorization(token: str) -> str:
    return f"Bearer {token}"


def basic_authorization(login: str, password: str) -> str:
    """An HTTP Basic Authorization header value (built here: aiohttp's helper is deprecated)."""
    if ":" in login:
        raise ValueError("a Basic auth login cannot contain ':'")
    return "Basic " + base64.b64encode(f"{login}:{password}".encode()).decode("ascii")


# Later than any real callback (year 2286) yet inside what JSON and Kafka records carry.
MAX_EPOCH_MS = 10**13
MAX_EPOCH_DIGITS = 16


def epoch_ms(value: object, *, unit_ms: int) -> int | None:
    """A provider timestamp (seconds or milliseconds since the epoch, as int or digits) in ms."""
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        text = value.strip()
        # ASCII digits only ('²'.isdigit() is True) and short: int() must not raise or crawl.
        if not (text.isascii() and text.isdigit() and len(text) <= MAX_EPOCH_DIGITS):
            return None
        value = int(text)
    if isinstance(value, int) and 0 < value * unit_ms <= MAX_EPOCH_MS:
        return value * unit_ms
    return None
