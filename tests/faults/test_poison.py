"""Poison records on every topic herald consumes, interleaved with a real campaign on the same
partitions: each is dead-lettered with its reason, the campaign completes exactly, and no
partition stays blocked. (herald produces to dead-letter but never consumes it.)"""

from __future__ import annotations

from collections import Counter

from herald.bus import codec
from herald.constants import TOPIC_CAMPAIGN_EVENTS, TOPIC_DISPATCH_BATCHES, TOPIC_STATUS_EVENTS
from herald.settings import Settings
from herald.store import db
from tests.faults import invariants
from tests.faults.ledger import Ledger
from tests.faults.scenario import campaign, pipeline
from tests.faults.sizes import Scale
from tests.pipeline import publish, publish_event

PARK_TIMEOUT_S = 3.0


def _campaign_poison(account_id: str, event: dict[str, object]) -> list[bytes]:
    """campaign-events: each is dead-lettered as invalid_event."""
    newer = {**event, "campaign_id": "poison-v2", "version": 2}
    contentless = {k: v for k, v in event.items() if k != "content"}
    contentless["campaign_id"] = "poison-no-content"
    return [b"{not json", codec.encode([1, 2]), codec.encode(newer), codec.encode(contentless)]


def _batch_poison(account_id: str, campaign_id: str) -> tuple[list[bytes], Counter[str]]:
    batch = {"v": 1, "kind": "batch", "account_id": account_id, "batch_no": 9_999}
    values = [
        b"\xff\xfe",  # not JSON
        codec.encode({"v": 1, "kind": "batch", "campaign_id": campaign_id}),  # fields missing
        codec.encode({**batch, "campaign_id": "no-such-campaign", "first_id": 1, "last_id": 5}),
        # Well-formed, but the range does not fit PostgreSQL's integer: the handler itself
        # fails on every try, so the record must be dead-lettered after bounded retries.
        codec.encode({**batch, "campaign_id": campaign_id, "first_id": 1, "last_id": 2**40}),
    ]
    kinds = Counter({"invalid_batch": 2, "unknown_campaign": 1, "handler": 1})
    return values, kinds


def _status_poison(campaign_id: str) -> tuple[list[bytes], Counter[str]]:
    values = [
        b"not json",
        codec.encode({"v": 1, "events": "x"}),
        codec.encode({"events": [{"c": 1}]}),
        codec.encode(
            {"v": 1, "events": [{"c": campaign_id, "r": 999_999, "a": 1, "ch": "sms", "s": "sent"}]}
        ),
        # Names only a provider message id nobody sent: parked, then dead-lettered.
        codec.encode(
            {
                "v": 1,
                "events": [
                    {"c": "", "r": 0, "a": 0, "ch": "viber", "s": "delivered", "pm": "4242424242"}
                ],
            }
        ),
    ]
    kinds = Counter({"invalid_status": 3, "unknown_recipient": 1, "unknown_message": 1})
    return values, kinds


async def test_poison_on_every_topic(
    fault_settings: Settings, scale: Scale, ledger: Ledger
) -> None:
    """Poison messages on every topic"""
    settings = fault_settings.with_overrides(status_park_timeout_s=PARK_TIMEOUT_S)
    copies = scale.poison_per_kind
    async with db.pool(settings.database_url) as pool, pipeline(settings) as roles:
        c = await campaign(
            settings,
            pool,
            recipients=scale.recipients,
            nameless_every=7,
            bad_phone_every=11,
            publish=False,
        )
        # Same keys as the real records, so the poison shares their partitions.
        events = _campaign_poison(c.account_id, c.event) * copies
        await publish(settings, TOPIC_CAMPAIGN_EVENTS, events[: len(events) // 2], c.account_id)
        await publish_event(settings, c.event)
        await publish(settings, TOPIC_CAMPAIGN_EVENTS, events[len(events) // 2 :], c.account_id)
        batches, batch_kinds = _batch_poison(c.account_id, c.id)
        await publish(settings, TOPIC_DISPATCH_BATCHES, batches * copies, c.account_id)
        statuses, status_kinds = _status_poison(c.id)
        await publish(settings, TOPIC_STATUS_EVENTS, statuses * copies, c.id)

        want = Counter({"invalid_event": len(events)})
        for kinds in (batch_kinds, status_kinds):
            want.update({k: n * copies for k, n in kinds.items()})
        expect = invariants.Expect(
            campaign_ids=[c.id],
            paths={c.id: c.mode},
            dead_letters=want,
            simulator_url=settings.simulator_url,
        )
        await invariants.check(
            ledger, settings, expect, scale.settle_timeout_s, lambda: roles.crashes
        )
    ledger.verify()
