"""Every sending mode end to end, at once: each campaign's counters, by final state and by
channel, equal what the simulator's per-number behaviour implies for its fallback chain.

Viber addresses user ids: the Viber campaign's contacts open the simulator's bot through a deep
link carrying their contact id (the simulator posts the signed conversation_started and
subscribed callbacks through the ingress to the status role), except every VIBER_UNLINKED_EVERY
-th, which herald knows no Viber user for and skips."""

from __future__ import annotations

import uuid
from collections import Counter

import anyio

from herald.demo import BAD_PHONE_EVERY, FIRST_PHONE, NAMELESS_EVERY, campaign_event
from herald.domain.channels import Channel, SendingMode, chain
from herald.settings import Settings
from herald.simulator.outcomes import expected_path, reads
from herald.store import accounts, campaigns, contacts, db
from tests.pipeline import publish_event, running, wait_completed
from tests.viber_users import link_viber_users

RECIPIENTS = 300
VIBER_UNLINKED_EVERY = 7


def viber_linked(g: int) -> bool:
    return g % VIBER_UNLINKED_EVERY != 3


def expected(mode: SendingMode, n: int) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    totals: Counter[str] = Counter()
    by_channel: dict[str, Counter[str]] = {}
    for g in range(n):
        if g % NAMELESS_EVERY == 0 or (mode is not SendingMode.EMAIL and g % BAD_PHONE_EVERY == 0):
            totals["skipped"] += 1
            continue
        if mode is SendingMode.EMAIL:
            by_channel.setdefault("email", Counter()).update(["sent", "delivered"])
            totals.update(["sent", "delivered"])
            continue
        phone = f"+{FIRST_PHONE + g}"
        path = expected_path(phone, chain(mode), viber_linked=viber_linked(g))
        if not path:
            totals["skipped"] += 1  # no Viber user id: not reachable on Viber
            continue
        accepted = False
        final = "failed"
        for channel, status in path:
            counts = by_channel.setdefault(channel.value, Counter())
            # "failed" is an asynchronous failure after the provider took the message; a
            # synchronous refusal ("unreachable": RCS 404, Viber 6; "rejected": SMS 21211 or
            # 21610) was never taken.
            if status in ("delivered", "read", "failed"):
                counts["sent"] += 1
                accepted = True
            if status in ("delivered", "read"):
                counts["delivered"] += 1
                final = "delivered"
                if channel is not Channel.SMS and reads(phone):
                    totals["read"] += 1
            else:
                counts["failed"] += 1
        totals[final] += 1
        totals["sent"] += int(accepted)
    return dict(totals), {c: dict(v) for c, v in by_channel.items()}


async def test_every_chain(settings: Settings) -> None:
    async with db.pool(settings.database_url) as pool, running(settings):
        started: dict[SendingMode, str] = {}
        for index, mode in enumerate(SendingMode):
            account_id = f"acct-{mode.value.lower()}-{uuid.uuid4().hex[:6]}"
            tag = f"chain{index}"
            await accounts.ensure(pool, account_id, mode.value, None)
            await contacts.insert_synthetic(
                pool,
                account_id=account_id,
                count=RECIPIENTS,
                first_phone=FIRST_PHONE,
                tag=tag,
                nameless_every=NAMELESS_EVERY,
                bad_phone_every=BAD_PHONE_EVERY,
            )
            if Channel.VIBER in chain(mode):
                await link_viber_users(
                    settings,
                    pool,
                    account_id,
                    linked=lambda phone: viber_linked(int(phone[1:]) - FIRST_PHONE),
                )
            campaign_id = str(uuid.uuid4())
            await publish_event(
                settings,
                campaign_event(
                    campaign_id=campaign_id, account_id=account_id, mode=mode, tags=[tag]
                ),
            )
            started[mode] = campaign_id
        results = {}
        with anyio.fail_after(240):
            for mode, campaign_id in started.items():
                results[mode] = await wait_completed(pool, campaign_id, timeout_s=240)
        for mode, counters in results.items():
            totals, by_channel = expected(mode, RECIPIENTS)
            campaign_id = started[mode]
            got = {
                "sent": counters.sent,
                "delivered": counters.delivered,
                "read": counters.read,
                "failed": counters.failed,
                "skipped": counters.skipped,
            }
            want = {k: totals.get(k, 0) for k in got}
            assert got == want, mode
            channels = await campaigns.channel_counters(pool, campaign_id)
            want_channels = {
                c: {k: v.get(k, 0) for k in ("sent", "delivered", "failed")}
                for c, v in by_channel.items()
            }
            assert channels == want_channels, mode
            recount = await campaigns.recount(pool, campaign_id)
            assert recount["final"] == RECIPIENTS == counters.final, mode
