"""CPU of one send's own bookkeeping in the worker, without the network.

Drives `Delivery._send_with_retries` (the account's limiter, the provider's breaker, the
pause gate, the send metrics and the dispatch decision) against a provider that answers at
once, and prints the process CPU time per send. What is left of the worker's CPU per
recipient in `make bench` is I/O: HTTP, PostgreSQL, Kafka.

    python load-tests/bench_send_loop.py [--sends N]
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import uvloop

from herald.delivery import Delivery
from herald.domain.channels import Channel
from herald.providers.base import OutboundMessage, SendResult
from herald.ratelimit import AdaptiveLimiter
from herald.settings import Settings

ANSWER = SendResult(accepted=True, provider_message_id="m")


class _AtOnce:
    name = "at-once"
    channel = Channel.SMS

    async def send(self, message: OutboundMessage) -> SendResult:
        return ANSWER

    async def close(self) -> None:
        return None


class _NoRates:
    def __init__(self) -> None:
        self.rates: dict[str, float] = {}


async def _open() -> bool:
    return True


async def _run(sends: int) -> float:
    # No pool: the loop under test never touches PostgreSQL.
    pool: Any = None
    directory: Any = _NoRates()
    delivery = Delivery(settings=Settings(), pool=pool, directory=directory)
    limiter = AdaptiveLimiter(1e9)
    provider: Any = _AtOnce()
    message = OutboundMessage(
        message_id="m",
        channel=Channel.SMS,
        to="+14155550100",
        sender="s",
        body="b",
        callback_url="http://ingress/callbacks/sms",
    )
    started = time.process_time()
    for _ in range(sends):
        await delivery._send_with_retries([provider], message, limiter, _open)
    return (time.process_time() - started) / sends


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sends", type=int, default=50_000)
    args = parser.parse_args()
    per_send_s = uvloop.run(_run(args.sends))
    print(f'{{"sends": {args.sends}, "cpu_us_per_send": {per_send_s * 1e6:.1f}}}')


if __name__ == "__main__":
    main()
