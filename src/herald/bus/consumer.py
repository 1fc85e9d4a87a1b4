"""The consumer loop every role uses: manual commits after durable work, a dead-letter path,
and a graceful drain on stop.

A handler gets one partition's records and returns True when all of them are durable; only
then is the offset committed. A handler that returns False (it saw the stop event, or its
partition was revoked) leaves the offset where it was, so the records come back after a
restart or a rebalance and are resumed.

A rebalance hands partitions over only once their handlers have stopped: the rebalance
listener marks the revoked partitions' runs (a handler sees it through `revoked()`), waits for
those handlers to return and commit, then lets the group rejoin. aiokafka awaits the listener
before it sends JoinGroup, and the group gives nobody the partitions before every member has
rejoined, so the old and the new owner never work on a partition at the same time.

A broker outage never ends the loop: the consumer waits for the broker at start (within
HERALD_STARTUP_TIMEOUT_S), a poll, commit or handler that fails on it is retried after a
pause, and the final close takes at most its share of HERALD_SHUTDOWN_FLUSH_TIMEOUT_S.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable, Collection, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Final

import anyio
from aiokafka import (
    AIOKafkaConsumer,
    AIOKafkaProducer,
    ConsumerRebalanceListener,
    ConsumerRecord,
    TopicPartition,
)

from herald import metrics, retry
from herald.bus import client
from herald.bus.producer import ABANDON_S, CLOSE_SHARE
from herald.constants import HEADER_DLQ_REASON, TOPIC_DEAD_LETTER
from herald.settings import Settings
from herald.store.db import TRANSIENT, UNAVAILABLE, StoreError

log = logging.getLogger(__name__)

Handler = Callable[[TopicPartition, Sequence[ConsumerRecord]], Awaitable[bool]]

# A handler that fails this many times in a row on the same records dead-letters them, so a
# bug or a poison record never blocks its partition.
MAX_HANDLER_FAILURES = 3

# Retrying a handler or a poll after a failure: quick at first, then every few seconds; full
# jitter keeps many consumers from retrying a recovering database in step.
RETRY: Final = retry.Backoff(first_s=0.4, cap_s=5.0, jitter=1.0)

# The group waits this much longer for a member to rejoin than the member's listener waits for
# its handlers, so a member that drained in time is never dropped from the group.
REJOIN_MARGIN_S: Final = 5.0


# Dead letters a handler asks for while the consumer runs it: held until that run succeeds,
# dropped if it fails, so a record is dead-lettered once however often its batch is retried.
_held: ContextVar[list[tuple[ConsumerRecord, str]] | None] = ContextVar("held", default=None)


@dataclass(frozen=True)
class _Run:
    """One handler run on one partition: `revoked` is set when the partition is taken away,
    `done` once the run has returned and committed (or released) its records."""

    revoked: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)


_run: ContextVar[_Run | None] = ContextVar("run", default=None)


def revoked() -> anyio.Event:
    """Set once the partition the calling handler works on is revoked by a rebalance: the
    handler should start nothing new, finish what is in flight and return False (the records
    it did not finish go to the partition's next owner). Outside a consumer run, an event
    that is never set."""
    run = _run.get()
    return run.revoked if run is not None else anyio.Event()


class _Handover(ConsumerRebalanceListener):  # type: ignore[misc]
    """Revoked partitions move only after their handlers stopped and committed, or after
    wait_s: aiokafka awaits on_partitions_revoked before the member rejoins the group, and the
    group assigns nothing before every member has rejoined (or the rebalance timeout, which
    is longer than wait_s, has passed)."""

    def __init__(
        self,
        runs: dict[TopicPartition, _Run],
        wait_s: float,
        lingering: dict[TopicPartition, tuple[float, list[ConsumerRecord]]] | None = None,
    ) -> None:
        self.runs = runs
        self.wait_s = wait_s
        self.lingering = lingering if lingering is not None else {}

    async def on_partitions_revoked(self, revoked: Collection[TopicPartition]) -> None:
        # Records held back for a fuller run were never handled nor committed: the
        # partition's next owner reads them again.
        for tp in revoked:
            self.lingering.pop(tp, None)
        leaving = {tp: run for tp, run in self.runs.items() if tp in revoked}
        if not leaving:
            return
        for run in leaving.values():
            run.revoked.set()
        started = time.monotonic()
        with anyio.move_on_after(self.wait_s):
            for run in leaving.values():
                await run.done.wait()
        still = sorted(str(tp) for tp, run in leaving.items() if not run.done.is_set())
        if still:
            log.warning(
                "partitions %s handed over with their handlers still running after %.1f s",
                ", ".join(still),
                self.wait_s,
                extra={"event": "revoke_timed_out"},
            )
        else:
            log.info(
                "handlers of %d revoked partitions stopped in %.2f s",
                len(leaving),
                time.monotonic() - started,
                extra={"event": "partitions_released"},
            )

    async def on_partitions_assigned(self, assigned: Collection[TopicPartition]) -> None:
        log.info(
            "partitions assigned: %s",
            ", ".join(sorted(f"{tp.topic}:{tp.partition}" for tp in assigned)) or "none",
            extra={"event": "partitions_assigned"},
        )


@dataclass(frozen=True, kw_only=True)
class DeadLetter:
    settings: Settings
    producer: AIOKafkaProducer

    async def send(self, record: ConsumerRecord, reason: str) -> None:
        held = _held.get()
        if held is not None:
            held.append((record, reason))
            return
        await self.send_record(record, reason)

    async def send_record(self, record: ConsumerRecord, reason: str) -> None:
        await self.send_value(
            value=record.value,
            key=record.key,
            reason=reason,
            source=(record.topic, record.partition, record.offset),
        )

    async def send_value(
        self,
        *,
        value: bytes | None,
        key: bytes | None,
        reason: str,
        source: tuple[str, int, int] | None = None,
    ) -> None:
        """Dead-letter a value that did not come straight from a record (a parked event)."""
        headers = [(HEADER_DLQ_REASON, reason.encode()[:1000])]
        if source is not None:
            topic, partition, offset = source
            headers += [
                ("herald-source-topic", topic.encode()),
                ("herald-source-partition", str(partition).encode()),
                ("herald-source-offset", str(offset).encode()),
            ]
        await self.producer.send_and_wait(
            self.settings.topic(TOPIC_DEAD_LETTER), value=value, key=key, headers=headers
        )
        topic_label = source[0] if source else "parked"
        metrics.DEAD_LETTERS.labels(topic=topic_label, reason=reason.split(":", 1)[0]).inc()
        log.warning(
            "dead-lettered from %s: %s", topic_label, reason, extra={"event": "dead_lettered"}
        )


async def consume(
    *,
    settings: Settings,
    topic: str,
    group_id: str,
    handler: Handler,
    dead_letter: DeadLetter,
    stop: anyio.Event,
    max_records: int = 500,
    min_records: int = 0,
    linger_s: float = 0.0,
    ready: anyio.Event | None = None,
) -> None:
    kwargs = client.connection_kwargs(settings)
    runs: dict[TopicPartition, _Run] = {}
    # Partitions whose records wait for more (min_records, linger_s): when the wait ends, and
    # the records so far.
    lingering: dict[TopicPartition, tuple[float, list[ConsumerRecord]]] = {}
    # A revoked partition's handler gets the grace a drain gives in-flight work; the group
    # waits that long, and a margin, for this member to rejoin.
    handover = _Handover(runs, wait_s=settings.drain_timeout_s, lingering=lingering)
    rebalance_timeout_ms = max(
        settings.kafka_session_timeout_ms,
        int((settings.drain_timeout_s + REJOIN_MARGIN_S) * 1000),
    )

    async def start() -> AIOKafkaConsumer:
        # A consumer starts once (aiokafka refuses a second start): a new one per attempt.
        consumer = AIOKafkaConsumer(
            **kwargs,
            group_id=settings.topic(group_id),
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            max_poll_interval_ms=300_000,
            session_timeout_ms=settings.kafka_session_timeout_ms,
            rebalance_timeout_ms=rebalance_timeout_ms,
            # A JoinGroup waits up to the rebalance timeout at the broker (aiokafka, unlike
            # the Java client, does not lengthen its request timeout for it).
            request_timeout_ms=max(40_000, rebalance_timeout_ms + 5_000),
            heartbeat_interval_ms=max(100, settings.kafka_session_timeout_ms // 10),
            fetch_max_wait_ms=100,
            # A lingering consumer also asks the broker to hold a fetch for a fuller answer.
            fetch_min_bytes=64 * 1024 if linger_s > 0 else 1,
        )
        consumer.subscribe([settings.topic(topic)], listener=handover)
        try:
            await consumer.start()
        except BaseException:
            await close(consumer, ABANDON_S)
            raise
        return consumer

    consumer = await retry.until_up(
        client.DEPENDENCY,
        start,
        timeout_s=settings.startup_timeout_s,
        transient=client.transient,
        where=settings.kafka_bootstrap,
    )
    if ready is not None:
        ready.set()
    failures = 0
    try:
        async with anyio.create_task_group() as tg:
            # The poll loop never waits for a handler: partitions being handled are paused, so
            # getmany keeps the member alive (aiokafka's max_poll_interval_ms counts the time
            # between polls) while other partitions (other accounts) go on in parallel.
            while not stop.is_set():
                try:
                    batches = await consumer.getmany(
                        timeout_ms=_poll_ms(lingering, time.monotonic()), max_records=max_records
                    )
                except client.ERRORS as exc:
                    failures += 1
                    await _pause("poll", exc, failures, stop)
                    continue
                failures = 0
                now = time.monotonic()
                ready_now = _ready(
                    lingering, batches, now, min_records=min_records, linger_s=linger_s
                )
                for tp, records in ready_now.items():
                    if tp in runs:
                        # Reassigned to us while still being handled: read again afterwards.
                        consumer.seek(tp, records[0].offset)
                        continue
                    if tp not in consumer.assignment():
                        continue  # held back, then revoked: the next owner reads them
                    consumer.pause(tp)
                    runs[tp] = _Run()
                    tg.start_soon(_process, consumer, tp, records, handler, dead_letter, stop, runs)
    finally:
        await close(consumer, settings.shutdown_flush_timeout_s * CLOSE_SHARE)


def _poll_ms(
    lingering: dict[TopicPartition, tuple[float, list[ConsumerRecord]]], now: float
) -> int:
    """How long a poll may wait: 200 ms, or until the first held-back records are due."""
    if not lingering:
        return 200
    due = min(until for until, _ in lingering.values())
    return max(0, min(200, int((due - now) * 1000) + 1))


def _ready(
    lingering: dict[TopicPartition, tuple[float, list[ConsumerRecord]]],
    polled: dict[TopicPartition, list[ConsumerRecord]],
    now: float,
    *,
    min_records: int,
    linger_s: float,
) -> dict[TopicPartition, list[ConsumerRecord]]:
    """The partitions whose records go to a handler now; the others stay in `lingering`
    (updated in place) until min_records came or linger_s passed since their first."""
    if linger_s <= 0:
        return dict(polled)
    for tp, records in polled.items():
        held = lingering.get(tp)
        if held is None:
            lingering[tp] = (now + linger_s, list(records))
        else:
            held[1].extend(records)
    ready = {
        tp: records
        for tp, (until, records) in lingering.items()
        if len(records) >= min_records or now >= until
    }
    for tp in ready:
        del lingering[tp]
    return ready


async def close(consumer: AIOKafkaConsumer, timeout_s: float) -> None:
    """Leave the group and close within timeout_s, even when cancelled; past it, abandon the
    consumer: its partitions move after the session timeout instead, and what it did not
    commit is redelivered."""
    with anyio.CancelScope(shield=True):
        with anyio.move_on_after(timeout_s):
            await consumer.stop()
            return
        log.warning(
            "consumer close abandoned after %.1f s",
            timeout_s,
            extra={"event": "consumer_close_abandoned"},
        )
        await _abandon(consumer)


async def _abandon(consumer: AIOKafkaConsumer) -> None:
    # aiokafka 0.14's stop() waits on the broker (leaving the group) with nothing to bound it:
    # close the sockets so pending requests fail at once, then cancel the background tasks.
    coordinator = getattr(consumer, "_coordinator", None)
    fetcher = getattr(consumer, "_fetcher", None)
    with anyio.move_on_after(ABANDON_S):
        with contextlib.suppress(Exception):
            await consumer._client.close()
        tasks = [
            getattr(owner, name, None)
            for owner, name in (
                (coordinator, "_coordination_task"),
                (coordinator, "_heartbeat_task"),
                (coordinator, "_commit_refresh_task"),
                (coordinator, "_reset_committed_task"),
                (fetcher, "_fetch_task"),
            )
        ]
        pending = [t for t in tasks if isinstance(t, asyncio.Task) and not t.done()]
        while pending:
            for task in pending:
                task.cancel()
            await asyncio.wait(pending, timeout=0.05)
            pending = [t for t in pending if not t.done()]


async def _pause(what: str, exc: BaseException, failures: int, stop: anyio.Event) -> None:
    """Log one line (the error class, no traceback: the cause is outside herald) and wait a
    backoff, or until stop."""
    delay_s = retry.delay_s(RETRY, failures, random.uniform(0, 1))
    log.warning(
        "consumer %s failed (%s); again in %.1f s",
        what,
        retry.one_line(exc),
        delay_s,
        extra={"event": "consumer_retry", "error": type(exc).__name__},
    )
    with anyio.move_on_after(delay_s):
        await stop.wait()


async def _process(
    consumer: AIOKafkaConsumer,
    tp: TopicPartition,
    records: Sequence[ConsumerRecord],
    handler: Handler,
    dead_letter: DeadLetter,
    stop: anyio.Event,
    runs: dict[TopicPartition, _Run],
) -> None:
    run = runs[tp]
    _run.set(run)
    try:
        try:
            done = await _handle(tp, records, handler, dead_letter, stop)
        except client.ERRORS as exc:
            # Dead-lettering failed on the broker: leave the offset, the records come again.
            log.warning(
                "records of %s left for later: %s",
                tp,
                retry.one_line(exc),
                extra={"event": "records_deferred", "error": type(exc).__name__},
            )
            done = False
        if not done:
            if tp in consumer.assignment():
                consumer.seek(tp, records[0].offset)
            return
        metrics.CONSUMER_LAG.labels(topic=tp.topic).set(
            max(0, (consumer.highwater(tp) or 0) - (records[-1].offset + 1))
        )
        try:
            await consumer.commit({tp: records[-1].offset + 1})
        except client.ERRORS as exc:
            # The partition moved to another member mid-batch, or the broker is away: the
            # records come again, here or there, and their handlers deduplicate.
            log.warning(
                "commit failed: %s",
                retry.one_line(exc),
                extra={"event": "commit_failed", "error": type(exc).__name__},
            )
    finally:
        if runs.get(tp) is run:
            del runs[tp]
        run.done.set()
        if tp in consumer.assignment():
            consumer.resume(tp)


async def _handle(
    tp: TopicPartition,
    records: Sequence[ConsumerRecord],
    handler: Handler,
    dead_letter: DeadLetter,
    stop: anyio.Event,
) -> bool:
    failures = 0
    rounds = 0  # every retry, counted or not: the pause grows with it
    while True:
        rounds += 1
        held: list[tuple[ConsumerRecord, str]] = []
        token = _held.set(held)
        try:
            try:
                done = await handler(tp, records)
            finally:
                _held.reset(token)
            if done:
                # The run is durable: only now do the records it refused reach the dead
                # letters (a run cut short by stop comes again and refuses them again).
                for record, why in held:
                    await dead_letter.send_record(record, why)
            return done
        except StoreError as exc:
            if not exc.retryable:
                failures += 1
            reason = f"store: {exc}"
        except UNAVAILABLE as exc:
            # The transaction rolled back whole: try again, uncounted, however long it takes.
            reason = f"store: {type(exc).__name__}"
            log.warning("retrying after %s: %s", reason, exc, extra={"event": "handler_retry"})
        except TRANSIENT as exc:
            # A connection cut mid-operation, or a mistake the driver reports the same way.
            failures += 1
            reason = f"store: {type(exc).__name__}: {exc}"
            log.warning("retrying after %s", reason, extra={"event": "handler_retry"})
        except client.ERRORS as exc:
            # The broker is away or slow (a publish timed out): an outage, not a poison
            # record, so uncounted, like an unavailable database.
            reason = f"kafka: {type(exc).__name__}"
            log.warning("retrying after %s", retry.one_line(exc), extra={"event": "handler_retry"})
        except Exception as exc:
            failures += 1
            reason = f"handler: {type(exc).__name__}: {exc}"
            log.exception("handler failed", extra={"event": "handler_failed"})
        if failures >= MAX_HANDLER_FAILURES:
            if len(records) == 1:
                await dead_letter.send_record(records[0], reason)
                return True
            # One poison record must not take good ones with it: try each on its own, so only
            # the ones that fail by themselves are dead-lettered.
            for record in records:
                if not await _handle(tp, [record], handler, dead_letter, stop):
                    return False
            return True
        lost = revoked()
        await _sleep_until(retry.delay_s(RETRY, rounds, random.uniform(0, 1)), stop, lost)
        if stop.is_set() or lost.is_set():
            return False


async def _sleep_until(delay_s: float, *events: anyio.Event) -> None:
    """Sleep delay_s, or until one of the events is set."""

    async def wait(event: anyio.Event, scope: anyio.CancelScope) -> None:
        await event.wait()
        scope.cancel()

    with anyio.move_on_after(delay_s):
        async with anyio.create_task_group() as tg:
            for event in events:
                tg.start_soon(wait, event, tg.cancel_scope)
