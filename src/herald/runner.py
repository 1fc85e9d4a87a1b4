"""Composes roles into one process: `herald run <role>` runs one, `run all` runs them all.

Every role shares one pool, one producer and one stop event. On stop, consumers finish or
abandon (uncommitted) their current records, then listeners close, then the producer
flushes and the pool closes, all within HERALD_DRAIN_TIMEOUT_S.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Coroutine
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import partial
from typing import Any, Final

import aiohttp
import anyio
from aiohttp import web

from herald import constants, metrics
from herald.api.app import serve as serve_api
from herald.bus.consumer import DeadLetter, consume
from herald.bus.producer import producer as kafka_producer
from herald.bus.topics import ensure_topics
from herald.ingress import Ingress
from herald.providers import registry
from herald.providers.directory import Directory
from herald.relay import Relay
from herald.scheduler import Scheduler
from herald.settings import Settings
from herald.simulator import devkeys
from herald.simulator.app import Simulator
from herald.simulator.behaviour import Behaviour
from herald.simulator.smtp import SmtpSimulator
from herald.status import StatusFolder
from herald.store import campaigns, db, migrations
from herald.sweeper import Sweeper, every
from herald.worker import Worker

log = logging.getLogger(__name__)

ROLES: Final = ("api", "scheduler", "worker", "status", "ingress", "relay", "simulator")
_NEEDS_DB: Final = frozenset({"api", "relay", "scheduler", "worker", "status"})
_NEEDS_KAFKA: Final = frozenset({"relay", "scheduler", "worker", "status", "ingress"})


class RoleError(ValueError):
    pass


@dataclass(frozen=True, kw_only=True)
class Needs:
    database: bool
    kafka: bool


def needs(roles: frozenset[str]) -> Needs:
    return Needs(database=bool(roles & _NEEDS_DB), kafka=bool(roles & _NEEDS_KAFKA))


def parse_roles(names: list[str]) -> frozenset[str]:
    if "all" in names:
        return frozenset(ROLES)
    unknown = set(names) - set(ROLES)
    if unknown:
        raise RoleError(f"unknown role {sorted(unknown)[0]!r}; one of {', '.join(ROLES)}, all")
    return frozenset(names)


async def migrate(settings: Settings) -> list[str]:
    async with db.pool(settings.database_url, max_size=1) as pool, pool.acquire() as conn:
        return await migrations.migrate(conn)


async def run_roles(
    settings: Settings,
    roles: frozenset[str],
    stop: anyio.Event,
    ready: anyio.Event | None = None,
    *,
    apply_migrations: bool = True,
) -> None:
    # Closed shielded: cleanup must finish even when the roles end by cancellation.
    stack = AsyncExitStack()
    try:
        pool = None
        if roles & _NEEDS_DB:
            if apply_migrations:
                await migrate(settings)
            pool = await stack.enter_async_context(
                db.pool(settings.database_url, max_size=max(4, len(roles) * 4))
            )
        producer = None
        if roles & _NEEDS_KAFKA:
            await ensure_topics(settings)
            producer = await stack.enter_async_context(kafka_producer(settings))

        if "simulator" in roles:
            await _start_simulator(settings, stack)
        if "ingress" in roles:
            assert producer is not None
            ingress = Ingress(
                settings=settings, producer=producer, email_public_key=email_public_key(settings)
            )
            runner = web.AppRunner(ingress.app(), access_log=None)
            await runner.setup()
            await web.TCPSite(runner, settings.bind_host, settings.ingress_port).start()
            stack.push_async_callback(runner.cleanup)

        consumers: list[tuple[str, str, object, int]] = []
        loops: list[Callable[[], Coroutine[Any, Any, None]]] = []
        if pool is not None and producer is not None:
            dead_letter = DeadLetter(settings=settings, producer=producer)
            if "scheduler" in roles:
                scheduler = Scheduler(
                    settings=settings, pool=pool, producer=producer, dead_letter=dead_letter
                )
                consumers.append(
                    (
                        constants.TOPIC_CAMPAIGN_EVENTS,
                        constants.GROUP_SCHEDULER,
                        scheduler.handle,
                        100,
                    )
                )
                loops.append(partial(scheduler.tick_forever, stop))
                loops.append(
                    partial(metrics.poll_campaigns, partial(campaigns.count_by_status, pool), stop)
                )
            if "relay" in roles:
                relay = Relay(
                    settings=settings, pool=pool, producer=producer, poll_s=settings.relay_poll_s
                )
                loops.append(partial(relay.run, stop))
            sweeper = Sweeper(
                settings=settings, pool=pool, producer=producer, dead_letter=dead_letter
            )
            if "worker" in roles:
                session = aiohttp.ClientSession(
                    connector=aiohttp.TCPConnector(limit=settings.worker_concurrency)
                )
                stack.push_async_callback(session.close)
                providers = registry.build(settings, session)
                for provider in providers.values():
                    stack.push_async_callback(provider.close)
                directory = Directory(
                    settings=settings, pool=pool, session=session, defaults=providers
                )
                stack.push_async_callback(directory.close)
                worker = Worker(
                    settings=settings,
                    pool=pool,
                    producer=producer,
                    dead_letter=dead_letter,
                    directory=directory,
                    stop=stop,
                )
                consumers.append(
                    (constants.TOPIC_DISPATCH_BATCHES, constants.GROUP_WORKER, worker.handle, 1)
                )
                loops.append(
                    partial(
                        every,
                        settings.sweep_interval_s,
                        partial(sweeper.expire_windows, directory),
                        stop,
                    )
                )
            if "status" in roles:
                folder = StatusFolder(pool=pool, dead_letter=dead_letter)
                consumers.append(
                    (
                        constants.TOPIC_STATUS_EVENTS,
                        constants.GROUP_STATUS,
                        folder.handle,
                        settings.status_batch_max,
                    )
                )
                loops.append(
                    partial(
                        every,
                        settings.sweep_interval_s,
                        partial(_publish_fallbacks, sweeper, folder),
                        stop,
                        lambda: folder.fallback_wake,
                    )
                )
                loops.append(
                    partial(
                        every,
                        settings.sweep_interval_s * 2,
                        partial(sweeper.retry_parked, folder),
                        stop,
                    )
                )

        async with anyio.create_task_group() as tg:
            started = []
            for topic, group, handler, max_records in consumers:
                up = anyio.Event()
                started.append(up)
                tg.start_soon(
                    _consume_role,
                    settings,
                    topic,
                    group,
                    handler,
                    dead_letter,
                    stop,
                    max_records,
                    up,
                )
            for loop in loops:
                tg.start_soon(loop)
            if "api" in roles:
                assert pool is not None
                up = anyio.Event()
                started.append(up)
                tg.start_soon(
                    partial(
                        serve_api,
                        settings=settings,
                        pool=pool,
                        stop=stop,
                        host=settings.bind_host,
                        port=settings.api_port,
                        ready=up,
                    )
                )
            for up in started:
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


async def _consume_role(
    settings: Settings,
    topic: str,
    group: str,
    handler: object,
    dead_letter: DeadLetter,
    stop: anyio.Event,
    max_records: int,
    ready: anyio.Event,
) -> None:
    await consume(
        settings=settings,
        topic=topic,
        group_id=group,
        handler=handler,  # type: ignore[arg-type]
        dead_letter=dead_letter,
        stop=stop,
        max_records=max_records,
        ready=ready,
    )


async def _publish_fallbacks(sweeper: Sweeper, folder: StatusFolder) -> int:
    # A fresh wake event first, so a fold that lands meanwhile wakes the next round.
    folder.fallback_wake = anyio.Event()
    return await sweeper.publish_fallbacks()


def email_public_key(settings: Settings) -> str:
    """The key email event webhooks are checked with; the simulator's when it is the relay."""
    if settings.email_webhook_public_key or settings.smtp_host:
        return settings.email_webhook_public_key
    return devkeys.public_key()


async def _start_simulator(settings: Settings, stack: AsyncExitStack) -> None:
    behaviour = Behaviour(
        latency_ms=settings.simulator_latency_ms,
        error_5xx_ratio=settings.simulator_error_5xx_ratio,
        rate_429_ratio=settings.simulator_rate_429_ratio,
        timeout_ratio=settings.simulator_timeout_ratio,
        duplicate_callback_ratio=settings.simulator_duplicate_callback_ratio,
        out_of_order_ratio=settings.simulator_out_of_order_ratio,
    )
    simulator = Simulator(
        host=settings.bind_host,
        port=settings.simulator_port,
        account_sid=settings.twilio_account_sid,
        auth_token=settings.twilio_auth_token,
        whatsapp_token=settings.whatsapp_access_token,
        whatsapp_app_secret=settings.whatsapp_app_secret,
        rbm_token=settings.rbm_token,
        rbm_client_token=settings.rbm_client_token,
        viber_token=settings.viber_auth_token,
        callback_base_url=settings.ingress_url,
        behaviour=behaviour,
        # Meta batches statuses into one webhook under load; so does the stand-in.
        whatsapp_batch_max=100,
        whatsapp_batch_window_ms=20,
    )
    await simulator.start()
    stack.push_async_callback(simulator.stop)
    smtp = SmtpSimulator(
        host=settings.bind_host,
        port=settings.simulator_smtp_port,
        events_url=f"{settings.ingress_url}{constants.PATH_CALLBACK_EMAIL}",
        private_key_pem=devkeys.private_key_pem(),
        # Keep each signed batch well inside the ingress's body limit.
        max_events_per_post=500,
    )
    await smtp.start()
    stack.push_async_callback(smtp.stop)
