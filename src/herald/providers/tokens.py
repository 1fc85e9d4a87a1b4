"""OAuth 2.0 access tokens for RBM, minted from the agent's Google service-account key.

google-auth signs the JWT assertion, exchanges it at the token endpoint and reads the answer;
its refresh is synchronous, so it runs in a worker thread and the event loop never waits on
it. One token is cached per key and refreshed when it has less than REFRESH_MARGIN_S left, or
when RBM refused it (a 401): concurrent sends share one refresh. A fixed bearer token
(development, tests) is a StaticToken with the same interface.
"""

from __future__ import annotations

import logging
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Protocol

import anyio
import google.auth.exceptions
import google.auth.transport
import orjson
from google.oauth2 import service_account

from herald.settings import Secret

log = logging.getLogger(__name__)

SCOPE: Final = "https://www.googleapis.com/auth/rcsbusinessmessaging"
# Refresh this long before the token expires: no send goes out with a token about to lapse.
REFRESH_MARGIN_S: Final = 300.0


class TokenError(RuntimeError):
    """No access token could be minted (key refused, token endpoint unreachable)."""

    def __init__(self, description: str, *, retryable: bool) -> None:
        super().__init__(description)
        self.description = description
        self.retryable = retryable  # the endpoint failed, not the key


class TokenSource(Protocol):
    async def token(self) -> str:
        """A bearer token valid for at least a while; raises TokenError."""
        ...

    async def refresh(self, refused: str) -> str:
        """A token other than `refused` (which the API answered 401), or `refused` itself
        when no other can exist (a fixed token); raises TokenError."""
        ...

    def secrets(self) -> tuple[str, ...]:
        """Strings to mask in provider text (the current token)."""
        ...


class StaticToken:
    """A fixed bearer token: development against the simulator, and tests."""

    def __init__(self, token: Secret) -> None:
        self._token = token

    def __repr__(self) -> str:
        return "StaticToken(**********)"

    async def token(self) -> str:
        return self._token.value

    async def refresh(self, refused: str) -> str:
        return self._token.value

    def secrets(self) -> tuple[str, ...]:
        return (self._token.value,)


class ServiceAccountToken:
    """Access tokens minted from a service-account key, cached and refreshed ahead of expiry."""

    def __init__(
        self,
        key: Secret,
        *,
        token_uri: str = "",
        timeout_s: float = 10.0,
        scope: str = SCOPE,
        clock: Any = time.time,
    ) -> None:
        info = service_account_info(key)
        if token_uri:
            info["token_uri"] = token_uri
        try:
            from_info = service_account.Credentials.from_service_account_info
            self._credentials = from_info(info, scopes=[scope])  # type: ignore[no-untyped-call]
        except (ValueError, KeyError) as exc:
            raise ValueError(f"not a usable service-account key: {type(exc).__name__}") from None
        self._request = UrllibRequest(timeout_s)
        self._lock = anyio.Lock()
        self._clock = clock
        self._token = ""
        self._expires_at_s = 0.0

    def __repr__(self) -> str:
        return f"ServiceAccountToken({self._credentials.service_account_email!r})"

    @property
    def account(self) -> str:
        return str(self._credentials.service_account_email)

    async def token(self) -> str:
        if self._fresh():
            return self._token
        async with self._lock:
            if not self._fresh():  # another send may have refreshed it meanwhile
                await self._mint()
            return self._token

    async def refresh(self, refused: str) -> str:
        async with self._lock:
            if self._token == refused or not self._token:
                await self._mint()
            return self._token

    def secrets(self) -> tuple[str, ...]:
        return (self._token,) if self._token else ()

    def _fresh(self) -> bool:
        return bool(self._token) and self._expires_at_s - self._clock() > REFRESH_MARGIN_S

    async def _mint(self) -> None:
        try:
            await anyio.to_thread.run_sync(self._credentials.refresh, self._request)
        except google.auth.exceptions.RefreshError as exc:
            retryable = bool(getattr(exc, "retryable", False))
            log.warning(
                "RBM access token refused for %s: %s",
                self.account,
                exc.args[0] if exc.args else type(exc).__name__,
                extra={"event": "rbm_token_refused", "retryable": retryable},
            )
            raise TokenError(
                f"token endpoint refused the key: {exc}", retryable=retryable
            ) from None
        except google.auth.exceptions.TransportError as exc:
            log.warning(
                "RBM token endpoint unreachable: %s",
                type(exc).__name__,
                extra={"event": "rbm_token_unavailable"},
            )
            raise TokenError("token endpoint unreachable", retryable=True) from None
        token = self._credentials.token
        if not isinstance(token, str) or not token:
            raise TokenError("token endpoint answered without an access token", retryable=True)
        self._token = token
        self._expires_at_s = _expiry_s(self._credentials.expiry, self._clock())


def service_account_info(key: Secret) -> dict[str, Any]:
    """The service-account key's JSON; ValueError names what is wrong (never the key)."""
    try:
        info = orjson.loads(key.value)
    except orjson.JSONDecodeError:
        raise ValueError("the service-account key is not JSON") from None
    if not isinstance(info, dict):
        raise ValueError("the service-account key must be a JSON object")
    missing = [f for f in ("client_email", "private_key", "token_uri") if not info.get(f)]
    if missing:
        raise ValueError(f"the service-account key lacks {', '.join(missing)}")
    return info


def token_source(
    *, token: Secret, service_account_json: Secret, token_uri: str = "", timeout_s: float = 10.0
) -> TokenSource:
    """The service-account key when there is one, else the fixed token."""
    if service_account_json.value.strip():
        return ServiceAccountToken(service_account_json, token_uri=token_uri, timeout_s=timeout_s)
    return StaticToken(token)


def _expiry_s(expiry: datetime | None, now_s: float) -> float:
    if expiry is None:
        return now_s + REFRESH_MARGIN_S  # no lifetime given: use it, refresh soon
    # google-auth keeps expiry as a naive UTC datetime.
    return expiry.replace(tzinfo=UTC).timestamp()


class _Response(google.auth.transport.Response):
    def __init__(self, status: int, headers: Mapping[str, str], data: bytes) -> None:
        self._status = status
        self._headers = dict(headers)
        self._data = data

    @property
    def status(self) -> int:
        return self._status

    @property
    def headers(self) -> Mapping[str, str]:
        return self._headers

    @property
    def data(self) -> bytes:
        return self._data


class UrllibRequest(google.auth.transport.Request):
    """google-auth's transport over the standard library: the token exchange is one small
    POST, and herald does not depend on `requests` for it. Runs in a worker thread."""

    def __init__(self, timeout_s: float) -> None:
        self._timeout_s = timeout_s

    def __call__(
        self,
        url: str,
        method: str = "GET",
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        **kwargs: Any,
    ) -> google.auth.transport.Response:
        if not url.startswith(("https://", "http://")):
            raise _transport_error("token URI must be http(s)")
        request = urllib.request.Request(url, data=body, headers=dict(headers or {}), method=method)
        try:
            with urllib.request.urlopen(request, timeout=timeout or self._timeout_s) as answer:
                return _Response(answer.status, dict(answer.headers), answer.read())
        except urllib.error.HTTPError as exc:
            # An error status is an answer google-auth reads (invalid_grant, 5xx).
            return _Response(exc.code, dict(exc.headers or {}), exc.read())
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            raise _transport_error(type(exc).__name__) from exc


def _transport_error(reason: str) -> Exception:
    error: Exception = google.auth.exceptions.TransportError(reason)  # type: ignore[no-untyped-call]
    return error
