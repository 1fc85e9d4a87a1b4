"""`herald demo`: a real campaign through every role, on embedded services, with a progress bar.

Creates a demo account and N synthetic contacts (every 1,000th with a bad phone number and
every 500th without a first name, so skips show their reasons), publishes campaign.confirmed,
and follows the campaign's exact counters until it completes. Exits 0 only when the campaign
completed and the folded counters equal a recount from the recipient rows.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import time
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

import aiohttp
import anyio
import asyncpg
import orjson

from herald import embedded, process, runner
from herald.bus import codec
from herald.bus.producer import producer as kafka_producer
from herald.constants import EVENT_CAMPAIGN_CONFIRMED, TOPIC_CAMPAIGN_EVENTS
from herald.domain.campaign import CampaignStatus
from herald.domain.channels import Channel, SendingMode, chain
from herald.settings import Settings
from herald.simulator.viber import MAX_USERS_PER_REQUEST, USERS_PATH
from herald.store import accounts, campaigns, contacts, db

DEMO_TAG = "demo"
FIRST_PHONE = 14150000000
BAD_PHONE_EVERY = 1000
NAMELESS_EVERY = 500
STALL_TIMEOUT_S = 120.0


def campaign_event(
    *, campaign_id: str, account_id: str, mode: SendingMode, tags: list[str]
) -> dict[str, Any]:
    """A campaign.confirmed v1 event with content for every channel the mode names."""
    content: dict[str, Any] = {}
    for channel in chain(mode):
        if channel is Channel.SMS:
            content["sms"] = {"sender": "+15005550006", "body": "Hi {{first_name}}, 20% off today."}
        elif channel is Channel.WHATSAPP:
            content["whatsapp"] = {
                "template_name": "spring_sale",
                "language": "en_US",
                "components": [{"type": "body", "parameters": [{"type": "text", "text": "{{1}}"}]}],
            }
        elif channel is Channel.RCS:
            content["rcs"] = {"agent_id": "herald-demo", "text": "Hi {{first_name}}, 20% off."}
        elif channel is Channel.VIBER:
            content["viber"] = {"sender": "Herald", "text": "Hi {{first_name}}, 20% off."}
        else:
            content["email"] = {
                "from": "offers@example.com",
                "subject": "20% off",
                "body": "Hi {{first_name}}",
            }
    return {
        "type": EVENT_CAMPAIGN_CONFIRMED,
        "version": 1,
        "event_id": str(uuid.uuid4()),
        "occurred_at": datetime.now(UTC).isoformat(),
        "campaign_id": campaign_id,
        "account_id": account_id,
        "name": "Demo campaign",
        "sending_mode": mode.value,
        "content": content,
        "audience": {"tags": tags},
        "variable_mappings": {"1": "first_name"},
        "batch_size": 100_000,
    }


async def demo(settings: Settings, recipients: int, mode: SendingMode, as_json: bool) -> int:
    # The embedded PostgreSQL's runtime directory falls back to /tmp without
    # XDG_RUNTIME_DIR, harmlessly; a newcomer's first screen need not say so.
    warnings.filterwarnings("ignore", module="platformdirs")
    async with embedded.running(settings) as resolved:
        stop = anyio.Event()
        ready = anyio.Event()
        summary: dict[str, Any] = {}
        # The simulator stands in for providers on the far side of the internet, and the
        # ingress and the worker each get a process, as in Kubernetes: the roles share the
        # cores instead of one event loop.
        with (
            process.child(resolved, ["simulator"]),
            process.child(resolved, ["ingress"]),
            process.child(resolved, ["worker"]),
        ):
            await anyio.to_thread.run_sync(
                process.wait_listening, "127.0.0.1", resolved.simulator_port
            )
            await anyio.to_thread.run_sync(
                process.wait_listening, "127.0.0.1", resolved.ingress_port
            )
            roles = frozenset(runner.ROLES) - {"simulator", "ingress", "worker"}
            async with anyio.create_task_group() as tg:
                tg.start_soon(runner.run_roles, resolved, roles, stop, ready)
                with anyio.fail_after(120):
                    await ready.wait()
                try:
                    summary = await _campaign(resolved, recipients, mode)
                finally:
                    stop.set()
    ok = summary.get("ok", False)
    _print_summary(summary, as_json)
    return 0 if ok else 1


async def link_viber_users(
    settings: Settings,
    pool: asyncpg.Pool,
    account_id: str,
    *,
    linked: Callable[[str], bool] = lambda phone: True,
    timeout_s: float = 60,
) -> int:
    """Links the account's contacts whose phone `linked` accepts; returns once herald has
    learned every one of their user ids (how many)."""
    chosen = [
        (cid, phone) for cid, phone in await contacts.phones(pool, account_id) if linked(phone)
    ]
    url = f"{settings.simulator_url}{USERS_PATH}"
    async with aiohttp.ClientSession() as session:
        for start in range(0, len(chosen), MAX_USERS_PER_REQUEST):
            users = [
                {"phone": phone, "context": contact_id}
                for contact_id, phone in chosen[start : start + MAX_USERS_PER_REQUEST]
            ]
            async with session.post(url, json=users) as answer:
                if answer.status != 201:
                    raise RuntimeError(f"the simulator refused Viber users: {await answer.text()}")
    # The links arrive through callbacks (simulator, ingress, status role): poll for them.
    with anyio.fail_after(timeout_s):
        while True:
            if await contacts.identities(pool, account_id, Channel.VIBER.value) >= len(chosen):
                return len(chosen)
            await anyio.sleep(0.1)


async def _campaign(settings: Settings, recipients: int, mode: SendingMode) -> dict[str, Any]:
    account_id = f"demo-{uuid.uuid4().hex[:12]}"
    campaign_id = str(uuid.uuid4())
    async with db.pool(settings.database_url, max_size=2) as pool:
        await accounts.ensure(pool, account_id, "Demo account", None)
        await contacts.insert_synthetic(
            pool,
            account_id=account_id,
            count=recipients,
            first_phone=FIRST_PHONE,
            tag=DEMO_TAG,
            nameless_every=NAMELESS_EVERY,
            bad_phone_every=BAD_PHONE_EVERY,
        )
        if Channel.VIBER in chain(mode):
            # Viber addresses user ids: the demo's contacts open the bot through a deep link
            # carrying their contact id, as real users would.
            await link_viber_users(settings, pool, account_id)
        event = campaign_event(
            campaign_id=campaign_id, account_id=account_id, mode=mode, tags=[DEMO_TAG]
        )
        started = time.monotonic()
        async with kafka_producer(settings) as producer:
            await producer.send_and_wait(
                settings.topic(TOPIC_CAMPAIGN_EVENTS),
                codec.encode(event),
                key=codec.key(account_id),
            )
        last_final, last_change = -1, time.monotonic()
        bar = ProgressBar(expected=recipients)
        with _quiet_while_drawing():
            while True:
                counters = await campaigns.counters(pool, campaign_id)
                if counters is not None:
                    bar.draw(counters, time.monotonic() - started)
                    if counters.final != last_final:
                        last_final, last_change = counters.final, time.monotonic()
                    if CampaignStatus(counters.status).final:
                        break
                if time.monotonic() - last_change > STALL_TIMEOUT_S:
                    break
                await anyio.sleep(0.25)
            bar.close()
        elapsed = time.monotonic() - started
        counters = await campaigns.counters(pool, campaign_id)
        recount = await campaigns.recount(pool, campaign_id)
        by_channel = await campaigns.channel_counters(pool, campaign_id)
    assert counters is not None
    folded = {
        "sent": counters.sent,
        "delivered": counters.delivered,
        "read": counters.read,
        "failed": counters.failed,
        "skipped": counters.skipped,
        "cancelled": counters.cancelled,
        "final": counters.final,
    }
    exact = all(recount[k] == v for k, v in folded.items()) and recount["total"] == counters.total
    once = (
        counters.delivered + counters.failed + counters.skipped + counters.cancelled
        == counters.total
    )
    return {
        "campaign_id": campaign_id,
        "status": counters.status,
        "sending_mode": mode.value,
        "recipients": counters.total,
        "sent": counters.sent,
        "delivered": counters.delivered,
        "read": counters.read,
        "failed": counters.failed,
        "skipped": counters.skipped,
        "cancelled": counters.cancelled,
        "by_channel": by_channel,
        "elapsed_s": round(elapsed, 3),
        "messages_per_s": round(counters.total / elapsed, 1) if elapsed else 0.0,
        "ok": counters.status == "completed" and exact and once,
        "counters_match_recount": exact,
    }


class ProgressBar:
    """One line redrawn in place on a terminal; elsewhere (a CI log, a pipe) a plain line
    every few seconds, so the log stays readable."""

    WIDTH = 30
    PLAIN_EVERY_S = 5.0

    def __init__(self, *, expected: int, stream: TextIO | None = None) -> None:
        self.expected = expected
        self.stream = stream or sys.stderr
        self.in_place = self.stream.isatty()
        self._shown_at_s = -self.PLAIN_EVERY_S
        self._line = ""

    def draw(self, counters: campaigns.Counters, elapsed_s: float) -> None:
        total = counters.total or self.expected
        filled = int(self.WIDTH * counters.final / total) if total else self.WIDTH
        rate = counters.final / elapsed_s if elapsed_s > 0 else 0.0
        self._line = (
            f"[{'#' * filled}{'.' * (self.WIDTH - filled)}] {counters.final:,}/{total:,} final"
            f"  sent {counters.sent:,}  delivered {counters.delivered:,}"
            f"  failed {counters.failed:,}  skipped {counters.skipped:,}  {rate:,.0f}/s"
        )
        if self.in_place:
            self.stream.write(f"\r{self._line}\033[K")
        elif elapsed_s - self._shown_at_s >= self.PLAIN_EVERY_S:
            self._shown_at_s = elapsed_s
            self.stream.write(f"{self._line}\n")
        self.stream.flush()

    def close(self) -> None:
        """Ends the bar's line, showing the last state once more off a terminal."""
        if self.in_place:
            self.stream.write("\n")
        elif self._line:
            self.stream.write(f"{self._line}\n")
        self.stream.flush()


@contextlib.contextmanager
def _quiet_while_drawing() -> Iterator[None]:
    """While the bar redraws its line, herald's own INFO lines (this process runs the
    scheduler and the status roles) would break it: warnings still show, and the summary
    says what the INFO lines would have."""
    logger = logging.getLogger("herald")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def _table(header: Sequence[str], rows: Sequence[Sequence[object]]) -> list[str]:
    """Aligned columns: the first left-aligned, the rest (numbers) right-aligned."""
    cells = [[str(h) for h in header]] + [
        [f"{v:,}" if isinstance(v, int) else str(v) for v in row] for row in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(header))]
    return [
        "  ".join(
            cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row)
        ).rstrip()
        for row in cells
    ]


def format_summary(summary: Mapping[str, Any]) -> str:
    """The demo's closing report: sends by channel (in the chain's order), then recipients by
    final state, then whether the counters are exact."""
    mode = SendingMode(summary["sending_mode"])
    by_channel: Mapping[str, Mapping[str, int]] = summary["by_channel"]
    order = [c.value for c in chain(mode) if c.value in by_channel]
    order += sorted(set(by_channel) - set(order))
    channels = _table(
        ("channel", "sent", "delivered", "failed"),
        [
            (
                name,
                by_channel[name]["sent"],
                by_channel[name]["delivered"],
                by_channel[name]["failed"],
            )
            for name in order
        ],
    )
    states = _table(
        ("final state", "recipients"),
        [
            ("delivered", summary["delivered"]),
            ("  of which read", summary["read"]),
            ("failed", summary["failed"]),
            ("skipped", summary["skipped"]),
            ("cancelled", summary["cancelled"]),
            ("total", summary["recipients"]),
        ],
    )
    exact = summary["counters_match_recount"]
    lines = [
        f"campaign {summary['campaign_id']} ({mode.value}): {summary['status']}, "
        f"{summary['recipients']:,} recipients in {summary['elapsed_s']:.1f} s "
        f"({summary['messages_per_s']:,.0f}/s)",
        "",
        *channels,
        "",
        *states,
        "",
        f"counters equal a recount of recipient rows: {'yes' if exact else 'NO'}",
        "result: " + ("ok" if summary["ok"] else "FAILED"),
    ]
    return "\n".join(lines)


def _print_summary(summary: dict[str, Any], as_json: bool) -> None:
    if not summary:
        print("demo did not run to a summary", file=sys.stderr)
        return
    print(format_summary(summary), file=sys.stderr if as_json else sys.stdout)
    if as_json:
        shown = {k: v for k, v in summary.items() if k not in ("ok", "counters_match_recount")}
        print(orjson.dumps(shown).decode())
