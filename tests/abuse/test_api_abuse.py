"""The control-plane API under abuse, over a real socket (uvicorn on 127.0.0.1).

- Schema-driven fuzzing: schemathesis reads /openapi.json from the running server and sends
  valid and invalid requests to every operation; none may answer 5xx, and every answer must
  match the document (status, content type, body, headers). Path parameters are also drawn
  from real resources of the calling account, so the fuzzing reaches past "404 not found".
- SQL injection: hostile strings in every string a request can carry to SQL (search,
  filters, segment rules, contact, list, template and campaign fields, path parameters) come
  back as plain data and leave the database as it was (a canary table, other accounts' rows).
- Oversize and malformed bodies: 413 or 400/422 in herald's envelope, and nothing written.
- Floods: a key over its rate gets 429 with Retry-After, another key does not notice, and a
  refused request did nothing.
- Cross-account access: a second account's key against every route of the app, filled with
  the first account's ids, answers 404 and changes nothing.
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from typing import Any

import anyio
import asyncpg
import httpx
import orjson
import pytest
import requests
import schemathesis
from fastapi.routing import APIRoute
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from herald.api.app import create_app, serve
from herald.api.config import ApiConfig
from herald.api.errors import ErrorCode
from herald.api.keys import create_account_key
from herald.embedded import free_port
from herald.settings import Settings
from tests.abuse.support import ThreadedApi

MAX_BODY_BYTES = 64 * 1024
# Examples per operation and generation mode: 52 operations, so this bounds the whole run.
EXAMPLES_PER_OPERATION = 6
CATALOGUE = {code.code for code in ErrorCode}

_APP = create_app(pool=None, config=ApiConfig())  # the routes and document need no database
OPERATIONS = sorted(
    (method.upper(), path)
    for path, item in _APP.openapi()["paths"].items()
    for method in item
    if method in {"get", "put", "post", "delete", "patch"}
)


@dataclass(frozen=True)
class Tenant:
    account_id: str
    key: str

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}


@dataclass(frozen=True)
class Target:
    api: ThreadedApi
    owner: Tenant
    intruder: Tenant
    # Path parameter name → one of the owner's resources (seeded over the API).
    ids: dict[str, str]
    sent_campaign_id: str
    whatsapp_template_id: str


async def _tenant(pool: asyncpg.Pool, label: str) -> Tenant:
    account = f"{label}-{uuid.uuid4().hex[:8]}"
    return Tenant(account_id=account, key=await create_account_key(pool, account, label))


def _data(response: httpx.Response, status: int) -> Any:
    assert response.status_code == status, response.text
    return response.json()["data"]


async def _seed(url: str, owner: Tenant) -> tuple[dict[str, str], str, str]:
    """One of each resource for `owner`, made through the API itself."""
    async with httpx.AsyncClient(base_url=url, headers=owner.headers, timeout=10) as http:
        contact = _data(
            await http.post(
                "/v1/contacts",
                json={
                    "phone": "+14155550123",
                    "email": "owner@example.com",
                    "first_name": "Owner",
                    "tags": ["vip"],
                    "metadata": {"plan": "gold", "seats": 12},
                },
            ),
            201,
        )
        members = {"contact_ids": [contact["id"]]}
        listed = _data(await http.post("/v1/contacts/lists", json={"name": "owners"}), 201)
        _data(await http.post(f"/v1/contacts/lists/{listed['id']}/members", json=members), 200)
        segment = _data(
            await http.post(
                "/v1/contacts/segments",
                json={"name": "vips", "rules": {"tags": {"$contains": "vip"}}},
            ),
            201,
        )
        template = _data(
            await http.post(
                "/v1/templates", json={"name": "hi", "channel": "sms", "body": "Hi {{first_name}}"}
            ),
            201,
        )
        whatsapp = _data(
            await http.post(
                "/v1/templates",
                json={
                    "name": "wa",
                    "channel": "whatsapp",
                    "language": "en_US",
                    "components": [{"type": "body", "text": "Hi {{1}}"}],
                },
            ),
            201,
        )
        draft = {"name": "spring", "channel": "sms", "body": "Hi", "list_id": listed["id"]}
        campaign = _data(await http.post("/v1/campaigns", json=draft), 201)
        sent = _data(await http.post("/v1/campaigns", json={**draft, "name": "sent"}), 201)
        _data(await http.post(f"/v1/campaigns/{sent['id']}/send"), 202)
        spare = _data(await http.post("/v1/api-keys", json={"name": "spare"}), 201)
    ids = {
        "contact_id": contact["id"],
        "list_id": listed["id"],
        "segment_id": segment["id"],
        "template_id": template["id"],
        "campaign_id": campaign["id"],
        "key_id": spare["id"],
        "tag": "vip",
    }
    return ids, sent["id"], whatsapp["id"]


@pytest.fixture(scope="module")
async def tenants(api_pool: asyncpg.Pool) -> tuple[Tenant, Tenant]:
    return await _tenant(api_pool, "owner"), await _tenant(api_pool, "intruder")


@pytest.fixture(scope="module")
def served(api_db_url: str) -> Iterator[ThreadedApi]:
    # The limits are on but far above what the fuzzing sends (its requests without a key or
    # with a forged one are many); the flood test and test_api_guards have their own servers.
    config = ApiConfig(
        max_body_bytes=MAX_BODY_BYTES,
        rate_limit_per_s=10_000,
        rate_limit_burst=10_000,
        auth_failure_rate_per_s=10_000,
        auth_failure_burst=10_000,
    )
    with ThreadedApi(api_db_url, config) as api:
        yield api


@pytest.fixture(scope="module")
async def target(served: ThreadedApi, tenants: tuple[Tenant, Tenant]) -> Target:
    owner, intruder = tenants
    ids, sent, whatsapp = await _seed(served.url, owner)
    return Target(
        api=served,
        owner=owner,
        intruder=intruder,
        ids=ids,
        sent_campaign_id=sent,
        whatsapp_template_id=whatsapp,
    )


@pytest.fixture(scope="module")
def schema(served: ThreadedApi) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{served.url}/openapi.json", timeout=10)


# Leaves swapped into otherwise generated requests: what breaks stores, parsers and SQL.
HOSTILE_TEXT = (
    "\x00",
    "a\x00b",
    "' OR '1'='1",
    "'; DROP TABLE contacts; --",
    "$1",
    "\\",
    "%_%",
    "x" * 5000,
    "\u202e\U0001d518\U0001d52b",
    "{{first_name}}",
    "9999-12-31T23:59:59-14:00",
)
# (Lone surrogates and NaN cannot pass schemathesis' own client; raw bodies below send them.)
HOSTILE_BODY_ONLY: tuple[Any, ...] = (2**70, -(2**70), 1e308, True, None, [], {})


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _leaves(item, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _leaves(item, (*path, index))
    elif isinstance(value, str):
        yield path


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replaced(copy[head], rest, new)
    return copy


def _poisoned(drawn: tuple[schemathesis.Case[Any], Any, int]) -> schemathesis.Case[Any]:
    """The case with one of its string leaves (body, query or path) replaced by `hostile`."""
    case, hostile, pick = drawn
    spots: list[tuple[str, tuple[Any, ...]]] = []
    if isinstance(case.body, dict | list):
        spots += [("body", p) for p in _leaves(case.body)]
    if isinstance(hostile, str) and hostile in HOSTILE_TEXT:  # sendable in a URL
        spots += [("query", (k,)) for k, v in (case.query or {}).items() if isinstance(v, str)]
        spots += [("path_parameters", (k,)) for k in case.path_parameters or {}]
    if not spots:
        return case
    where, path = spots[pick % len(spots)]
    if where == "body":
        case.body = _replaced(case.body, path, hostile)
    else:
        container = dict(getattr(case, where))
        container[path[0]] = hostile
        setattr(case, where, container)
    return case


def _assert_envelope(response: Any) -> None:
    """herald's own rule on top of the document: every 4xx is {error: {code, ...}, meta}."""
    body = response.json()
    assert set(body) == {"error", "meta"}, body
    assert body["error"]["code"] in CATALOGUE, body
    assert body["meta"]["request_id"], body


# Schema-driven fuzzing ---------------------------------------------------------------------


def test_served_document_is_the_apps(schema: schemathesis.BaseSchema) -> None:
    served = {(m.upper(), p) for p, item in schema.raw_schema["paths"].items() for m in item}
    assert served == set(OPERATIONS)


@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_fuzzed_requests_never_fail_the_server(
    target: Target, schema: schemathesis.BaseSchema, method: str, path: str
) -> None:
    operation = schema[path][method]
    names = re.findall(r"\{(\w+)\}", path)
    fixed = {name: target.ids[name] for name in names if name in target.ids}
    strategies = [
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    ]
    if fixed:
        strategies += [
            operation.as_strategy(generation_mode=GenerationMode.POSITIVE, path_parameters=fixed),
            operation.as_strategy(generation_mode=GenerationMode.NEGATIVE, path_parameters=fixed),
        ]
    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
        response_headers_conformance,
    ]
    session = requests.Session()
    generated = st.one_of(strategies)
    hostile = st.sampled_from(HOSTILE_TEXT + HOSTILE_BODY_ONLY)
    poisoned = st.tuples(generated, hostile, st.integers(0, 10_000)).map(_poisoned)

    @settings(
        max_examples=EXAMPLES_PER_OPERATION * len(strategies) // 2,
        deadline=None,
        derandomize=True,
        database=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=st.one_of(generated, poisoned))
    def run(case: schemathesis.Case[Any]) -> None:
        response = case.call(
            base_url=target.api.url, session=session, headers=target.owner.headers, timeout=15
        )
        case.validate_response(response, checks=checks, headers=target.owner.headers)
        if 400 <= response.status_code < 500:
            _assert_envelope(response)

    try:
        run()
    finally:
        session.close()


# SQL injection -----------------------------------------------------------------------------

SQL_INJECTION = (
    "' OR '1'='1",
    "' OR 1=1 --",
    "'; DROP TABLE contacts; --",
    '"; DELETE FROM api_keys; --',
    "1); TRUNCATE accounts CASCADE; --",
    "' UNION SELECT key_hash::text FROM api_keys --",
    "$1",
    "'; SELECT pg_sleep(3); --",
    "%' AND '%'='",
    "*/ OR /*",
    "\\'; UPDATE contacts SET first_name = 'pwned'; --",
    "abuse_canary",
)
# Every paginated list and its cursor's kind (a cursor is base64 JSON [kind, *position]).
CURSOR_KINDS = (
    ("/v1/contacts", "contacts"),
    ("/v1/contacts/optouts", "optouts"),
    ("/v1/contacts/lists", "lists"),
    ("/v1/contacts/segments", "segments"),
    ("/v1/templates", "templates"),
    ("/v1/campaigns", "campaigns-desc"),
)


def _cursor(kind: str, *position: Any) -> str:
    raw = orjson.dumps([kind, *position])
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


# Tables that carry an account id: rows of every other account are fingerprinted.
ACCOUNT_TABLES = ("contacts", "lists", "segments", "templates", "campaign_drafts", "api_keys")


async def _fingerprint(pool: asyncpg.Pool, attacker: str) -> dict[str, Any]:
    found: dict[str, Any] = {
        "canary": await pool.fetch("SELECT * FROM abuse_canary ORDER BY id"),
        "accounts": await pool.fetchval(
            "SELECT md5(string_agg(a::text, ',' ORDER BY a::text)) FROM accounts a WHERE id <> $1",
            attacker,
        ),
    }
    for table in ACCOUNT_TABLES:
        found[table] = await pool.fetchval(
            f"SELECT count(*)::text || md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), ''))"
            f" FROM {table} t WHERE account_id <> $1",
            attacker,
        )
    return found


def _oracle(rows: list[dict[str, Any]], test: Any) -> set[str]:
    return {r["id"] for r in rows if test(r)}


async def test_sql_injection_is_only_ever_data(target: Target, api_pool: asyncpg.Pool) -> None:
    attacker = await _tenant(api_pool, "attacker")
    await api_pool.execute(
        "CREATE TABLE IF NOT EXISTS abuse_canary (id int PRIMARY KEY, note text NOT NULL)"
    )
    await api_pool.execute("INSERT INTO abuse_canary VALUES (1, 'alive') ON CONFLICT DO NOTHING")
    before = await _fingerprint(api_pool, attacker.account_id)
    async with httpx.AsyncClient(
        base_url=target.api.url, headers=attacker.headers, timeout=10
    ) as http:
        contacts: list[dict[str, Any]] = []
        for i, payload in enumerate(SQL_INJECTION):
            body = {
                "email": f"sqli{i}@example.com",
                "first_name": payload,
                "last_name": payload,
                "lifecycle_stage": payload,
                "tags": [payload],
                "metadata": {"note": payload, payload: i},
            }
            made = _data(await http.post("/v1/contacts", json=body), 201)
            fetched = _data(await http.get(f"/v1/contacts/{made['id']}"), 200)
            for name in ("first_name", "last_name", "lifecycle_stage"):
                assert fetched[name] == payload
            assert fetched["tags"] == [payload]
            assert fetched["metadata"] == {"note": payload, payload: i}
            contacts.append(fetched)
            listed = _data(await http.post("/v1/contacts/lists", json={"name": payload}), 201)
            assert listed["name"] == payload
            template = {"name": payload, "channel": "sms", "body": payload}
            assert _data(await http.post("/v1/templates", json=template), 201)["body"] == payload
            campaign = {"name": payload, "description": payload, "channel": "sms", "body": "x"}
            assert _data(await http.post("/v1/campaigns", json=campaign), 201)["name"] == payload

        ids = {c["id"] for c in contacts}
        for payload in SQL_INJECTION:
            # Filters are equality on data: exactly the one contact holding the payload.
            started = time.monotonic()
            found = _data(await http.get("/v1/contacts", params={"lifecycle_stage": payload}), 200)
            assert time.monotonic() - started < 2, "a pg_sleep payload ran"
            assert {c["id"] for c in found} == _oracle(
                contacts, lambda c, p=payload: c["lifecycle_stage"] == p
            )
            found = _data(await http.get("/v1/contacts", params={"tag": payload}), 200)
            assert {c["id"] for c in found} == _oracle(
                contacts, lambda c, p=payload: p in c["tags"]
            )
            for path in ("/v1/contacts", "/v1/contacts/optouts", "/v1/campaigns"):
                found = _data(await http.get(path, params={"search": payload, "limit": 100}), 200)
                if path == "/v1/contacts":
                    assert {c["id"] for c in found} <= ids  # never another account's rows
            named = _data(await http.get("/v1/campaigns", params={"search": payload}), 200)
            assert named and all(payload.lower() in c["name"].lower() for c in named)

            rules_and_oracles = [
                ({"first_name": payload}, lambda c, p=payload: c["first_name"] == p),
                (
                    {"metadata.note": {"$contains": payload}},
                    lambda c, p=payload: p.lower() in c["metadata"]["note"].lower(),
                ),
                ({"tags": {"$in": [payload, "none"]}}, lambda c, p=payload: p in c["tags"]),
                (
                    {"$or": [{"last_name": payload}, {"email": {"$contains": payload}}]},
                    lambda c, p=payload: c["last_name"] == p or p.lower() in c["email"],
                ),
                (
                    {"$not": {"lifecycle_stage": {"$ne": payload}}},
                    lambda c, p=payload: c["lifecycle_stage"] == p,
                ),
            ]
            for rules, oracle in rules_and_oracles:
                segment = _data(
                    await http.post("/v1/contacts/segments", json={"name": "s", "rules": rules}),
                    201,
                )
                members = _data(
                    await http.get(
                        f"/v1/contacts/segments/{segment['id']}/contacts", params={"limit": 100}
                    ),
                    200,
                )
                assert {c["id"] for c in members} == _oracle(contacts, oracle), rules
                assert segment["contact_count"] == len(members)
            # A payload as a field name or a metadata key is refused, naming where it was
            # (a metadata key of plain word characters is a key like any other).
            refused: list[dict[str, Any]] = [{payload: "x"}]
            if not re.fullmatch(r"[\w\-]+", payload):
                refused.append({f"metadata.{payload}": "x"})
            for rules in refused:
                response = await http.post(
                    "/v1/contacts/segments", json={"name": "s", "rules": rules}
                )
                assert response.status_code == 422, response.text
                assert response.json()["error"]["code"] == "invalid_segment_rules"
                assert response.json()["error"]["field"].startswith("rules.")
            # In a path: not found, never an error.
            quoted = httpx.URL("/v1/campaigns/").join(payload.replace("/", "%2F"))
            assert (await http.get(str(quoted))).status_code == 404
            # In a forged cursor: refused as a cursor herald did not issue, or (where ids
            # are free text) a position like any other.
            for path, kind in CURSOR_KINDS:
                forged = _cursor(kind, "2026-01-01T00:00:00+00:00", payload)
                response = await http.get(path, params={"cursor": forged})
                assert response.status_code in (200, 400), (path, response.text)
                if response.status_code == 400:
                    assert response.json()["error"]["code"] == "invalid_cursor"

    assert await _fingerprint(api_pool, attacker.account_id) == before


# Oversize and malformed bodies -------------------------------------------------------------


async def _count_contacts(pool: asyncpg.Pool, account: str) -> int:
    count: int = await pool.fetchval("SELECT count(*) FROM contacts WHERE account_id = $1", account)
    return count


def _error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    _assert_envelope(response)
    detail: dict[str, Any] = response.json()["error"]
    assert detail["code"] == code, detail
    return detail


async def test_oversize_and_malformed_bodies_are_refused_whole(
    target: Target, api_pool: asyncpg.Pool
) -> None:
    caller = await _tenant(api_pool, "bulky")
    json_type = {**caller.headers, "Content-Type": "application/json"}
    big = {"phone": "+14155550100", "metadata": {"blob": "x" * (MAX_BODY_BYTES + 1)}}
    raw_big = httpx.Request("POST", "/", json=big).content

    async def chunks() -> AsyncIterator[bytes]:
        for start in range(0, len(raw_big), 8192):
            yield raw_big[start : start + 8192]

    async with httpx.AsyncClient(base_url=target.api.url, timeout=10) as http:
        # Declared too large, and streamed without a length (chunked): both 413.
        _error(
            await http.post("/v1/contacts", content=raw_big, headers=json_type),
            413,
            ("payload_too_large"),
        )
        _error(
            await http.post("/v1/contacts", content=chunks(), headers=json_type),
            413,
            ("payload_too_large"),
        )
        # Nested past what any decoder should follow: 400, not a crash.
        nested = b"[" * 30_000 + b"]" * 30_000
        _error(
            await http.post("/v1/contacts", content=nested, headers=json_type),
            400,
            ("malformed_request"),
        )
        # Values PostgreSQL cannot keep: 422 naming the field, before anything is written.
        for raw, field in [
            (b'{"phone": "+14155550101", "first_name": "a\\u0000b"}', "first_name"),
            (b'{"phone": "+14155550102", "first_name": "\\ud800"}', "first_name"),
            (b'{"phone": "+14155550103", "metadata": {"x": "\\udfff"}}', "metadata.x"),
            (b'{"phone": "+14155550104", "metadata": {"n": NaN}}', "metadata.n"),
            (b'{"phone": "+14155550105", "metadata": {"n": -Infinity}}', "metadata.n"),
            (b'{"phone": "+14155550106", "metadata": {"n": 1e999}}', "metadata.n"),
            (b'{"phone": "+14155550107", "metadata": {"n": 36893488147419103232}}', "metadata.n"),
            (b'{"phone": "+14155550108", "tags": ["ok", "a\\u0000"]}', "tags.1"),
            (
                b'{"phone": "+14155550109", "metadata": ' + b'{"a": ' * 70 + b"1" + b"}" * 71,
                "metadata" + ".a" * 63,
            ),
            (b'{"name": "s", "rules": {"first_name": {"$in": ["a\\u0000"]}}}', None),
        ]:
            path = "/v1/contacts/segments" if b'"rules"' in raw else "/v1/contacts"
            detail = _error(
                await http.post(path, content=raw, headers=json_type), 422, "validation_failed"
            )
            expected = field or "rules.first_name.$in.0"
            assert detail["field"] == expected, (raw[:60], detail)
        # One field far over its limit: 422 naming it.
        long_name = {"phone": "+14155550110", "first_name": "x" * 10_000}
        detail = _error(
            await http.post("/v1/contacts", json=long_name, headers=caller.headers),
            422,
            "validation_failed",
        )
        assert detail["field"] == "first_name"
        # The bulk import streams past the body limit, but a line past its own limit fails
        # the whole import, which writes nothing.
        huge_line = b"phone,first_name\n+14155550111,ok\n+14155550112," + b"y" * (70 * 1024)
        detail = _error(
            await http.post(
                "/v1/contacts/import",
                content=huge_line,
                headers={**caller.headers, "Content-Type": "text/csv"},
            ),
            400,
            "import_failed",
        )
        assert detail["field"] == "body"
        # A row PostgreSQL cannot keep is rejected by itself; the rest are imported.
        rows = b"phone,first_name\n+14155550113,a\x00b\n+14155550114,fine\n"
        result = _data(
            await http.post(
                "/v1/contacts/import",
                content=rows,
                headers={**caller.headers, "Content-Type": "text/csv"},
            ),
            200,
        )
        assert (result["imported"], result["rejected"]) == (1, 1)
        assert result["errors"][0]["field"] == "first_name"
    assert await _count_contacts(api_pool, caller.account_id) == 1


# Floods ------------------------------------------------------------------------------------

FLOOD_RATE_PER_S = 5.0
FLOOD_BURST = 5


@pytest.fixture
async def throttled(api_pool: asyncpg.Pool) -> AsyncIterator[str]:
    """The API with a tight per-key limit, served by this test's event loop."""
    port = free_port()
    stop, ready = anyio.Event(), anyio.Event()
    config = ApiConfig(rate_limit_per_s=FLOOD_RATE_PER_S, rate_limit_burst=FLOOD_BURST)
    task = asyncio.create_task(
        serve(
            settings=Settings.development(drain_timeout_s=2.0),
            pool=api_pool,
            stop=stop,
            host="127.0.0.1",
            port=port,
            ready=ready,
            config=config,
        )
    )
    with anyio.fail_after(10):
        await ready.wait()
    yield f"http://127.0.0.1:{port}"
    stop.set()
    with anyio.fail_after(10):
        await task


async def test_a_flood_is_throttled_per_key_with_retry_after(
    throttled: str, api_pool: asyncpg.Pool
) -> None:
    noisy, quiet = await _tenant(api_pool, "noisy"), await _tenant(api_pool, "quiet")
    async with httpx.AsyncClient(base_url=throttled, timeout=10) as http:
        started = time.monotonic()
        answers = await asyncio.gather(
            *(
                http.post(
                    "/v1/contacts",
                    json={"phone": f"+1415555{i:04d}", "first_name": "Flood"},
                    headers={**noisy.headers, "X-Request-ID": f"flood-{i}"},
                )
                for i in range(30)
            )
        )
        elapsed_s = time.monotonic() - started
        made = [r for r in answers if r.status_code == 201]
        refused = [r for r in answers if r.status_code == 429]
        assert len(made) + len(refused) == len(answers)
        # The burst, plus what refilled while the flood lasted.
        assert FLOOD_BURST <= len(made) <= FLOOD_BURST + 1 + int(elapsed_s * FLOOD_RATE_PER_S)
        # A refused write did nothing, so it is safe to repeat: exactly the 201s exist.
        assert await _count_contacts(api_pool, noisy.account_id) == len(made)
        for response in refused:
            detail = _error(response, 429, "rate_limited")
            # The limit is the key's: the refusal names the header, with the catalogue number.
            assert (detail["field"], detail["number"]) == ("X-API-Key", 1005)
            assert response.headers["Retry-After"].isdigit()
            assert int(response.headers["Retry-After"]) >= 1
            # The request id is kept, so a client can tie the refusal to its request.
            assert response.json()["meta"]["request_id"] == response.headers["X-Request-ID"]
            assert response.headers["X-Request-ID"].startswith("flood-")

        # Another key is not slowed by the flood; a request without a key is a 401, not 429.
        assert (await http.get("/v1/contacts", headers=quiet.headers)).status_code == 200
        _error(await http.get("/v1/contacts"), 401, "unauthorized")

        # Retry-After is honest: after waiting it, the noisy key is served again.
        await asyncio.sleep(max(int(r.headers["Retry-After"]) for r in refused))
        assert (await http.get("/v1/contacts", headers=noisy.headers)).status_code == 200


def test_429_is_documented_with_retry_after() -> None:
    responses = _APP.openapi()["paths"]["/v1/contacts"]["get"]["responses"]
    assert "Retry-After" in responses["429"]["headers"]


# Cross-account access ----------------------------------------------------------------------

# A valid body for every route that takes one, so a 404 cannot hide behind a 422. A route
# added without an entry here fails the test until it gets one.
CROSS_BODIES: dict[tuple[str, str], Any] = {
    ("PUT", "/v1/contacts/{contact_id}"): {"first_name": "Mallory"},
    ("POST", "/v1/contacts/{contact_id}/tags"): {"tags": ["taken"]},
    ("PUT", "/v1/contacts/{contact_id}/preferences"): {"preferences": {"sms": False}},
    ("PUT", "/v1/contacts/lists/{list_id}"): {"name": "taken"},
    ("POST", "/v1/contacts/lists/{list_id}/members"): {"contact_ids": ["{contact_id}"]},
    ("POST", "/v1/contacts/lists/{list_id}/members/remove"): {"contact_ids": ["{contact_id}"]},
    ("PUT", "/v1/contacts/segments/{segment_id}"): {"rules": {}},
    ("PUT", "/v1/templates/{template_id}"): {"name": "taken"},
    ("PUT", "/v1/templates/{template_id}/approval"): {"status": "approved"},
    ("PUT", "/v1/campaigns/{campaign_id}"): {"name": "taken"},
    ("POST", "/v1/campaigns/{campaign_id}/pause"): {"reason": "taken"},
}
CROSS_QUERIES: dict[tuple[str, str], dict[str, str]] = {
    ("GET", "/v1/campaigns/{campaign_id}/stats/timeseries"): {
        "start_date": "2026-01-01",
        "end_date": "2026-01-02",
    },
}


def _routes() -> list[tuple[str, str, APIRoute]]:
    """(method, full path, route) of every endpoint the app serves."""
    try:  # FastAPI >= 0.160 keeps included routers whole and resolves their paths lazily
        from fastapi.routing import iter_route_contexts
    except ImportError:
        found = [(r.path, r) for r in _APP.routes if isinstance(r, APIRoute)]
    else:
        found = [
            (str(c.path), c.original_route)
            for c in iter_route_contexts(_APP.routes)
            if isinstance(c.original_route, APIRoute)
        ]
    return sorted(
        ((method, path, route) for path, route in found for method in route.methods or ()),
        key=lambda item: (item[1], item[0]),
    )


def test_every_documented_operation_is_a_route() -> None:
    assert {(m, p) for m, p, _ in _routes() if p.startswith("/v1/")} == set(OPERATIONS)


def _fill(value: Any, ids: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format(**ids) if "{" in value else value
    if isinstance(value, list):
        return [_fill(v, ids) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, ids) for k, v in value.items()}
    return value


async def _owner_view(http: httpx.AsyncClient, ids: dict[str, str], extra: list[str]) -> Any:
    """Everything the owner can read about its seeded resources, without request metadata."""
    paths = [
        f"/v1/contacts/{ids['contact_id']}",
        f"/v1/contacts/{ids['contact_id']}/preferences",
        f"/v1/contacts/lists/{ids['list_id']}",
        f"/v1/contacts/lists/{ids['list_id']}/members",
        f"/v1/contacts/segments/{ids['segment_id']}",
        f"/v1/templates/{ids['template_id']}",
        f"/v1/campaigns/{ids['campaign_id']}",
        "/v1/api-keys",
        *extra,
    ]
    return {path: (await http.get(path)).json()["data"] for path in paths}


async def test_another_account_gets_404_on_every_route(
    target: Target, api_pool: asyncpg.Pool
) -> None:
    owner, intruder = await _tenant(api_pool, "victim"), await _tenant(api_pool, "mallory")
    ids, sent_id, whatsapp_id = await _seed(target.api.url, owner)
    extra = [f"/v1/campaigns/{sent_id}", f"/v1/templates/{whatsapp_id}"]
    async with (
        httpx.AsyncClient(base_url=target.api.url, headers=owner.headers, timeout=10) as mine,
        httpx.AsyncClient(base_url=target.api.url, headers=intruder.headers, timeout=10) as theirs,
    ):
        before = await _owner_view(mine, ids, extra)
        tried = 0
        for method, path, route in _routes():
            names = re.findall(r"\{(\w+)\}", path)
            if not path.startswith("/v1/") or not names:
                continue
            key = (method, path)
            if route.body_field is not None:
                assert key in CROSS_BODIES, f"{method} {path}: add a body to CROSS_BODIES"
            required = [p.alias for p in route.dependant.query_params if p.field_info.is_required()]
            if required:
                assert key in CROSS_QUERIES, f"{method} {path}: add {required}"
            variants = [ids]
            if "campaign_id" in names:
                variants.append({**ids, "campaign_id": sent_id})
            if "template_id" in names:
                variants.append({**ids, "template_id": whatsapp_id})
            for variant in variants:
                body = _fill(CROSS_BODIES.get(key), variant)
                response = await theirs.request(
                    method, path.format(**variant), json=body, params=CROSS_QUERIES.get(key)
                )
                assert response.status_code == 404, (method, path, response.text)
                code = response.json()["error"]["code"]
                assert code == "not_found" or code.endswith("_not_found"), code
                tried += 1
        assert tried >= 40

        # Lists, searches and totals of the intruder's own never show the owner's rows.
        shown = ""
        for path in (
            "/v1/contacts",
            "/v1/contacts/optouts",
            "/v1/contacts/lists",
            "/v1/contacts/segments",
            "/v1/templates",
            "/v1/campaigns",
            "/v1/api-keys",
        ):
            shown += (await theirs.get(path, params={"limit": 100})).text
        shown += (await theirs.get("/v1/contacts", params={"search": "Owner"})).text
        shown += (await theirs.get("/v1/contacts", params={"tag": "vip"})).text
        for ident in [*ids.values(), sent_id, whatsapp_id]:
            if ident != "vip":
                assert ident not in shown
        totals = _data(await theirs.get("/v1/campaigns/stats"), 200)
        assert totals["total_campaigns"] == 0

        # The owner's ids inside the intruder's own requests reach nothing either.
        own_list = _data(await theirs.post("/v1/contacts/lists", json={"name": "mine"}), 201)
        added = _data(
            await theirs.post(
                f"/v1/contacts/lists/{own_list['id']}/members",
                json={"contact_ids": [ids["contact_id"]]},
            ),
            200,
        )
        assert added["added"] == [] and added["not_found"] == [ids["contact_id"]]
        response = await theirs.delete(
            f"/v1/contacts/lists/{own_list['id']}/members/{ids['contact_id']}"
        )
        assert response.status_code == 404
        borrowed = _data(
            await theirs.post(
                "/v1/campaigns",
                json={
                    "name": "borrowed",
                    "channel": "sms",
                    "body": "x",
                    "contact_ids": [ids["contact_id"]],
                    "tags": ["vip"],
                },
            ),
            201,
        )
        # Another account's contact is no contact of theirs: refused like an unknown id (it was
        # silently dropped, a goal of 0), and named as the caller wrote it.
        response = await theirs.post(f"/v1/campaigns/{borrowed['id']}/calculate-goal")
        assert response.status_code == 422, response.text
        assert response.json()["error"]["code"] == "audience_invalid"
        assert response.json()["error"]["field"] == "contact_ids"
        for reference in (
            {"list_ids": [ids["list_id"]]},
            {"segment_id": ids["segment_id"]},
            {"template_id": ids["template_id"], "body": None},
        ):
            draft = {"name": "borrowed", "channel": "sms", "body": "x", **reference}
            made = _data(await theirs.post("/v1/campaigns", json=draft), 201)
            response = await theirs.post(f"/v1/campaigns/{made['id']}/send")
            assert response.status_code == 422, response.text
            assert response.json()["error"]["code"] in {"audience_invalid", "template_invalid"}

        # Nothing the intruder did changed anything of the owner's.
        assert await _owner_view(mine, ids, extra) == before


async def test_a_segment_date_postgres_cannot_take_is_refused(
    target: Target, api_pool: asyncpg.Pool
) -> None:
    # Was: the segment was stored, counting it failed to encode the date (500), and every
    # later GET /v1/contacts/segments of the account was a 500 too.
    caller = await _tenant(api_pool, "far-future")
    rules = {"created_at": {"$gt": "9999-12-31T23:59:59-14:00"}}
    async with httpx.AsyncClient(base_url=target.api.url, headers=caller.headers) as http:
        response = await http.post("/v1/contacts/segments", json={"name": "far", "rules": rules})
        listed = await http.get("/v1/contacts/segments")
    assert listed.status_code == 200, listed.text
    detail = _error(response, 422, "invalid_segment_rules")
    assert detail["field"] == "rules.created_at.$gt"


async def test_forged_cursors_are_refused_as_cursors(
    target: Target, api_pool: asyncpg.Pool
) -> None:
    # Was: a cursor is client input; a forged id, time or number reached SQL as a parameter
    # PostgreSQL refused (uuid syntax, timestamptz range, int4 range, NUL): 500s.
    caller = await _tenant(api_pool, "cursors")
    ids, sent_id, _ = await _seed(target.api.url, caller)
    lists = [
        *CURSOR_KINDS,
        (f"/v1/contacts/lists/{ids['list_id']}/members", "members"),
        (f"/v1/contacts/segments/{ids['segment_id']}/contacts", "segment"),
        (f"/v1/contacts/{ids['contact_id']}/activity", "activity"),
    ]
    good_time, good_id = "2026-01-01T00:00:00+00:00", str(uuid.uuid4())
    forged_positions = [
        ("0001-01-01T00:00:00+14:00", good_id),
        ("9999-12-31T23:59:59-14:00", good_id),
        ("2026-01-01T00:00:00", good_id),
        (good_time, "not-a-uuid"),
        (good_time, "a\x00b"),
        (17, good_id),
        (good_time, ["x"]),
    ]
    async with httpx.AsyncClient(base_url=target.api.url, headers=caller.headers) as http:
        for path, kind in lists:
            for position in forged_positions:
                response = await http.get(path, params={"cursor": _cursor(kind, *position)})
                assert response.status_code in (200, 400), (path, position, response.text)
                if response.status_code == 400:
                    assert _error(response, 400, "invalid_cursor")["field"] == "cursor"
        recipients = f"/v1/campaigns/{sent_id}/recipients"
        for number in (2**31, 2**63, -1, 1.5, "1", True):
            response = await http.get(recipients, params={"cursor": _cursor("recipients", number)})
            assert _error(response, 400, "invalid_cursor")["field"] == "cursor"
        response = await http.get(recipients, params={"cursor": _cursor("recipients", 2**31 - 1)})
        assert response.status_code == 200
