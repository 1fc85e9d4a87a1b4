"""CPU of the worker's dispatch core, without the network, PostgreSQL or Kafka.

Drives `Delivery.deliver` (compose, the attempt log, the account's limiter, the provider's
breaker, the pause gate, the send metrics, the dispatch decisions, the status events) over
the in-memory ports of herald.fakes, with providers that answer at once, in chunks as the
worker hands them over, and prints the process CPU time per recipient and per send. What is
left of the worker's CPU per recipient in `make bench` is I/O: HTTP, PostgreSQL, Kafka.

    python load-tests/bench_send_loop.py [--recipients N] [--unreachable 0.3]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import uuid
from pathlib import Path

import uvloop

from herald.delivery import Delivery
from herald.demo import campaign_event
from herald.domain.channels import Channel, SendingMode
from herald.domain.compose import RecipientRow
from herald.domain.events import parse_campaign_confirmed
from herald.fakes import (
    ACCEPTED,
    MemoryAccounts,
    MemoryAttemptLog,
    MemorySink,
    MemoryTransport,
    ScriptedProvider,
)
from herald.providers.base import ErrorClass, OutboundMessage, SendResult
from herald.settings import Settings
from herald.store.accounts import AccountSettings

UNREACHABLE = SendResult(accepted=False, error_class=ErrorClass.UNREACHABLE, error_code="x")
CHUNK = 500


async def _open() -> bool:
    return True


async def _run(recipients: int, unreachable: float, data_dir: Path) -> dict[str, float]:
    event = parse_campaign_confirmed(
        campaign_event(
            campaign_id=str(uuid.uuid4()),
            account_id="acct",
            mode=SendingMode.WHATSAPP_RCS_SMS,
            tags=["all"],
        )
    )
    # Every n-th recipient is not on WhatsApp (and, of those, every n-th not on RCS either).
    every = max(1, round(1 / unreachable)) if unreachable > 0 else 0

    def first_hops(message: OutboundMessage) -> SendResult:
        if every and int(message.to[-6:]) % every == 0:
            return UNREACHABLE
        return ACCEPTED

    providers = {
        channel: ScriptedProvider(channel.value, channel, first_hops, keep=False)
        for channel in (Channel.WHATSAPP, Channel.RCS)
    }
    providers[Channel.SMS] = ScriptedProvider("sms", Channel.SMS, keep=False)
    sink = MemorySink()
    delivery = Delivery(
        settings=Settings.development(data_dir=data_dir),
        attempts=MemoryAttemptLog(),
        accounts=MemoryAccounts(default=AccountSettings(rate_per_s=1e9, quiet_hours=None)),
        transport=MemoryTransport({c: [p] for c, p in providers.items()}),
        sink=sink,
    )
    rows = [
        RecipientRow(
            id=n, phone=f"+1415{n:07d}", email=None, contact_id=None, fields={"first_name": "Ada"}
        )
        for n in range(1, recipients + 1)
    ]
    started = time.process_time()
    for i in range(0, recipients, CHUNK):
        await delivery.deliver(event, rows[i : i + CHUNK], gate=_open)
    took_s = time.process_time() - started
    sends = len(sink.events)  # one event per answered send (none is skipped here)
    assert len(sink.last()) == recipients
    return {
        "recipients": recipients,
        "sends": sends,
        "cpu_us_per_recipient": round(took_s / recipients * 1e6, 1),
        "cpu_us_per_send": round(took_s / sends * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=50_000)
    parser.add_argument(
        "--unreachable", type=float, default=0.3, help="share not on a channel (falls back)"
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as data_dir:
        figures = uvloop.run(_run(args.recipients, args.unreachable, Path(data_dir)))
    print(json.dumps(figures))


if __name__ == "__main__":
    main()
