"""/v1/api-keys: an account's keys. A new key is shown once; herald keeps only its hash.

`create_account_key` is also what `herald keys create` (the CLI) calls: an operator's key is
an admin key. A key made here is not, unless an admin key asks for one (`admin: true`).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import asyncpg
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel

from herald.api.auth import Account, Pool, key_is_admin
from herald.api.config import ApiConfig
from herald.api.envelope import Envelope, ListEnvelope, ok, page
from herald.api.errors import ApiError, ErrorCode
from herald.api.fields import STRICT, ShortText
from herald.store import api_keys

router = APIRouter(prefix="/v1/api-keys", tags=["api keys"])


class KeyIn(BaseModel):
    model_config = STRICT
    name: ShortText = ""
    admin: bool = False


class Key(BaseModel):
    id: str
    name: str
    prefix: str
    admin: bool
    created_at: datetime
    revoked_at: datetime | None


class NewKey(Key):
    key: str


def _out(k: api_keys.ApiKey) -> dict[str, Any]:
    return {
        "id": k.id,
        "name": k.name,
        "prefix": k.prefix,
        "admin": k.admin,
        "created_at": k.created_at,
        "revoked_at": k.revoked_at,
    }


async def create_account_key(
    pool: asyncpg.Pool, account_id: str, name: str = "", *, max_keys: int | None = None
) -> str:
    """Creates the account when missing and returns a new admin key for it (shown only now)."""
    await api_keys.ensure_account(pool, account_id, account_id)
    created = await api_keys.create_capped(pool, account_id, name, max_keys=max_keys, admin=True)
    if created is None:
        raise ApiError(ErrorCode.API_KEY_LIMIT, f"the account holds {max_keys} live keys")
    return created[0]


@router.get("", response_model=ListEnvelope[Key])
async def list_keys(request: Request, account: Account, pool: Pool) -> dict[str, Any]:
    return page(request, [_out(k) for k in await api_keys.list_for(pool, account)], None)


@router.post("", status_code=201, response_model=Envelope[NewKey])
async def create_key(request: Request, body: KeyIn, account: Account, pool: Pool) -> dict[str, Any]:
    config: ApiConfig = request.app.state.config
    if body.admin and not await key_is_admin(request, request.headers.get("X-API-Key")):
        raise ApiError(
            ErrorCode.ADMIN_REQUIRED, "Only an admin key makes admin keys", field="admin"
        )
    cap = config.max_keys_per_account
    created = await api_keys.create_capped(pool, account, body.name, max_keys=cap, admin=body.admin)
    if created is None:
        raise ApiError(
            ErrorCode.API_KEY_LIMIT,
            f"the account holds {cap} live keys; revoke one first",
            field="name",
        )
    key, stored = created
    return ok(request, {**_out(stored), "key": key})


@router.delete("/{key_id}", status_code=204, response_class=Response)
async def revoke_key(key_id: str, account: Account, pool: Pool) -> Response:
    if not await api_keys.revoke(pool, account, key_id):
        raise ApiError(ErrorCode.NOT_FOUND, "API key not found")
    return Response(status_code=204)
