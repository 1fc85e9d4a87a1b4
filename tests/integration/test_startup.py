"""A role started while PostgreSQL or Kafka is down waits for it, retrying with backoff, and
gives up with one clear line after HERALD_STARTUP_TIMEOUT_S; one that comes up meanwhile is
used as soon as it answers."""

from __future__ import annotations

import logging
from functools import partial

import anyio
import pytest

from herald import retry
from herald.bus import consumer, producer, topics
from herald.constants import GROUP_SCHEDULER, TOPIC_CAMPAIGN_EVENTS
from herald.embedded import free_port
from herald.errors import Unreachable
from herald.settings import Settings
from herald.store import db
from tests.faults.hang import FreezableProxy, through, unix_socket
from tests.faults.proxy import ProxiedBroker


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(retry, "STARTUP", retry.Backoff(first_s=0.1, cap_s=0.4))


def _retries(caplog: pytest.LogCaptureFixture, dependency: str) -> list[logging.LogRecord]:
    return [
        r
        for r in caplog.records
        if r.__dict__.get("event") == "dependency_retry"
        and r.__dict__.get("dependency") == dependency
    ]


async def test_pool_gives_up_on_a_port_nothing_listens_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    url = f"postgresql://postgres@127.0.0.1:{free_port()}/herald"
    started = anyio.current_time()
    with caplog.at_level(logging.WARNING), pytest.raises(Unreachable) as caught:
        await db.create_pool(url, startup_timeout_s=1.5)
    elapsed_s = anyio.current_time() - started
    assert 1.0 <= elapsed_s <= 3.0
    message = str(caught.value)
    assert message.startswith(f"postgres at 127.0.0.1:{url.rsplit(':', 1)[1].split('/')[0]}")
    assert "unreachable for 1.5 s" in message and "ConnectionRefusedError" in message
    assert "\n" not in message
    retries = _retries(caplog, "postgres")
    assert len(retries) >= 3
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in retries)
    assert all("(ConnectionRefusedError)" in r.getMessage() for r in retries)


async def test_pool_waits_for_a_postgres_that_comes_up_late(
    pg_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    # Nothing listens on the proxy's port until it starts, 1.5 s after the pool began.
    proxy = FreezableProxy("", unix_path=unix_socket(pg_url))

    async def open_late() -> None:
        await anyio.sleep(1.5)
        await proxy.start()

    try:
        with caplog.at_level(logging.WARNING), anyio.fail_after(20):
            async with anyio.create_task_group() as tg:
                tg.start_soon(open_late)
                async with db.pool(through(pg_url, proxy), startup_timeout_s=15) as pool:
                    assert await pool.fetchval("SELECT 1") == 1
    finally:
        await proxy.close()
    assert _retries(caplog, "postgres")


async def test_producer_gives_up_on_a_broker_that_is_not_there() -> None:
    settings = Settings.development(
        kafka_bootstrap=f"127.0.0.1:{free_port()}", startup_timeout_s=1.0
    )
    with anyio.fail_after(10), pytest.raises(Unreachable, match=r"^kafka at 127\.0\.0\.1:\d+ "):
        async with producer.producer(settings):
            pass


async def test_producer_waits_for_a_broker_that_comes_up_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ProxiedBroker() as broker:
        await broker.proxy.cut()  # refused, as a broker not started yet
        settings = Settings.development(kafka_bootstrap=broker.bootstrap, startup_timeout_s=20)
        with caplog.at_level(logging.WARNING), anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(_restore_after, broker, 1.5)
                async with producer.producer(settings) as kafka:
                    await producer.ping(kafka)
    assert _retries(caplog, "kafka")


async def test_consumer_waits_for_a_broker_that_comes_up_late(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with ProxiedBroker() as broker:
        settings = Settings.development(
            kafka_bootstrap=broker.bootstrap,
            startup_timeout_s=20,
            topic_partitions=1,
            kafka_session_timeout_ms=3_000,  # the embedded broker holds a first join a while
        )
        await topics.ensure_topics(settings)
        async with producer.producer(settings) as kafka:
            await broker.proxy.cut()
            stop, up = anyio.Event(), anyio.Event()

            async def handler(*_: object) -> bool:
                return True

            with caplog.at_level(logging.WARNING), anyio.fail_after(30):
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_restore_after, broker, 1.5)
                    tg.start_soon(
                        partial(
                            consumer.consume,
                            settings=settings,
                            topic=TOPIC_CAMPAIGN_EVENTS,
                            group_id=GROUP_SCHEDULER,
                            handler=handler,
                            dead_letter=consumer.DeadLetter(settings=settings, producer=kafka),
                            stop=stop,
                            ready=up,
                        )
                    )
                    await up.wait()
                    stop.set()
    assert _retries(caplog, "kafka")


async def _restore_after(broker: ProxiedBroker, delay_s: float) -> None:
    await anyio.sleep(delay_s)
    await broker.proxy.restore()
