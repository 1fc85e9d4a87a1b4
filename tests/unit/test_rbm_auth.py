"""RBM auth: access tokens cached and refreshed ahead of expiry, a 401 refreshed and repeated
once, and a credential that stays refused classified as provider trouble, never a recipient's
permanent failure."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, cast

import aiohttp
import anyio
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from herald.domain.channels import Channel
from herald.providers import tokens
from herald.providers.base import ErrorClass, OutboundMessage
from herald.providers.rbm import UNAUTHENTICATED, RbmProvider, rbm_message_id
from herald.providers.tokens import (
    REFRESH_MARGIN_S,
    ServiceAccountToken,
    StaticToken,
    TokenError,
    service_account_info,
    token_source,
)
from herald.settings import Secret

MID = "camp-1.7.1"
UNAUTHORISED = orjson.dumps(
    {"error": {"code": 401, "message": "Request had invalid authentication credentials.",
               "status": "UNAUTHENTICATED"}}
)  # fmt: skip


class Response:
    def __init__(self, status: int, body: bytes = b"{}") -> None:
        self.status = status
        self.headers: dict[str, str] = {}
        self._body = body

    async def read(self) -> bytes:
        return self._body

    async def __aenter__(self) -> Response:
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        return None


class Session:
    """Answers in order; records the Authorization header of every request."""

    def __init__(self, *statuses: int) -> None:
        self._answers: Iterator[int] = iter(statuses)
        self.authorizations: list[str] = []

    def request(self, method: str, url: object, **kwargs: Any) -> Response:
        self.authorizations.append(kwargs["headers"]["Authorization"])
        status = next(self._answers)
        return Response(status, UNAUTHORISED if status == 401 else b"{}")


class Rotating:
    """A token source whose refresh gives a new token (a service-account key's behaviour)."""

    def __init__(self, fail: TokenError | None = None) -> None:
        self.current = "ya29.one"
        self.refreshes = 0
        self.fail = fail

    async def token(self) -> str:
        if self.fail is not None:
            raise self.fail
        return self.current

    async def refresh(self, refused: str) -> str:
        self.refreshes += 1
        if refused == self.current:
            self.current = f"ya29.{self.refreshes + 1}"
        return self.current

    def secrets(self) -> tuple[str, ...]:
        return (self.current,)


def message() -> OutboundMessage:
    return OutboundMessage(
        message_id=MID, channel=Channel.RCS, to="+15551234500", sender="a", body="Hi",
        callback_url="",
    )  # fmt: skip


def provider(session: Session, auth: Any) -> RbmProvider:
    return RbmProvider(
        session=cast(aiohttp.ClientSession, session),
        base_url="https://rbm.example",
        agent_id="agent",
        auth=auth,
        timeout_s=5.0,
    )


async def test_a_401_is_refreshed_and_repeated_once() -> None:
    session, auth = Session(401, 200), Rotating()
    result = await provider(session, auth).send(message())
    assert result.accepted and result.provider_message_id == rbm_message_id(MID)
    assert session.authorizations == ["Bearer ya29.one", "Bearer ya29.2"]
    assert auth.refreshes == 1


async def test_a_401_after_the_refresh_holds_the_provider_never_fails_the_recipient(
    caplog: pytest.LogCaptureFixture,
) -> None:
    session, auth = Session(401, 401), Rotating()
    with caplog.at_level(logging.WARNING, logger="herald.providers.rbm"):
        result = await provider(session, auth).send(message())
    assert len(session.authorizations) == 2
    assert not result.accepted
    # UNAUTHORIZED trips the provider's circuit breaker: the work waits for the credential.
    assert result.error_class is ErrorClass.UNAUTHORIZED
    assert result.error_code == UNAUTHENTICATED
    assert result.provider_message_id == rbm_message_id(MID)
    assert "ya29" not in (result.error_description or "")
    assert [r.__dict__.get("event") for r in caplog.records] == ["provider_unauthenticated"]


async def test_a_fixed_token_is_not_repeated_after_a_401() -> None:
    session = Session(401)
    result = await provider(session, StaticToken(Secret("dev"))).send(message())
    assert session.authorizations == ["Bearer dev"]
    assert (result.error_class, result.error_code) == (ErrorClass.UNAUTHORIZED, UNAUTHENTICATED)


@pytest.mark.parametrize("retryable", [True, False])
async def test_no_token_is_provider_trouble_and_sends_nothing(retryable: bool) -> None:
    session = Session()
    auth = Rotating(fail=TokenError("invalid_grant: key deleted", retryable=retryable))
    result = await provider(session, auth).send(message())
    assert session.authorizations == []
    assert (result.error_class, result.error_code) == (ErrorClass.UNAUTHORIZED, UNAUTHENTICATED)


async def test_revoke_refreshes_on_401_too() -> None:
    session, auth = Session(401, 200), Rotating()
    assert await provider(session, auth).revoke(MID, "+15551234500") is True
    assert session.authorizations == ["Bearer ya29.one", "Bearer ya29.2"]


# -- the service-account token source -------------------------------------------------------


def key_json(token_uri: str = "https://oauth2.example/token") -> Secret:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    return Secret(
        orjson.dumps(
            {
                "type": "service_account",
                "project_id": "herald-test",
                "private_key_id": "k1",
                "private_key": pem,
                "client_email": "rbm@herald-test.iam.gserviceaccount.com",
                "client_id": "1",
                "token_uri": token_uri,
            }
        ).decode()
    )


@pytest.fixture(scope="module")
def key() -> Secret:
    return key_json()


class Clock:
    def __init__(self) -> None:
        self.now_s = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now_s


def minting(source: ServiceAccountToken, clock: Clock, lifetime_s: float = 3600) -> list[str]:
    """Replace google-auth's network refresh with one that counts and sets a lifetime."""
    minted: list[str] = []
    credentials = source._credentials

    def refresh(request: object) -> None:
        minted.append(f"ya29.m{len(minted) + 1}")
        credentials.token = minted[-1]
        expiry = datetime.fromtimestamp(clock.now_s + lifetime_s, UTC)
        credentials.expiry = expiry.replace(tzinfo=None)  # google-auth's naive UTC

    credentials.refresh = refresh
    return minted


async def test_token_is_cached_and_refreshed_before_it_expires(key: Secret) -> None:
    clock = Clock()
    source = ServiceAccountToken(key, clock=clock)
    minted = minting(source, clock)
    assert await source.token() == "ya29.m1"
    clock.now_s += 3600 - REFRESH_MARGIN_S - 1  # a little more than the margin left
    assert await source.token() == "ya29.m1"
    clock.now_s += 2  # less than the margin left: refreshed before any send sees it lapse
    assert await source.token() == "ya29.m2"
    assert minted == ["ya29.m1", "ya29.m2"]
    assert source.secrets() == ("ya29.m2",)


async def test_concurrent_sends_share_one_refresh(key: Secret) -> None:
    clock = Clock()
    source = ServiceAccountToken(key, clock=clock)
    minted = minting(source, clock)
    got: list[str] = []

    async def take() -> None:
        got.append(await source.token())

    async with anyio.create_task_group() as tg:
        for _ in range(20):
            tg.start_soon(take)
    assert minted == ["ya29.m1"] and set(got) == {"ya29.m1"}
    # Two sends refused with the same token: one refresh, not two.
    assert await source.refresh("ya29.m1") == "ya29.m2"
    assert await source.refresh("ya29.m1") == "ya29.m2"
    assert minted == ["ya29.m1", "ya29.m2"]


async def test_a_refused_key_is_a_token_error(key: Secret, monkeypatch: pytest.MonkeyPatch) -> None:
    import google.auth.exceptions

    source = ServiceAccountToken(key)

    def refused(request: object) -> None:
        raise google.auth.exceptions.RefreshError(  # type: ignore[no-untyped-call]
            "invalid_grant: Invalid JWT Signature."
        )

    monkeypatch.setattr(source._credentials, "refresh", refused)
    with pytest.raises(TokenError) as info:
        await source.token()
    assert not info.value.retryable


async def test_an_unreachable_token_endpoint_is_a_retryable_token_error(key: Secret) -> None:
    # Nothing listens on port 9 of the loopback: the token request cannot connect.
    source = ServiceAccountToken(key, token_uri="http://127.0.0.1:9/token", timeout_s=2.0)
    with pytest.raises(TokenError) as info:
        await source.token()
    assert info.value.retryable


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("", "not JSON"),
        ("[1]", "JSON object"),
        ('{"client_email": "a@b"}', "lacks private_key, token_uri"),
    ],
)
def test_service_account_info_names_what_is_wrong(value: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        service_account_info(Secret(value))


def test_a_key_that_is_not_a_key_is_refused() -> None:
    bad = Secret('{"client_email": "a@b", "private_key": "nope", "token_uri": "https://t"}')
    with pytest.raises(ValueError, match="not a usable service-account key"):
        ServiceAccountToken(bad)


def test_token_source_prefers_the_key(key: Secret) -> None:
    assert isinstance(
        token_source(token=Secret("dev"), service_account_json=key), ServiceAccountToken
    )
    assert isinstance(
        token_source(token=Secret("dev"), service_account_json=Secret("")), StaticToken
    )
    source = token_source(token=Secret(""), service_account_json=key, token_uri="http://sim/token")
    assert isinstance(source, ServiceAccountToken)
    assert source._credentials._token_uri == "http://sim/token"
    assert "PRIVATE" not in repr(source) and tokens.SCOPE.endswith("rcsbusinessmessaging")


# -- the registry builds the token source from settings or a provider account's secret -------


async def test_registry_builds_the_rbm_token_source(key: Secret) -> None:
    from herald.providers.registry import ProviderConfigError, build_one
    from herald.settings import Settings

    def built(secret: Secret | None, **settings: Any) -> Any:
        provider = build_one(
            "rbm",
            settings=Settings.development(**settings),
            session=cast(aiohttp.ClientSession, Session()),
            base_url="",
            options={"token_uri": "http://sim/token"} if secret is key else {},
            secret=secret,
        )
        assert isinstance(provider, RbmProvider)
        return provider._auth

    assert isinstance(built(None), StaticToken)  # development: the fixed token
    assert isinstance(built(None, rbm_service_account_json=key), ServiceAccountToken)
    from_row = built(key)  # a provider account whose secret is a key
    assert isinstance(from_row, ServiceAccountToken)
    assert from_row._credentials._token_uri == "http://sim/token"
    assert isinstance(built(Secret("ya29.fixed")), StaticToken)
    with pytest.raises(ProviderConfigError, match="rbm: the service-account key lacks"):
        built(Secret('{"client_email": "a@b"}'))
