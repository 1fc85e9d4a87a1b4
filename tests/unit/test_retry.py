"""Backoff and the wait for a dependency: the delays as a table, the wait with fakes."""

from __future__ import annotations

import logging

import anyio
import pytest
from aiokafka.errors import KafkaConnectionError, RequestTimedOutError

from herald import retry
from herald.errors import Unreachable

HALF = retry.Backoff(first_s=0.5, cap_s=10.0)  # the default: half fixed, half jitter
FULL = retry.Backoff(first_s=0.4, cap_s=5.0, jitter=1.0)
NONE = retry.Backoff(first_s=1.0, cap_s=8.0, factor=3.0, jitter=0.0)


@pytest.mark.parametrize(
    ("backoff", "failures", "draw", "delay_s"),
    [
        # Doubling from first_s, half of each pause drawn.
        (HALF, 1, 0.0, 0.25),
        (HALF, 1, 0.999999, pytest.approx(0.5, abs=1e-5)),
        (HALF, 2, 0.5, 0.75),
        (HALF, 3, 0.0, 1.0),
        (HALF, 5, 1.0, 8.0),
        # Capped: never above cap_s, never below half of it once there.
        (HALF, 6, 0.0, 5.0),
        (HALF, 6, 1.0, 10.0),
        (HALF, 10_000, 0.5, 7.5),  # no overflow however long the outage
        # Full jitter may retry at once; no jitter is the plain capped exponential.
        (FULL, 1, 0.0, 0.0),
        (FULL, 2, 1.0, 0.8),
        (FULL, 9, 0.5, 2.5),
        (NONE, 1, 0.7, 1.0),
        (NONE, 2, 0.7, 3.0),
        (NONE, 3, 0.7, 8.0),
        # Zero failures is read as the first.
        (NONE, 0, 0.0, 1.0),
    ],
)
def test_delays(backoff: retry.Backoff, failures: int, draw: float, delay_s: float) -> None:
    assert retry.delay_s(backoff, failures, draw) == delay_s


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (
            ConnectionRefusedError(111, "Connect call failed"),
            "ConnectionRefusedError: [Errno 111] Connect call failed",
        ),
        (TimeoutError(), "TimeoutError"),
        (OSError("two\nlines   spaced"), "OSError: two lines spaced"),
        (
            KafkaConnectionError("Unable to bootstrap from [('10.0.0.7', 9092)]"),
            "KafkaConnectionError: Unable to bootstrap from [('10.0.0.7', 9092)]",
        ),
        (RequestTimedOutError(), "RequestTimedOutError: [Error 7] RequestTimedOutError"),
    ],
)
def test_one_line(exc: BaseException, line: str) -> None:
    assert retry.one_line(exc) == line


QUICK = retry.Backoff(first_s=0.01, cap_s=0.02)


class Flaky:
    """Fails `times` times with `error`, then answers."""

    def __init__(self, times: int, error: BaseException | None = None) -> None:
        self.times = times
        self.error = error or ConnectionRefusedError(111, "no")
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.calls <= self.times:
            raise self.error
        return "up"


def _transient(exc: BaseException) -> bool:
    return isinstance(exc, OSError)


async def test_waits_until_the_dependency_answers(caplog: pytest.LogCaptureFixture) -> None:
    connect = Flaky(3)
    with caplog.at_level(logging.WARNING, logger="herald.retry"):
        got = await retry.until_up(
            "postgres", connect, timeout_s=5, transient=_transient, where="db:5432", backoff=QUICK
        )
    assert (got, connect.calls) == ("up", 4)
    warnings = [r for r in caplog.records if r.name == "herald.retry"]
    # One line per failed attempt, naming the dependency and the error class, no traceback.
    assert len(warnings) == 3
    for record in warnings:
        assert record.levelno == logging.WARNING
        assert record.exc_info is None
        assert record.getMessage().startswith(
            "postgres at db:5432 unreachable (ConnectionRefusedError)"
        )
        assert record.__dict__["dependency"] == "postgres"
        assert record.__dict__["event"] == "dependency_retry"


async def test_gives_up_after_the_timeout_with_one_line() -> None:
    connect = Flaky(10_000)
    started = anyio.current_time()
    with pytest.raises(Unreachable) as caught:
        await retry.until_up("kafka", connect, timeout_s=0.3, transient=_transient, backoff=QUICK)
    elapsed_s = anyio.current_time() - started
    assert 0.25 <= elapsed_s <= 1.0
    assert connect.calls > 3
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("kafka unreachable for 0.3 s (")
    assert message.endswith("last error ConnectionRefusedError: [Errno 111] no")
    assert caught.value.dependency == "kafka"
    # The CLI prints a ConnectionError as one line, no traceback.
    assert isinstance(caught.value, ConnectionError)


async def test_a_hung_attempt_is_cut_off_at_the_deadline() -> None:
    async def hangs() -> None:
        await anyio.sleep_forever()

    with anyio.fail_after(2), pytest.raises(Unreachable, match="last error TimeoutError"):
        await retry.until_up("kafka", hangs, timeout_s=0.2, transient=_transient, backoff=QUICK)


async def test_an_error_waiting_cannot_fix_is_raised_at_once() -> None:
    connect = Flaky(1, PermissionError("password authentication failed"))
    with pytest.raises(PermissionError):
        await retry.until_up(
            "postgres",
            connect,
            timeout_s=5,
            transient=lambda exc: isinstance(exc, ConnectionError),
            backoff=QUICK,
        )
    assert connect.calls == 1


async def test_no_time_to_wait_means_one_attempt() -> None:
    connect = Flaky(1)
    with pytest.raises(Unreachable, match=r"^postgres unreachable: ConnectionRefusedError"):
        await retry.until_up("postgres", connect, timeout_s=0, transient=_transient)
    assert connect.calls == 1
    assert await retry.until_up("postgres", Flaky(0), timeout_s=0, transient=_transient) == "up"
