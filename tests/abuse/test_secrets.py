"""Secrets stay secret: API keys and provider credentials never show in logs, error bodies,
/metrics or the OpenAPI document; keys are stored only as hashes; webhook secrets are
compared in constant time.

The API and the ingress run with known secrets on real sockets, every log record at DEBUG
is captured, and each path that talks about a key or a signature is driven: good and bad
keys, revoked keys, 401, 404, 422, 429 and store errors, good and bad signatures for every
provider, the WhatsApp and RBM handshakes.
"""

from __future__ import annotations

import ast
import asyncio
import base64
import hashlib
import hmac
import inspect
import logging
import textwrap
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from typing import Any

import aiohttp
import anyio
import asyncpg
import httpx
import orjson
import pytest
from aiohttp import web

from herald import metrics
from herald.api import auth
from herald.api.app import serve
from herald.api.config import ApiConfig
from herald.api.keys import create_account_key
from herald.bus.producer import producer
from herald.bus.topics import ensure_topics
from herald.constants import PATH_CALLBACK_RBM, PATH_CALLBACK_WHATSAPP
from herald.embedded import free_port
from herald.ingress import Ingress
from herald.providers import email, rbm, registry, twilio, viber, whatsapp
from herald.settings import Secret, Settings
from herald.store import api_keys, contacts_api, db, templates
from tests.abuse.support import EmailSigner, rbm_push, whatsapp_webhook

# The test's own HTTP client logs the URLs it calls; those records are not herald's.
CLIENT_LOGGERS = frozenset({"httpx", "httpcore"})


@dataclass
class Stage:
    api: str
    ingress: str
    settings: Settings
    pool: asyncpg.Pool
    signer: EmailSigner
    bootstrap_key: str
    secrets: dict[str, str]  # what must never show, by name


def _provider_secrets(run: str) -> dict[str, str]:
    return {
        "twilio_auth_token": f"twilio-token-{run}",
        "whatsapp_access_token": f"wa-access-{run}",
        "whatsapp_app_secret": f"wa-app-secret-{run}",
        "whatsapp_verify_token": f"wa-verify-{run}",
        "rbm_token": f"rbm-token-{run}",
        "rbm_client_token": f"rbm-client-{run}",
        "viber_auth_token": f"viber-token-{run}",
        "smtp_password": f"smtp-password-{run}",
    }


@pytest.fixture
async def stage(settings: Settings, caplog: pytest.LogCaptureFixture) -> AsyncIterator[Stage]:
    caplog.set_level(logging.DEBUG)  # from the start: bootstrap and startup logs count too
    run = uuid.uuid4().hex
    secrets = _provider_secrets(run)
    masked: dict[str, Any] = {name: Secret(value) for name, value in secrets.items()}
    settings = replace(settings, **masked)
    bootstrap_key = f"hk_bootstrap_{run}"
    secrets["bootstrap_api_key"] = bootstrap_key
    config = ApiConfig(
        bootstrap_api_key=bootstrap_key,
        bootstrap_account_id=f"acct-{run[:8]}",
        rate_limit_per_s=1.0,
        rate_limit_burst=40,
    )
    signer = EmailSigner()
    await ensure_topics(settings)
    async with (
        db.pool(settings.database_url, max_size=4) as pool,
        producer(settings) as kafka,
    ):
        ingress = Ingress(settings=settings, producer=kafka, email_public_key=signer.public_key)
        runner = web.AppRunner(ingress.app(), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", settings.ingress_port).start()
        stop, ready = anyio.Event(), anyio.Event()
        task = asyncio.create_task(
            serve(
                settings=settings,
                pool=pool,
                stop=stop,
                host="127.0.0.1",
                port=settings.api_port,
                ready=ready,
                config=config,
            )
        )
        try:
            with anyio.fail_after(10):
                await ready.wait()
            yield Stage(
                api=f"http://127.0.0.1:{settings.api_port}",
                ingress=settings.ingress_url,
                settings=settings,
                pool=pool,
                signer=signer,
                bootstrap_key=bootstrap_key,
                secrets=secrets,
            )
        finally:
            stop.set()
            with anyio.fail_after(10):
                await task
            await runner.cleanup()


def _leaks(text: str, secrets: dict[str, str]) -> list[str]:
    return [name for name, value in secrets.items() if value and value in text]


def _fails(exc: BaseException) -> Callable[..., Any]:
    async def failing(*_: Any, **__: Any) -> Any:
        raise exc

    return failing


async def _drive_api(stage: Stage, seen: list[str]) -> str:
    """Every API path that handles a key; returns the key made through the API."""

    def note(response: httpx.Response) -> httpx.Response:
        seen.append(response.text)
        seen.append(str(response.headers))
        return response

    key = stage.bootstrap_key
    async with httpx.AsyncClient(base_url=stage.api, timeout=10) as http:
        good = {"X-API-Key": key}
        assert note(await http.get("/v1/contacts", headers=good)).status_code == 200
        wrong = {"X-API-Key": stage.secrets["wrong_api_key"]}
        assert note(await http.get("/v1/contacts", headers=wrong)).status_code == 401
        assert note(await http.get("/v1/contacts")).status_code == 401
        # A key in the query string is an unknown parameter, named but not echoed.
        params = {"api_key": key}
        assert note(await http.get("/v1/contacts", params=params, headers=good)).status_code == 422
        assert note(await http.get(f"/v1/campaigns/{key}", headers=good)).status_code == 404
        bad = {"phone": "12345", "first_name": key}
        assert note(await http.post("/v1/contacts", json=bad, headers=good)).status_code == 422
        # A request with a key that fails in the store, or anywhere else, logs the failure
        # (with its traceback): still no key in the log or the answer.
        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(contacts_api, "page", _fails(asyncpg.PostgresConnectionError("gone")))
            patch.setattr(templates, "page", _fails(RuntimeError("boom")))
            assert note(await http.get("/v1/contacts", headers=good)).status_code == 500
            assert note(await http.get("/v1/templates", headers=good)).status_code == 500

        made = await http.post("/v1/api-keys", json={"name": "ci"}, headers=good)
        assert made.status_code == 201
        new_key: str = made.json()["data"]["key"]  # shown once, in this answer only
        listed = note(await http.get("/v1/api-keys", headers=good))
        assert new_key not in listed.text and key not in listed.text
        fresh = {"X-API-Key": new_key}
        assert note(await http.get("/v1/templates", headers=fresh)).status_code == 200
        key_id = made.json()["data"]["id"]
        assert note(await http.delete(f"/v1/api-keys/{key_id}", headers=good)).status_code == 204
        assert note(await http.get("/v1/templates", headers=fresh)).status_code == 401

        # Past the rate limit: the 429 names no key either.
        answers = await asyncio.gather(*(http.get("/v1/contacts", headers=good) for _ in range(60)))
        assert any(r.status_code == 429 for r in answers)
        for response in answers:
            note(response)

        document = note(await http.get("/openapi.json"))
        assert document.status_code == 200
        assert "hk_" not in document.text  # no example looks like a real key
    return new_key


async def _drive_ingress(stage: Stage, seen: list[str]) -> None:
    s = stage.secrets
    async with httpx.AsyncClient(base_url=stage.ingress, timeout=10) as http:

        async def post(path: str, body: bytes, headers: dict[str, str]) -> None:
            response = await http.post(path, content=body, headers=headers)
            assert response.status_code < 500, response.text
            seen.append(response.text)
            seen.append(str(response.headers))

        params = {"MessageStatus": "delivered"}
        path = "/callbacks/twilio?m=cmp.1.1"
        form = {"Content-Type": "application/x-www-form-urlencoded"}
        body = b"MessageStatus=delivered"
        url = f"{stage.settings.ingress_url}{path}"
        for token in (s["twilio_auth_token"], "wrong"):
            signed = {**form, "X-Twilio-Signature": twilio.signature(url, params, token)}
            await post(path, body, signed)
        hook = orjson.dumps(
            whatsapp_webhook(
                [{"id": "w1", "status": "read", "biz_opaque_callback_data": "cmp.2.1"}]
            )
        )
        for secret in (s["whatsapp_app_secret"], "wrong"):
            signed = {"X-Hub-Signature-256": whatsapp.signature(secret, hook)}
            await post(PATH_CALLBACK_WHATSAPP, hook, signed)
        for token in (s["whatsapp_verify_token"], "wrong"):
            query = {"hub.mode": "subscribe", "hub.verify_token": token, "hub.challenge": "c-42"}
            response = await http.get(PATH_CALLBACK_WHATSAPP, params=query)
            seen.append(response.text)
        push = rbm_push({"eventType": "DELIVERED", "messageId": "cmp.3.1"})
        data = orjson.dumps(push)
        raw = orjson.loads(data)["message"]["data"]
        for token in (s["rbm_client_token"], "wrong"):
            signed = {"X-Goog-Signature": rbm.signature(token, base64.b64decode(raw))}
            await post(PATH_CALLBACK_RBM, data, signed)
        for token in (s["rbm_client_token"], "wrong"):
            handshake = orjson.dumps({"clientToken": token, "secret": "google-says-hi"})
            await post(PATH_CALLBACK_RBM, handshake, {})
        callback = orjson.dumps({"event": "delivered", "message_token": 5_000_000_001})
        for token in (s["viber_auth_token"], "wrong"):
            signed = {"X-Viber-Content-Signature": viber.signature(token, callback)}
            await post("/callbacks/viber", callback, signed)
        events = orjson.dumps([{"event": "delivered", "herald_message_id": "cmp.5.1"}])
        stamp = str(int(time.time()))
        for signer in (stage.signer, EmailSigner()):
            signed = {
                email.HEADER_TIMESTAMP: stamp,
                email.HEADER_SIGNATURE: signer.sign(stamp, events),
            }
            await post("/callbacks/email", events, signed)


async def test_no_secret_in_logs_errors_metrics_or_openapi(
    stage: Stage, caplog: pytest.LogCaptureFixture
) -> None:
    stage.secrets["wrong_api_key"] = f"hk_wrong_{uuid.uuid4().hex}"
    seen: list[str] = []
    new_key = await _drive_api(stage, seen)
    stage.secrets["made_api_key"] = new_key
    await _drive_ingress(stage, seen)

    # Providers, settings and the API config as they would be printed or logged.
    async with aiohttp.ClientSession() as session:
        for provider in registry.build(stage.settings, session).values():
            seen.append(repr(provider))
            await provider.close()
    seen.append(repr(stage.settings))
    seen.append(repr(ApiConfig(bootstrap_api_key=stage.bootstrap_key)))

    # /metrics as Prometheus scrapes it.
    server = metrics.serve(free_port(), "127.0.0.1")
    assert server is not None
    try:
        async with httpx.AsyncClient(timeout=10) as http:
            scraped = await http.get(f"http://127.0.0.1:{server.port}/metrics")
        assert scraped.status_code == 200 and "herald_http_requests_total" in scraped.text
        seen.append(scraped.text)
    finally:
        server.close()

    formatter = logging.Formatter("%(levelname)s %(name)s %(message)s")
    # herald serves without uvicorn's access log (request lines carry query strings); pytest
    # hangs its capture on that logger anyway, so its records are left out here and the
    # switch itself is checked instead.
    access = logging.getLogger("uvicorn.access")
    assert access.propagate is False
    assert not [h for h in access.handlers if not isinstance(h, type(caplog.handler))]
    captured = [
        r
        for r in caplog.get_records("setup") + caplog.get_records("call")
        if r.name != "uvicorn.access" and r.name.split(".")[0] not in CLIENT_LOGGERS
    ]
    records = [f"{formatter.format(r)} {r.__dict__!r}" for r in captured]
    # The capture saw herald's own logs on the paths that handle keys and signatures.
    for event in ("api_key_bootstrapped", "bad_signature", "api_store_error", "api_unhandled"):
        assert any(event in r for r in records), event
    for text in [*records, *seen]:
        assert not _leaks(text, stage.secrets), _leaks(text, stage.secrets)


async def test_keys_are_stored_only_as_hashes(stage: Stage) -> None:
    keys = [stage.bootstrap_key, await create_account_key(stage.pool, "hashed", "ops")]
    async with httpx.AsyncClient(base_url=stage.api, timeout=10) as http:
        made = await http.post(
            "/v1/api-keys", json={"name": "x"}, headers={"X-API-Key": stage.bootstrap_key}
        )
        keys.append(made.json()["data"]["key"])
    for key in keys:
        row = await stage.pool.fetchrow(
            "SELECT key_hash, prefix FROM api_keys WHERE key_hash = $1", api_keys.digest(key)
        )
        assert row is not None
        assert bytes(row["key_hash"]) == hashlib.sha256(key.encode()).digest()
        assert len(row["prefix"]) <= 10 and key.startswith(row["prefix"])
    # No column of any table holds a whole key, in any row.
    tables = await stage.pool.fetch(
        "SELECT quote_ident(table_name) AS t FROM information_schema.tables "
        "WHERE table_schema = 'public' AND table_type = 'BASE TABLE'"
    )
    assert len(tables) > 10
    for key in keys:
        for table in tables:
            hits = await stage.pool.fetchval(
                f"SELECT count(*) FROM {table['t']} x WHERE position($1 in x::text) > 0", key
            )
            assert hits == 0, table["t"]


# Constant-time comparison ------------------------------------------------------------------

_SECRET_NAMES = {
    "expected",
    "given",
    "header_value",
    "signature",
    "token",
    "verify_token",
    "client_token",
    "secret",
    "app_secret",
    "auth_token",
}
VERIFIERS: list[Callable[..., Any]] = [
    twilio.verify_signature,
    whatsapp.verify_signature,
    whatsapp.verify_challenge,
    rbm.verify_signature,
    rbm.registration_response,
    viber.verify_signature,
]


@pytest.mark.parametrize("verifier", VERIFIERS, ids=lambda f: f"{f.__module__}.{f.__name__}")
def test_no_secret_is_compared_with_eq(verifier: Callable[..., Any]) -> None:
    tree = ast.parse(textwrap.dedent(inspect.getsource(verifier)))
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Eq | ast.NotEq) for op in node.ops
        ):
            names = {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
            assert not names & _SECRET_NAMES, ast.unparse(node)


def test_webhook_secrets_go_through_compare_digest(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[tuple[Any, Any]] = []
    original = hmac.compare_digest

    def spy(a: Any, b: Any) -> bool:
        calls.append((a, b))
        return original(a, b)

    monkeypatch.setattr(hmac, "compare_digest", spy)
    body, url, params = b'{"x": 1}', "https://h/callbacks/twilio?m=c.1.1", {"a": "b"}
    push = rbm_push({"eventType": "READ", "messageId": "c.1.1"})
    data = base64.b64decode(push["message"]["data"])
    cases: list[tuple[str, Callable[[str], Any], str, Any]] = [
        (
            "twilio",
            lambda sig: twilio.verify_signature(url, params, "tok", sig),
            twilio.signature(url, params, "tok"),
            True,
        ),
        (
            "whatsapp",
            lambda sig: whatsapp.verify_signature("app", body, sig),
            whatsapp.signature("app", body),
            True,
        ),
        (
            "viber",
            lambda sig: viber.verify_signature("tok", body, sig),
            viber.signature("tok", body),
            True,
        ),
        (
            "rbm",
            lambda sig: rbm.verify_signature("tok", push, sig),
            rbm.signature("tok", data),
            True,
        ),
        (
            "whatsapp-challenge",
            lambda tok: whatsapp.verify_challenge(
                {"hub.mode": "subscribe", "hub.verify_token": tok, "hub.challenge": "c"}, "vt"
            ),
            "vt",
            "c",
        ),
        (
            "rbm-handshake",
            lambda tok: rbm.registration_response({"clientToken": tok, "secret": "s"}, "ct"),
            "ct",
            "s",
        ),
    ]
    for name, check, right, accepted in cases:
        # A wrong value of the same length: the answer must come from compare_digest.
        wrong = right[:-1] + ("A" if right[-1] != "A" else "B")
        calls.clear()
        assert check(wrong) in (False, None), name
        assert calls, f"{name}: compared without hmac.compare_digest"
        calls.clear()
        assert check(right) == accepted, name
        assert calls, f"{name}: compared without hmac.compare_digest"


async def test_api_keys_are_hashed_before_they_are_looked_up(
    stage: Stage, monkeypatch: pytest.MonkeyPatch
) -> None:
    digested: list[str] = []
    original = api_keys.digest

    def spy(key: str) -> bytes:
        digested.append(key)
        return original(key)

    monkeypatch.setattr(api_keys, "digest", spy)
    probe = f"hk_probe_{uuid.uuid4().hex}"
    async with httpx.AsyncClient(base_url=stage.api, timeout=10) as http:
        response = await http.get("/v1/contacts", headers={"X-API-Key": probe})
    assert response.status_code == 401
    # The key reaches the database only as its digest: an index lookup on a SHA-256 tells a
    # timing attacker nothing about the key.
    assert digested == [probe]
    assert auth.MAX_KEY_LENGTH <= 1024
