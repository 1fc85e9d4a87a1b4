"""The one producer a process shares: acks=all, idempotence as configured.

It starts once a broker answers (waiting within HERALD_STARTUP_TIMEOUT_S), and its final
flush and close take at most its share of HERALD_SHUTDOWN_FLUSH_TIMEOUT_S: what is still
unsent then is abandoned, since everything herald publishes is re-derived from PostgreSQL
(outbox rows, unpublished batches, unmarked fallbacks) or redelivered to the consumer that
produced it (an uncommitted offset).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

import anyio
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaTimeoutError
from aiokafka.protocol.metadata import MetadataRequest

from herald.bus.client import DEPENDENCY, ERRORS, connection_kwargs, transient
from herald.retry import until_up
from herald.settings import Settings

log = logging.getLogger(__name__)

# A produce request the broker has not answered in this long fails (RequestTimedOutError),
# and the caller's round is retried.
REQUEST_TIMEOUT_MS = 30_000
# Consumers close (leaving their groups) before the producer flushes; each gets half of
# HERALD_SHUTDOWN_FLUSH_TIMEOUT_S, so the two in a row stay within it.
CLOSE_SHARE: Final = 0.5
# Tearing down an abandoned client is local work (no request waits for the broker); this
# only guards against a client that will not let go.
ABANDON_S: Final = 0.5
PING_TIMEOUT_S: Final = 2.0


@asynccontextmanager
async def producer(settings: Settings) -> AsyncIterator[AIOKafkaProducer]:
    kwargs = connection_kwargs(settings)  # a bad setting fails here, before any waiting

    async def start() -> AIOKafkaProducer:
        p = AIOKafkaProducer(
            **kwargs,
            acks="all",
            enable_idempotence=settings.kafka_idempotence,
            linger_ms=5,
            max_batch_size=256 * 1024,
            request_timeout_ms=REQUEST_TIMEOUT_MS,
        )
        try:
            await p.start()
        except BaseException:
            await close(p, ABANDON_S)
            raise
        return p

    p = await until_up(
        DEPENDENCY,
        start,
        timeout_s=settings.startup_timeout_s,
        transient=transient,
        where=settings.kafka_bootstrap,
    )
    try:
        yield p
    finally:
        await close(p, settings.shutdown_flush_timeout_s * CLOSE_SHARE)


async def close(p: AIOKafkaProducer, timeout_s: float) -> None:
    """Flush and close within timeout_s, even when cancelled; past it, abandon what is unsent."""
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(timeout_s):
            await p.stop()  # flushes what is pending
            return
        log.warning(
            "producer flush abandoned after %.1f s: unsent records are re-derived",
            timeout_s,
            extra={"event": "producer_flush_abandoned"},
        )
        await _abandon(p)


async def _abandon(p: AIOKafkaProducer) -> None:
    # aiokafka 0.14 has no way to drop pending records: fail them (their senders see an
    # error), close the sockets so in-flight requests fail at once, and cancel the sender
    # task, which otherwise waits a request timeout for each of them.
    with contextlib.suppress(Exception):
        _drop_pending(p)
    with anyio.move_on_after(ABANDON_S):
        with contextlib.suppress(Exception):
            await p.client.close()
        sender = getattr(p, "_sender", None)
        task = getattr(sender, "sender_task", None)
        while task is not None and not task.done():
            task.cancel()
            await asyncio.wait([task], timeout=0.05)


def _drop_pending(p: AIOKafkaProducer) -> None:
    accumulator = p._message_accumulator
    batches = [b for queued in accumulator._batches.values() for b in queued]
    batches += list(accumulator._pending_batches)
    accumulator.fail_all(KafkaTimeoutError("abandoned at shutdown"))
    # Their senders were cancelled by the drain: mark the errors seen, or asyncio logs each
    # one with a traceback at exit.
    for batch in batches:
        for future, _ in batch._msg_futures:
            if future.done() and not future.cancelled():
                future.exception()


async def ping(p: AIOKafkaProducer, timeout_s: float = PING_TIMEOUT_S) -> None:
    """Returns once any known broker answers a metadata request naming no topics (cheap);
    raises KafkaConnectionError or TimeoutError otherwise. A readiness check."""
    client = p.client
    nodes = [broker.nodeId for broker in client.cluster.brokers()]
    if not nodes:
        raise KafkaConnectionError("no broker known")
    answered = False
    with anyio.fail_after(timeout_s):
        async with anyio.create_task_group() as tg:

            async def ask(node: int) -> None:
                nonlocal answered
                # One hung broker of several must not fail the check: the first answer wins.
                with contextlib.suppress(*ERRORS):
                    await client.send(node, MetadataRequest([]))
                    answered = True
                    tg.cancel_scope.cancel()

            for node in nodes:
                tg.start_soon(ask, node)
    if not answered:
        raise KafkaConnectionError("no broker answered")
