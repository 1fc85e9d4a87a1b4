"""Building blocks of fault scenarios: campaigns, waits, and roles in child processes."""

from __future__ import annotations

import contextlib
import os
import signal
import traceback
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Final

import anyio
import asyncpg

from herald import runner
from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.channels import Channel, SendingMode, chain
from herald.process import ChildRole
from herald.settings import Settings
from herald.store import accounts
from tests.pipeline import publish_event
from tests.viber_users import link_viber_users

# Every role a campaign passes through (the control-plane API and its relay are not needed).
PIPELINE: Final = frozenset(runner.ROLES) - {"api", "relay"}


@dataclass(kw_only=True)
class Roles:
    """Herald's roles running in this process: every crash that ended them once they were up,
    and how many restarts failed before they were up again."""

    crashes: list[str] = field(default_factory=list)
    failed_starts: int = 0


def describe(exc: BaseException) -> str:
    """The first leaf of an exception group, and where in herald it came from."""
    while isinstance(exc, BaseExceptionGroup):
        exc = exc.exceptions[0]
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if "/herald/" in f.filename]
    where = " > ".join(f"{Path(f.filename).stem}.{f.name}" for f in frames[:1] + frames[-1:])
    return f"{type(exc).__name__}: {str(exc)[:160]} (in {where or 'unknown'})"


@contextlib.asynccontextmanager
async def pipeline(settings: Settings, roles: frozenset[str] = PIPELINE) -> AsyncIterator[Roles]:
    """Roles in this process, started again after a crash as a pod would be; the crashes
    are kept for the "roles kept running" invariant."""
    stop = anyio.Event()
    ready = anyio.Event()
    found = Roles()

    async def mirror(up: anyio.Event) -> None:
        await up.wait()
        ready.set()

    async def supervise() -> None:
        while not stop.is_set():
            up = anyio.Event()
            async with anyio.create_task_group() as tg:
                tg.start_soon(mirror, up)
                try:
                    await runner.run_roles(settings, roles, stop, up)
                except Exception as exc:
                    if up.is_set():
                        found.crashes.append(describe(exc))
                    else:  # e.g. PostgreSQL is still down: try again, as a pod would
                        found.failed_starts += 1
                    with anyio.move_on_after(1.0):
                        await stop.wait()
                finally:
                    tg.cancel_scope.cancel()

    async with anyio.create_task_group() as tg:
        tg.start_soon(supervise)
        with anyio.fail_after(60):
            await ready.wait()
        try:
            yield found
        finally:
            stop.set()


# Like contacts.insert_synthetic, with contact ids in phone order: expansion numbers
# recipients by contact id, so recipient n always has phone first_phone + n - 1, and the
# simulator's per-number outcomes and per-message-id faults meet the same way on every run.
CONTACTS = """
INSERT INTO contacts (id, account_id, phone, email, first_name, last_name, tags)
SELECT (regexp_replace(substr(md5($1), 1, 20), '(.{8})(.{4})(.{4})(.{4})', '\\1-\\2-\\3-\\4-')
        || lpad(to_hex(g), 12, '0'))::uuid,
       $1,
       CASE WHEN $6 > 0 AND g % $6 = 0 THEN '12345' ELSE '+' || ($3::bigint + g)::text END,
       'guest' || g::text || '@example.com',
       CASE WHEN $5 > 0 AND g % $5 = 0 THEN NULL ELSE 'Guest' || g::text END,
       'Fault',
       ARRAY[$4::text]
FROM generate_series(0, $2 - 1) AS g
"""


@dataclass(frozen=True, kw_only=True)
class Campaign:
    id: str
    account_id: str
    mode: SendingMode
    recipients: int
    event: dict[str, Any]


async def campaign(
    settings: Settings,
    pool: asyncpg.Pool,
    *,
    recipients: int,
    mode: SendingMode = SendingMode.SMS,
    rate_per_s: float | None = None,
    batch_size: int = 100,
    campaign_id: str | None = None,
    account_id: str | None = None,
    first_phone: int = FIRST_PHONE,
    nameless_every: int = 0,
    bad_phone_every: int = 0,
    publish: bool = True,
) -> Campaign:
    """An account with `recipients` synthetic contacts and a campaign.confirmed for them.

    Recipient n has phone first_phone + n - 1; with a fixed campaign id the simulator's
    injected faults (drawn from herald's message ids) are also the same on every run.
    """
    account_id = account_id or f"acct-{uuid.uuid4().hex[:8]}"
    campaign_id = campaign_id or str(uuid.uuid4())
    tag = f"t{uuid.uuid4().hex[:8]}"
    await accounts.ensure(pool, account_id, "fault", rate_per_s)
    await pool.execute(
        CONTACTS, account_id, recipients, first_phone, tag, nameless_every, bad_phone_every
    )
    event = campaign_event(campaign_id=campaign_id, account_id=account_id, mode=mode, tags=[tag])
    event["batch_size"] = batch_size
    if Channel.VIBER in chain(mode):
        # Viber addresses user ids, learned from the users' own callbacks (simulator, ingress
        # and the status role must be running).
        await link_viber_users(settings, pool, account_id)
    if publish:
        await publish_event(settings, event)
    return Campaign(
        id=campaign_id, account_id=account_id, mode=mode, recipients=recipients, event=event
    )


async def until(
    check: Callable[[], Awaitable[bool]], *, timeout_s: float, what: str, every_s: float = 0.05
) -> None:
    """Poll check until it holds; a TimeoutError naming `what` after timeout_s."""
    with anyio.move_on_after(timeout_s):
        while not await check():
            await anyio.sleep(every_s)
        return
    raise TimeoutError(f"waited {timeout_s:g} s for {what}")


async def scalar(pool: asyncpg.Pool, query: str, *args: object) -> int:
    value = await pool.fetchval(query, *args)
    return int(value or 0)


async def finals(pool: asyncpg.Pool, campaign_id: str) -> int:
    return await scalar(pool, "SELECT final FROM campaigns WHERE id = $1", campaign_id)


async def attempts(pool: asyncpg.Pool, campaign_id: str) -> int:
    return await scalar(pool, "SELECT count(*) FROM attempts WHERE campaign_id = $1", campaign_id)


class Children:
    """Roles in child processes, each stopped (SIGTERM, then SIGKILL) when the block ends."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._started: list[ChildRole] = []
        self._signalled: set[int] = set()  # pids the scenario signalled itself

    def start(self, *roles: str, settings: Settings | None = None) -> ChildRole:
        child = ChildRole(settings or self.settings, list(roles))
        child.start()
        self._started.append(child)
        return child

    def kill(self, child: ChildRole, sig: signal.Signals = signal.SIGKILL) -> None:
        assert child.pid is not None and child.alive(), "the child to signal is not running"
        self._signalled.add(child.pid)
        os.kill(child.pid, sig)

    def died(self) -> list[str]:
        """Children that exited although nobody signalled them (crashed)."""
        return [
            f"child `herald run {' '.join(c.roles)}` exited by itself"
            for c in self._started
            if c.pid is not None and c.pid not in self._signalled and not c.alive()
        ]

    async def stop(self, child: ChildRole) -> int | None:
        """SIGTERM and wait for the drain, off the event loop (in-process roles keep going)."""
        if child.pid is not None:
            self._signalled.add(child.pid)
        return await anyio.to_thread.run_sync(partial(child.stop, timeout_s=15))

    async def exited(self, child: ChildRole, timeout_s: float) -> int | None:
        """Wait for a child told to stop to exit by itself; its exit code."""
        with anyio.move_on_after(timeout_s):
            while child.alive():
                await anyio.sleep(0.05)
        return await self.stop(child)

    async def stop_all(self) -> None:
        started, self._started = self._started, []
        with anyio.CancelScope(shield=True):
            for child in started:
                await self.stop(child)


@contextlib.asynccontextmanager
async def children(settings: Settings) -> AsyncIterator[Children]:
    group = Children(settings)
    try:
        yield group
    finally:
        await group.stop_all()
