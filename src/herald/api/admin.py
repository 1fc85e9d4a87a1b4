"""Operator commands for the API that the CLI exposes: `herald keys create`."""

from __future__ import annotations

import sys

from herald import embedded
from herald.api.errors import ApiError
from herald.api.keys import create_account_key
from herald.settings import Settings
from herald.store import db, migrations


async def keys_create(settings: Settings, account_id: str, name: str = "") -> int:
    """Creates the account if missing, prints a new API key for it once, and exits 0."""
    if not account_id.strip() or len(account_id) > 128:
        print("herald: --account must be 1 to 128 characters", file=sys.stderr)
        return 2
    async with (
        embedded.running(settings, broker=False) as resolved,
        db.pool(resolved.database_url, max_size=1) as pool,
    ):
        async with pool.acquire() as conn:
            await migrations.migrate(conn)
        try:
            key = await create_account_key(
                pool, account_id, name, max_keys=settings.api_max_keys_per_account
            )
        except ApiError as exc:
            print(f"herald: {exc.message} (revoke one first)", file=sys.stderr)
            return 2
    print(key)
    return 0
