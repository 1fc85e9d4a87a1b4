"""Fair sharing under load: a 20,000-recipient campaign at 200/s is sending when 20 other
accounts confirm a 50-recipient campaign each; every small one should complete within 5 s
of its confirm, whichever partition it lands on (issue target).

    .venv/bin/python load-tests/bench_fair_share.py [--big 20000] [--rate 200] [--small 20]

Embedded PostgreSQL and broker, every role in this process but the simulator, ingress and
worker (each a child process, as in `herald demo`). Last stdout line: one JSON object.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import anyio
import orjson
from aiokafka.partitioner import murmur2

from herald import embedded, process, runner
from herald.bus import codec
from herald.bus.producer import producer as kafka_producer
from herald.constants import TOPIC_CAMPAIGN_EVENTS
from herald.demo import FIRST_PHONE, campaign_event
from herald.domain.channels import SendingMode
from herald.embedded import free_port
from herald.settings import DEVELOPMENT_PROFILE, Settings
from herald.store import accounts, campaigns, contacts, db


async def _publish(settings: Settings, producer: Any, event: dict[str, Any]) -> None:
    await producer.send_and_wait(
        settings.topic(TOPIC_CAMPAIGN_EVENTS),
        codec.encode(event),
        key=codec.key(event["account_id"]),
    )


async def _completed(pool: Any, campaign_id: str, timeout_s: float = 120) -> float:
    with anyio.fail_after(timeout_s):
        while True:
            counters = await campaigns.counters(pool, campaign_id)
            if counters is not None and counters.status == "completed":
                return time.monotonic()
            await anyio.sleep(0.05)


async def bench(args: argparse.Namespace, data_dir: Path) -> dict[str, Any]:
    base = Settings.from_env(profile=DEVELOPMENT_PROFILE).with_overrides(
        data_dir=data_dir,
        topic_prefix=f"fair-{uuid.uuid4().hex[:8]}.",
        api_port=free_port(),
        ingress_port=free_port(),
        simulator_port=free_port(),
        simulator_smtp_port=free_port(),
        metrics_port=0,
        log_level="WARNING",
    )
    async with embedded.running(base) as settings:
        stop, ready = anyio.Event(), anyio.Event()
        with (
            process.child(settings, ["simulator"]),
            process.child(settings, ["ingress"]),
            process.child(settings, ["worker"]),
        ):
            roles = frozenset(runner.ROLES) - {"simulator", "ingress", "worker"}
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner.run_roles, settings, roles, stop, ready)
                with anyio.fail_after(120):
                    await ready.wait()
                try:
                    return await _run(args, settings)
                finally:
                    stop.set()
    raise AssertionError("unreachable")


async def _run(args: argparse.Namespace, settings: Settings) -> dict[str, Any]:
    async with (
        db.pool(settings.database_url, max_size=4) as pool,
        kafka_producer(settings) as kafka,
    ):
        big_account, big = f"big-{uuid.uuid4().hex[:6]}", str(uuid.uuid4())
        await accounts.ensure(pool, big_account, "big", args.rate)
        await contacts.insert_synthetic(
            pool, account_id=big_account, count=args.big, first_phone=FIRST_PHONE, tag="big"
        )
        event = campaign_event(
            campaign_id=big, account_id=big_account, mode=SendingMode.SMS, tags=["big"]
        )
        await _publish(settings, kafka, event)
        # The big one has sent a second's worth: it is holding its partition.
        with anyio.fail_after(120):
            while True:
                counters = await campaigns.counters(pool, big)
                if counters is not None and counters.sent >= args.rate:
                    break
                await anyio.sleep(0.1)
        smalls = []
        shared = 0
        for n in range(args.small):
            account, cid = (
                _small_account(n, big_account, settings.topic_partitions),
                str(uuid.uuid4()),
            )
            shared += _partition(account, settings.topic_partitions) == _partition(
                big_account, settings.topic_partitions
            )
            await accounts.ensure(pool, account, "small", None)
            await contacts.insert_synthetic(
                pool, account_id=account, count=50, first_phone=FIRST_PHONE + 100_000, tag="s"
            )
            smalls.append(
                (
                    account,
                    cid,
                    campaign_event(
                        campaign_id=cid, account_id=account, mode=SendingMode.SMS, tags=["s"]
                    ),
                )
            )
        cpu_before = os.times()
        took = []
        async with anyio.create_task_group() as tg:

            async def one(cid: str, event: dict[str, Any]) -> None:
                confirmed = time.monotonic()
                await _publish(settings, kafka, event)
                took.append(await _completed(pool, cid) - confirmed)

            for _, cid, small_event in smalls:
                tg.start_soon(one, cid, small_event)
        cpu_after = os.times()
        big_now = await campaigns.counters(pool, big)
        took.sort()
        return {
            "big_recipients": args.big,
            "big_rate_per_s": args.rate,
            "big_status_when_smalls_done": big_now.status if big_now else None,
            "big_sent_when_smalls_done": big_now.sent if big_now else None,
            "small_campaigns": args.small,
            "small_completed_s_max": round(took[-1], 2),
            "small_completed_s_p50": round(took[len(took) // 2], 2),
            "small_completed_s_min": round(took[0], 2),
            "all_within_5_s": took[-1] < 5.0,
            "partitions": settings.topic_partitions,
            "small_on_the_big_ones_partition": shared,
            "this_process_cpu_s": round(
                (cpu_after.user + cpu_after.system) - (cpu_before.user + cpu_before.system), 2
            ),
            "load_average_1m": round(os.getloadavg()[0], 2),
        }


def _partition(account_id: str, partitions: int) -> int:
    """The partition of an account's sub-key 0 (Kafka's default partitioner on the account id;
    its other sub-keys take the partitions after it, bus/dispatch.py): two accounts with the
    same one share every sub-key's partition."""
    return (murmur2(codec.key(account_id)) & 0x7FFFFFFF) % partitions


def _small_account(n: int, big_account: str, partitions: int) -> str:
    """Every fourth small account lands on the big one's partition, so the bench always
    measures the accounts that share it, not only the lucky ones."""
    while True:
        name = f"small{n}-{uuid.uuid4().hex[:6]}"
        same = _partition(name, partitions) == _partition(big_account, partitions)
        if same == (n % 4 == 0):
            return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--big", type=int, default=20_000)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--small", type=int, default=20)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = anyio.run(bench, args, Path(tmp), backend_options={"use_uvloop": True})
    print(orjson.dumps(result).decode())
    sys.exit(0 if result["all_within_5_s"] else 1)


if __name__ == "__main__":
    main()
