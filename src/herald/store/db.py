"""Connection pool and the translation of driver errors into herald's own.

The pool waits for PostgreSQL at start (a role started during an outage retries within
HERALD_STARTUP_TIMEOUT_S instead of crash-looping), answers a readiness ping, and closes within
a bound even when the server hangs.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final
from urllib.parse import parse_qs, urlsplit

import anyio
import asyncpg
import orjson

from herald.errors import HeraldError, Unreachable
from herald.retry import until_up
from herald.store.queries import sql

DEPENDENCY: Final = "postgres"
PING_TIMEOUT_S: Final = 2.0
# Closing sends each connection a goodbye and waits for none; past this, a connection still
# held (a hung query) is cut.
CLOSE_TIMEOUT_S: Final = 2.0


class StoreError(HeraldError, RuntimeError):
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


# A server starting, restarting, out of connections or not reachable yet: waiting may help.
# A refused password or a missing database is raised at once.
_STARTING: tuple[type[BaseException], ...] = (
    *UNAVAILABLE,
    asyncpg.exceptions.TooManyConnectionsError,
    TimeoutError,
)


def _starting(exc: BaseException) -> bool:
    return isinstance(exc, _STARTING)


async def create_pool(
    url: str, *, min_size: int = 1, max_size: int = 10, startup_timeout_s: float = 0.0
) -> asyncpg.Pool:
    """A pool with one connection open; waits up to startup_timeout_s for the server (retrying
    with backoff), then raises herald.errors.Unreachable. Other failures become StoreError."""

    async def connect() -> asyncpg.Pool:
        created = await asyncpg.create_pool(
            url, min_size=min_size, max_size=max_size, init=_init_connection
        )
        assert created is not None
        return created

    try:
        return await until_up(
            DEPENDENCY,
            connect,
            timeout_s=startup_timeout_s,
            transient=_starting,
            where=where(url),
        )
    except Unreachable:
        raise  # a ConnectionError too: not one for translate()
    except (asyncpg.PostgresError, *TRANSIENT) as exc:
        raise translate(exc) from exc


@asynccontextmanager
async def pool(
    url: str,
    *,
    max_size: int = 10,
    startup_timeout_s: float = 0.0,
    close_timeout_s: float = CLOSE_TIMEOUT_S,
) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(url, max_size=max_size, startup_timeout_s=startup_timeout_s)
    try:
        yield p
    finally:
        await close(p, close_timeout_s)


async def close(p: asyncpg.Pool, timeout_s: float = CLOSE_TIMEOUT_S) -> None:
    """Close gracefully within timeout_s, even when cancelled; past it, cut the connections."""
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(timeout_s):
            await p.close()
            return
        p.terminate()


async def ping(p: asyncpg.Pool, timeout_s: float = PING_TIMEOUT_S) -> None:
    """Returns once PostgreSQL answers a trivial query through the pool within timeout_s;
    raises TimeoutError or the driver's error otherwise. A readiness check."""
    conn: asyncpg.Connection | None = None
    try:
        with anyio.fail_after(timeout_s):
            conn = await p.acquire()
            await conn.fetchval(sql("db", "ping"))
    except BaseException:
        if conn is not None:
            # It did not answer in time: cut it rather than give it back for reuse (the
            # pool's reset on release would wait on the same silent server).
            conn.terminate()
        raise
    finally:
        if conn is not None:
            # Shielded so that a cancelled check still gives its connection back; bounded, as
            # the reset on release asks the server, which may have stopped answering just now
            # (asyncpg cuts the connection when the reset times out).
            with anyio.CancelScope(shield=True):
                await p.release(conn, timeout=timeout_s)


def where(url: str) -> str:
    """host:port/database of a PostgreSQL URL, without its credentials: for log lines."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or parse_qs(parts.query).get("host", [""])[0] or "localhost"
        port = parts.port or 5432
    except ValueError:
        return "(unreadable URL)"
    database = parts.path.lstrip("/")
    return f"{host}:{port}/{database}" if database else f"{host}:{port}"
