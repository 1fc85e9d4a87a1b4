"""Connection pool and the translation of driver errors into herald's own."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import orjson


class StoreError(RuntimeError):
    """PostgreSQL could not do what was asked; retryable tells the caller whether to try again."""

    def __init__(self, message: str, *, retryable: bool) -> None:
        super().__init__(message)
        self.retryable = retryable


# What a restarting or unreachable PostgreSQL raises, or a conflict that rolled back: the
# operation did not happen (its transaction rolled back whole), so it can simply be tried
# again, as often as it takes.
UNAVAILABLE: tuple[type[BaseException], ...] = (
    asyncpg.exceptions.ConnectionDoesNotExistError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.SerializationError,
    asyncpg.exceptions.DeadlockDetectedError,
    asyncpg.exceptions.AdminShutdownError,
    ConnectionError,
    OSError,
)

# UNAVAILABLE plus the driver's own errors on a connection a restart cut mid-operation
# ("connection is closed", "cannot switch to state ..; another operation is in progress").
# The driver raises the same types for a caller's mistakes (a wrong argument count), so a
# handler of records counts these as failures, and a loop logs them and goes round again.
TRANSIENT: tuple[type[BaseException], ...] = (
    *UNAVAILABLE,
    asyncpg.exceptions.InterfaceError,
    asyncpg.exceptions.InternalClientError,
)

# Everything a role's loop catches from the store, logs and survives: the transient set plus
# the server's own errors (a statement timeout, a constraint) and herald's translation of them.
LOOP_ERRORS: tuple[type[BaseException], ...] = (
    StoreError,
    asyncpg.PostgresError,
    *TRANSIENT,
)


def translate(exc: BaseException) -> StoreError:
    retryable = isinstance(exc, UNAVAILABLE)
    return StoreError(f"{type(exc).__name__}: {exc}", retryable=retryable)


async def _init_connection(conn: asyncpg.Connection) -> None:
    await conn.set_type_codec(
        "jsonb",
        encoder=lambda v: orjson.dumps(v).decode(),
        decoder=orjson.loads,
        schema="pg_catalog",
    )


async def create_pool(url: str, *, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    try:
        pool = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, init=_init_connection
        )
    except Exception as exc:
        raise translate(exc) from exc
    assert pool is not None
    return pool


@asynccontextmanager
async def pool(url: str, *, max_size: int = 10) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(url, max_size=max_size)
    try:
        yield p
    finally:
        await p.close()
