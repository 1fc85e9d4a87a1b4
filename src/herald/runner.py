"""Composes roles into one process: `herald run <role>` runs one, `run all` runs them all.

Every role shares one pool, one producer and one stop event. On stop, consumers finish or
abandon (uncommitted) their current records, then listeners close, then the producer
flushes and the pool closes, all within HERALD_DRAIN_TIMEOUT_S.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from functools import partial
from typing import Final

import anyio

from herald import health as health_names
from herald import logs, metrics
from herald import roles as registry
from herald.bus.consumer import DeadLetter, consume
from herald.bus.producer import ping as kafka_ping
from herald.bus.producer import producer as kafka_producer
from herald.bus.topics import ensure_topics
from herald.health import Health
from herald.roles import Context, Needs, Parts, RoleError
from herald.settings import Settings
from herald.store import db, migrations

log = logging.getLogger(__name__)

ROLES: Final = registry.NAMES

__all__ = [
    "ROLES",
    "Needs",
    "RoleError",
    "load_role",
    "migrate",
    "needs",
    "parse_roles",
    "refusal",
    "run_roles",
]


def needs(roles: frozenset[str]) -> Needs:
    return registry.needs(roles)


def parse_roles(names: list[str]) -> frozenset[str]:
    return registry.parse(names)


def load_role(name: str) -> registry.Role:
    return registry.load(name)


def refusal(settings: Settings, roles: frozenset[str]) -> str | None:
    return registry.refusal(settings, roles)


async def migrate(settings: Settings) -> list[str]:
    async with (
        db.pool(
            settings.database_url, max_size=1, startup_timeout_s=settings.startup_timeout_s
        ) as pool,
        pool.acquire() as conn,
    ):
        return await migrations.migrate(conn)


async def run_roles(
    settings: Settings,
    roles: frozenset[str],
    stop: anyio.Event,
    ready: anyio.Event | None = None,
    *,
    apply_migrations: bool = True,
    health: Health | None = None,
) -> None:
    """Runs the roles until `stop`. `health`, when given, watches what they need: PostgreSQL
    for the roles that use it, Kafka for the consumers and the ingress."""
    # Imported before anything is opened, so a role this install cannot run fails first.
    setups = {name: registry.load(name) for name in sorted(roles)}
    need = registry.needs(roles)
    # Closed shielded: cleanup must finish even when the roles end by cancellation.
    stack = AsyncExitStack()
    try:
        ctx = Context(settings=settings, stop=stop, stack=stack)
        # Waiting for a dependency at start (up to startup_timeout_s) ends on SIGTERM too.
        if not await _unless_stopped(
            stop, partial(_open, ctx, need, len(roles), apply_migrations=apply_migrations)
        ):
            return
        if health is not None:
            if ctx.pool is not None:
                health.watch(health_names.POSTGRES, partial(db.ping, ctx.pool))
            if ctx.producer is not None:
                health.watch(health_names.KAFKA, partial(kafka_ping, ctx.producer))
        parts = {}
        for name, setup in setups.items():
            # What a setup starts (servers, threads) logs as its role; so do its tasks.
            logs.set_role(name)
            parts[name] = await setup(ctx)
        logs.set_role(",".join(sorted(roles)))
        async with anyio.create_task_group() as tg:
            started = [_start(tg, ctx, name, part) for name, part in parts.items()]
            for up in (event for events in started for event in events):
                await up.wait()
            log.info("roles running: %s", ", ".join(sorted(roles)), extra={"event": "started"})
            if ready is not None:
                ready.set()
            await stop.wait()
            # Consumers see the stop event within one poll; past the drain window, cut them off.
            tg.cancel_scope.deadline = anyio.current_time() + settings.drain_timeout_s
    finally:
        with anyio.CancelScope(shield=True):
            await stack.aclose()
        log.info("roles stopped", extra={"event": "stopped"})


async def _open(ctx: Context, need: Needs, roles: int, *, apply_migrations: bool) -> None:
    settings = ctx.settings
    if need.database:
        if apply_migrations:
            await migrate(settings)
        ctx.pool = await ctx.stack.enter_async_context(
            db.pool(
                settings.database_url,
                max_size=max(4, roles * 4),
                startup_timeout_s=settings.startup_timeout_s,
            )
        )
    if need.kafka:
        await ensure_topics(settings)
        ctx.producer = await ctx.stack.enter_async_context(kafka_producer(settings))
        ctx.dead_letter = DeadLetter(settings=settings, producer=ctx.producer)


async def _unless_stopped(stop: anyio.Event, step: Callable[[], Awaitable[None]]) -> bool:
    """Runs step, cancelled if `stop` is set first; True when it ran to its end."""
    async with anyio.create_task_group() as tg:

        async def watch() -> None:
            await stop.wait()
            tg.cancel_scope.cancel()

        tg.start_soon(watch)
        await step()
        tg.cancel_scope.cancel()
    return not stop.is_set()


def _start(tg: anyio.abc.TaskGroup, ctx: Context, name: str, part: Parts) -> list[anyio.Event]:
    """Starts a role's parts; the events are set once each consumer joined or service serves."""
    started: list[anyio.Event] = []
    for consumer in part.consumers:
        metrics.initialise_consumer(ctx.settings.topic(consumer.topic))
        assert ctx.dead_letter is not None
        up = anyio.Event()
        started.append(up)
        tg.start_soon(
            logs.as_role(name, _consume),
            ctx.settings,
            consumer,
            ctx.dead_letter,
            ctx.stop,
            up,
        )
    for loop in part.loops:
        tg.start_soon(logs.as_role(name, loop))
    for service in part.services:
        up = anyio.Event()
        started.append(up)
        tg.start_soon(logs.as_role(name, service), up)
    return started


async def _consume(
    settings: Settings,
    part: registry.ConsumerPart,
    dead_letter: DeadLetter,
    stop: anyio.Event,
    ready: anyio.Event,
) -> None:
    await consume(
        settings=settings,
        topic=part.topic,
        group_id=part.group,
        handler=part.handler,
        dead_letter=dead_letter,
        stop=stop,
        max_records=part.max_records,
        min_records=part.min_records,
        linger_s=part.linger_s,
        ready=ready,
    )
