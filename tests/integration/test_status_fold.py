"""The status fold on the real PostgreSQL against the pure machine (domain.status): random
histories of duplicated, reordered and handed-over callbacks, folded in random batches, end in
the states the pure fold gives, with counters equal to a recount; folding them all again
changes nothing."""

from __future__ import annotations

import random
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from herald.demo import campaign_event
from herald.domain.campaign import Command
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.domain.status import (
    RecipientState,
    RecipientStatus,
    StatusEvent,
    fold,
    for_recipient,
)
from herald.status import StatusFolder
from herald.store import attempts, campaigns, db, drafts, recipients

CAMPAIGN = "fold-c1"
RECIPIENTS = 60
CHAIN = ("whatsapp", "rcs", "sms")
S = RecipientStatus


def _folded_counts() -> tuple[float, float]:
    """herald_status_events_folded_total: (changed, unchanged)."""
    return tuple(  # type: ignore[return-value]
        REGISTRY.get_sample_value("herald_status_events_folded_total", {"outcome": o}) or 0.0
        for o in ("changed", "unchanged")
    )


class _NoDeadLetters:
    async def send(self, record: Any, reason: str) -> None:
        raise AssertionError(f"dead-lettered: {reason}")


async def _campaign(pool: asyncpg.Pool) -> None:
    raw = campaign_event(
        campaign_id=CAMPAIGN, account_id="a", mode=SendingMode.WHATSAPP_RCS_SMS, tags=[]
    )
    raw["audience"] = {"destinations": [f"+1415555{i:04d}" for i in range(RECIPIENTS)]}
    event = parse_campaign_confirmed(raw)
    assert await campaigns.insert(pool, event, raw)
    async with pool.acquire() as conn, conn.transaction():
        assert await campaigns.expand(conn, event) == RECIPIENTS
    ids = list(range(1, RECIPIENTS + 1))
    for attempt, channel in enumerate(CHAIN, start=1):
        await attempts.insert_pending(pool, CAMPAIGN, ids, [attempt] * len(ids), channel, channel)


def _history(rng: random.Random, rid: int) -> list[StatusEvent]:
    """One recipient's callbacks over its chain, with duplicates."""
    events = []
    for attempt, channel in enumerate(CHAIN, start=1):
        if attempt > 1 and rng.random() < 0.5:
            break
        outcome = rng.choice(["delivered", "read", "failed", "fallback", "skipped", "sent"])
        steps: list[tuple[RecipientStatus, bool, str | None]] = [(S.SENT, False, None)]
        if outcome in ("delivered", "read"):
            steps.append((S.DELIVERED, False, None))
        if outcome == "read":
            steps.append((S.READ, False, None))
        if outcome == "failed":
            steps.append((S.FAILED, False, "30003"))
        if outcome == "fallback":
            steps.append((S.FAILED, True, rng.choice(["131026", "fallback_window"])))
        if outcome == "skipped":
            steps = [(S.SKIPPED, False, "invalid_phone")]
        for status, fallback, code in steps:
            source = "worker" if status is S.SENT else rng.choice([channel, channel, "sweeper"])
            event = StatusEvent(
                campaign_id=CAMPAIGN,
                recipient_id=rid,
                attempt=attempt,
                channel=channel,
                status=status,
                occurred_at_ms=0,
                source=source,
                provider_message_id=f"pm-{rid}-{attempt}",
                error_code=code,
                error_description=f"error {code}" if code else None,
                accepted=status is not S.SKIPPED,
                fallback=fallback,
            )
            events.extend([event] * rng.choice([1, 1, 2]))
    return events


async def _states(pool: asyncpg.Pool) -> tuple[dict[int, Any], dict[tuple[int, int], Any]]:
    recipients = {
        r["id"]: tuple(r.values())[1:]
        for r in await pool.fetch(
            "SELECT id, status, accepted, channel, error_code, error_description "
            "FROM recipients WHERE campaign_id = $1",
            CAMPAIGN,
        )
    }
    attempt_rows = {
        (r["recipient_id"], r["attempt_no"]): tuple(r.values())[2:]
        for r in await pool.fetch(
            "SELECT recipient_id, attempt_no, status, accepted, error_code, error_description "
            "FROM attempts WHERE campaign_id = $1",
            CAMPAIGN,
        )
    }
    return recipients, attempt_rows


async def _channel_recount(pool: asyncpg.Pool) -> dict[str, dict[str, int]]:
    rows = await pool.fetch(
        "SELECT channel, count(*) FILTER (WHERE accepted) AS sent, "
        "count(*) FILTER (WHERE status IN ('delivered', 'read')) AS delivered, "
        "count(*) FILTER (WHERE status = 'failed') AS failed "
        "FROM attempts WHERE campaign_id = $1 GROUP BY channel",
        CAMPAIGN,
    )
    return {
        r["channel"]: {"sent": r["sent"], "delivered": r["delivered"], "failed": r["failed"]}
        for r in rows
        if r["sent"] or r["delivered"] or r["failed"]
    }


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_fold_matches_the_pure_machine_and_recount(pg_url: str, seed: int) -> None:
    rng = random.Random(seed)
    pool = await db.create_pool(pg_url)
    try:
        await _campaign(pool)
        events = [e for rid in range(1, RECIPIENTS + 1) for e in _history(rng, rid)]
        rng.shuffle(events)
        folder = StatusFolder(pool=pool, dead_letter=_NoDeadLetters())  # type: ignore[arg-type]
        start = 0
        while start < len(events):
            size = rng.randint(1, 40)
            await folder.fold(events[start : start + size])
            start += size

        # The pure machine over the same sequence (folding in batches is folding the whole).
        queued = RecipientState(status=S.QUEUED, accepted=False)
        expected_recipients = {}
        for rid in range(1, RECIPIENTS + 1):
            mine = [e for e in events if e.recipient_id == rid]
            state = fold(queued, [for_recipient(e, len(CHAIN)) for e in mine])
            expected_recipients[rid] = (
                state.status.value,
                state.accepted,
                state.channel,
                state.error_code,
                state.error_description,
            )
        expected_attempts = {}
        for rid in range(1, RECIPIENTS + 1):
            for attempt, channel in enumerate(CHAIN, start=1):
                mine = [e for e in events if (e.recipient_id, e.attempt) == (rid, attempt)]
                initial = RecipientState(status=S.QUEUED, accepted=False, channel=channel)
                state = fold(initial, mine)
                expected_attempts[(rid, attempt)] = (
                    state.status.value,
                    state.accepted,
                    state.error_code,
                    state.error_description,
                )
        recipients, attempt_rows = await _states(pool)
        assert recipients == expected_recipients
        assert attempt_rows == expected_attempts

        counters = await campaigns.counters(pool, CAMPAIGN)
        assert counters is not None
        recount = await campaigns.recount(pool, CAMPAIGN)
        for field in ("sent", "delivered", "read", "failed", "skipped", "cancelled", "final"):
            assert getattr(counters, field) == recount[field], field
        by_channel = await campaigns.channel_counters(pool, CAMPAIGN)
        assert {k: v for k, v in by_channel.items() if any(v.values())} == (
            await _channel_recount(pool)
        )

        # Handed over: a recipient whose attempt failed with a fallback (not reported by the
        # worker itself) while it was still open goes on at the next attempt.
        for rid in range(1, RECIPIENTS + 1):
            row = await pool.fetchrow(
                "SELECT status, next_attempt FROM recipients WHERE campaign_id = $1 AND id = $2",
                CAMPAIGN,
                rid,
            )
            assert row is not None
            if row["next_attempt"] is not None:
                attempt = row["next_attempt"] - 1
                failed = expected_attempts[(rid, attempt)]
                assert failed[0] == "failed" and 1 <= attempt < len(CHAIN)

        # Again, in another order: nothing moves.
        before = (await _states(pool), await campaigns.recount(pool, CAMPAIGN))
        counted = await campaigns.counters(pool, CAMPAIGN)
        rng.shuffle(events)
        await folder.fold(events)
        assert (await _states(pool), await campaigns.recount(pool, CAMPAIGN)) == before
        assert await campaigns.counters(pool, CAMPAIGN) == counted
    finally:
        await pool.close()


async def _assert_exact(pool: asyncpg.Pool) -> None:
    kept = await campaigns.counters(pool, CAMPAIGN)
    assert kept is not None
    for field, value in (await campaigns.recount(pool, CAMPAIGN)).items():
        assert getattr(kept, field) == value, field
    assert await drafts.variant_counters(pool, CAMPAIGN) == (
        await drafts.variant_recount(pool, CAMPAIGN)
    )


async def test_variant_counters_equal_a_recount_after_folds_and_a_cancel(pg_url: str) -> None:
    """The A/B report's counters, set at expansion and moved by the fold (duplicated,
    reordered callbacks) and by a cancel that marks the unsent batches in SQL, equal a
    recount from the recipient rows at every step."""
    rng = random.Random(7)
    pool = await db.create_pool(pg_url)
    try:
        raw = campaign_event(
            campaign_id=CAMPAIGN, account_id="a", mode=SendingMode.WHATSAPP_RCS_SMS, tags=[]
        )
        raw["audience"] = {"destinations": [f"+1415555{i:04d}" for i in range(RECIPIENTS)]}
        raw["variants"] = [
            {"name": name, "weight": weight, "content": raw["content"]}
            for name, weight in (("A", 50), ("B", 30), ("C", 20))
        ]
        # Batches of 20, a minute apart: only the first is due, so a cancel finds two later
        # batches to mark in SQL.
        raw["batch_size"], raw["batch_delay_ms"] = 20, 60_000
        event = parse_campaign_confirmed(raw)
        assert await campaigns.insert(pool, event, raw)
        async with pool.acquire() as conn, conn.transaction():
            assert await campaigns.expand(conn, event) == RECIPIENTS
        counted = await drafts.variant_counters(pool, CAMPAIGN)
        assert sorted(counted) == [0, 1, 2]
        assert sum(v["recipients"] for v in counted.values()) == RECIPIENTS
        await _assert_exact(pool)

        sent = list(range(1, 21))
        for attempt, channel in enumerate(CHAIN, start=1):
            await attempts.insert_pending(
                pool, CAMPAIGN, sent, [attempt] * len(sent), channel, channel
            )
        events = [e for rid in sent for e in _history(rng, rid)]
        rng.shuffle(events)
        folder = StatusFolder(pool=pool, dead_letter=_NoDeadLetters())  # type: ignore[arg-type]
        half = len(events) // 2
        await folder.fold(events[:half])
        await _assert_exact(pool)

        assert await campaigns.transition(pool, Command.CANCEL, [CAMPAIGN])
        assert await campaigns.cancel_unsent(pool, CAMPAIGN) == RECIPIENTS - len(sent)
        await _assert_exact(pool)
        by_variant = await drafts.variant_counters(pool, CAMPAIGN)
        assert sum(v["cancelled"] for v in by_variant.values()) >= RECIPIENTS - len(sent)

        # The rest, then everything again in another order (duplicates): still exact.
        await folder.fold(events[half:])
        rng.shuffle(events)
        await folder.fold(events)
        await _assert_exact(pool)
        final = await drafts.variant_counters(pool, CAMPAIGN)
        assert (
            sum(v["recipients"] - v["pending"] for v in final.values())
            == (await campaigns.recount(pool, CAMPAIGN))["final"]
        )
    finally:
        await pool.close()


async def test_orphans_and_parked(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        await _campaign(pool)
        await pool.execute(
            "UPDATE attempts SET provider_message_id = 'known-pm' "
            "WHERE campaign_id = $1 AND recipient_id = 1 AND attempt_no = 1",
            CAMPAIGN,
        )

        def ev(campaign: str, rid: int, attempt: int, pm: str | None) -> StatusEvent:
            return StatusEvent(
                campaign_id=campaign,
                recipient_id=rid,
                attempt=attempt,
                channel="whatsapp" if campaign else "",
                status=S.DELIVERED,
                occurred_at_ms=0,
                source="whatsapp",
                provider_message_id=pm,
                accepted=True,
            )

        folder = StatusFolder(pool=pool, dead_letter=_NoDeadLetters())  # type: ignore[arg-type]
        result = await folder.fold(
            [
                ev(CAMPAIGN, 9_999, 1, None),  # no such recipient
                ev("", 0, 0, "known-pm"),  # resolved to recipient 1's first attempt
                ev("", 0, 0, "unknown-pm"),  # parked until its send is recorded
            ]
        )
        assert result.orphans == {(CAMPAIGN, 9_999)}
        assert result.parked == 1
        assert await pool.fetchval("SELECT count(*) FROM parked_status_events") == 1
        row = await pool.fetchrow(
            "SELECT status, accepted, channel FROM recipients WHERE campaign_id = $1 AND id = 1",
            CAMPAIGN,
        )
        assert row is not None and tuple(row.values()) == ("delivered", True, "whatsapp")
        counters = await campaigns.counters(pool, CAMPAIGN)
        assert counters is not None and (counters.sent, counters.delivered) == (1, 1)
    finally:
        await pool.close()


async def test_a_callback_moves_only_an_attempt_of_its_own_channel(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        await _campaign(pool)
        await pool.execute(
            "UPDATE attempts SET provider_message_id = 'sms-pm' "
            "WHERE campaign_id = $1 AND recipient_id = 2 AND attempt_no = 3",
            CAMPAIGN,
        )

        def ev(channel: str, rid: int, attempt: int, pm: str | None = None) -> StatusEvent:
            return StatusEvent(
                campaign_id=CAMPAIGN if attempt else "",
                recipient_id=rid if attempt else 0,
                attempt=attempt,
                channel=channel,
                status=S.READ,
                occurred_at_ms=0,
                source=channel,
                provider_message_id=pm,
                accepted=True,
            )

        forged = [
            ev("whatsapp", 1, 3),  # attempt 3 of this chain is SMS
            ev("email", 1, 1),  # attempt 1 is WhatsApp
            ev("rcs", 1, 4),  # the chain has three steps
            ev("whatsapp", 0, 0, "sms-pm"),  # names an SMS attempt by its provider id
        ]
        folder = StatusFolder(pool=pool, dead_letter=_NoDeadLetters())  # type: ignore[arg-type]
        before = _folded_counts()
        result = await folder.fold([*forged, ev("whatsapp", 3, 1)])
        assert sorted(result.mismatched) == sorted(forged)
        # Only the one event of its own channel counts as folded (it moved its recipient).
        after = _folded_counts()
        assert (after[0] - before[0], after[1] - before[1]) == (1, 0)
        rows = await pool.fetch(
            "SELECT id, status FROM recipients WHERE campaign_id = $1 AND id <= 3 ORDER BY id",
            CAMPAIGN,
        )
        assert [tuple(r.values()) for r in rows] == [(1, "queued"), (2, "queued"), (3, "read")]
    finally:
        await pool.close()


async def test_the_recipient_row_follows_the_chain_after_a_late_fallback(pg_url: str) -> None:
    """WhatsApp took the message, then reported 131026: while the next attempt is in flight
    the recipient row names that attempt's channel and number, not WhatsApp's."""
    pool = await db.create_pool(pg_url)
    try:
        raw = campaign_event(
            campaign_id=CAMPAIGN, account_id="a", mode=SendingMode.WHATSAPP_RCS_SMS, tags=[]
        )
        raw["audience"] = {"destinations": ["+14155550001", "+14155550002"]}
        event = parse_campaign_confirmed(raw)
        assert await campaigns.insert(pool, event, raw)
        async with pool.acquire() as conn, conn.transaction():
            assert await campaigns.expand(conn, event) == 2
        folder = StatusFolder(pool=pool, dead_letter=_NoDeadLetters())  # type: ignore[arg-type]

        async def row(rid: int) -> tuple[str, str | None, int | None]:
            (r,) = [
                r
                for r in await recipients.page(pool, CAMPAIGN, status=None, after_id=0, limit=9)
                if r["id"] == rid
            ]
            return r["status"], r["channel"], r["attempt_no"]

        def ev(rid: int, attempt: int, channel: str, status: S, **kw: Any) -> StatusEvent:
            return StatusEvent(
                campaign_id=CAMPAIGN,
                recipient_id=rid,
                attempt=attempt,
                channel=channel,
                status=status,
                occurred_at_ms=0,
                source=kw.pop("source", channel),
                accepted=True,
                **kw,
            )

        # A first attempt leaves the row alone (the fold names its channel).
        await attempts.insert_pending(pool, CAMPAIGN, [1, 2], [1, 1], "whatsapp", "whatsapp")
        assert await row(1) == ("queued", None, 1)
        await folder.fold([ev(1, 1, "whatsapp", S.SENT, source="worker")])
        await folder.fold([ev(2, 1, "whatsapp", S.SENT, source="worker")])
        assert await row(1) == ("sent", "whatsapp", 1)

        # The late failure hands recipient 1 over; its row still shows WhatsApp until...
        result = await folder.fold(
            [ev(1, 1, "whatsapp", S.FAILED, fallback=True, error_code="131026")]
        )
        assert result.fallbacks_due == 1
        assert await row(1) == ("sent", "whatsapp", 1)

        # ...the worker starts the next attempt: the row follows the chain.
        await attempts.insert_pending(pool, CAMPAIGN, [1], [2], "rcs", "rcs")
        assert await row(1) == ("sent", "rcs", 2)
        await folder.fold([ev(1, 2, "rcs", S.SENT, source="worker")])
        assert await row(1) == ("sent", "rcs", 2)
        # Recorded again (a redelivered work item): nothing moves.
        await attempts.insert_pending(pool, CAMPAIGN, [1], [2], "rcs", "rcs")
        assert await row(1) == ("sent", "rcs", 2)

        # A final recipient is never moved: recipient 2 was delivered on WhatsApp.
        await folder.fold([ev(2, 1, "whatsapp", S.DELIVERED)])
        await attempts.insert_pending(pool, CAMPAIGN, [2], [2], "rcs", "rcs")
        assert (await row(2))[:2] == ("delivered", "whatsapp")

        # A delivery the earlier channel reports late still wins, naming its channel.
        await folder.fold([ev(1, 1, "whatsapp", S.DELIVERED)])
        assert (await row(1))[:2] == ("delivered", "whatsapp")
    finally:
        await pool.close()


async def test_a_step_that_succeeds_on_acceptance_ends_the_chain_on_a_failure_report(
    pg_url: str,
) -> None:
    """WhatsApp's step succeeds once Meta took the message: a later 131026 report fails the
    recipient there instead of handing it to RCS. The worker's own "not reachable" answer (the
    provider never took it) still moves on."""
    pool = await db.create_pool(pg_url)
    try:
        raw = campaign_event(
            campaign_id="pol", account_id="a", mode=SendingMode.WHATSAPP_RCS_SMS, tags=[]
        )
        raw["audience"] = {"destinations": ["+14155550001", "+14155550002"]}
        raw["fallback"] = [{"channel": "whatsapp", "success": "accepted"}]
        event = parse_campaign_confirmed(raw)
        assert await campaigns.insert(pool, event, raw)
        async with pool.acquire() as conn, conn.transaction():
            assert await campaigns.expand(conn, event) == 2
        await attempts.insert_pending(pool, "pol", [1, 2], [1, 1], "whatsapp", "whatsapp")

        def failed(rid: int, source: str, accepted: bool) -> StatusEvent:
            return StatusEvent(
                campaign_id="pol",
                recipient_id=rid,
                attempt=1,
                channel="whatsapp",
                status=S.FAILED,
                occurred_at_ms=1,
                source=source,
                error_code="131026",
                accepted=accepted,
                fallback=True,
            )

        folder = StatusFolder(pool=pool, dead_letter=_NoDeadLetters())  # type: ignore[arg-type]
        result = await folder.fold([failed(1, "whatsapp", True), failed(2, "worker", False)])
        assert result.fallbacks_due == 0
        rows = await pool.fetch(
            "SELECT id, status, next_attempt FROM recipients WHERE campaign_id = 'pol' ORDER BY id"
        )
        # 1 ends failed on WhatsApp; 2 is not final: the worker walks its chain on at once.
        assert [tuple(r.values()) for r in rows] == [(1, "failed", None), (2, "queued", None)]
    finally:
        await pool.close()


async def test_attempts_leave_the_window_index_when_final_and_keep_their_message_id(
    pg_url: str,
) -> None:
    """An attempt waits for its fallback window (window_open, the sweeper's index) while it is
    queued or sent and stops once final; a callback records the provider's message id only on
    an attempt row that has none, and the rows the fold writes in groups get their own state."""
    pool = await db.create_pool(pg_url)
    try:
        await _campaign(pool)
        await pool.execute(
            "UPDATE attempts SET provider_message_id = 'known-2' "
            "WHERE campaign_id = $1 AND recipient_id = 2 AND attempt_no = 1",
            CAMPAIGN,
        )

        def ev(rid: int, status: RecipientStatus, pm: str) -> StatusEvent:
            return StatusEvent(
                campaign_id=CAMPAIGN,
                recipient_id=rid,
                attempt=1,
                channel="whatsapp",
                status=status,
                occurred_at_ms=0,
                source="whatsapp",
                provider_message_id=pm,
                error_code="131026" if status is S.FAILED else None,
                accepted=status is not S.FAILED,
            )

        folder = StatusFolder(pool=pool, dead_letter=_NoDeadLetters())  # type: ignore[arg-type]
        await folder.fold([ev(1, S.SENT, "pm-1"), ev(2, S.SENT, "other-2"), ev(3, S.SENT, "pm-3")])
        await folder.fold([ev(1, S.DELIVERED, "pm-1"), ev(3, S.FAILED, "pm-3")])
        rows = {
            r["recipient_id"]: tuple(r.values())[1:]
            for r in await pool.fetch(
                "SELECT recipient_id, status, window_open, provider_message_id, error_code "
                "FROM attempts WHERE campaign_id = $1 AND attempt_no = 1 AND recipient_id <= 4",
                CAMPAIGN,
            )
        }
        assert rows == {
            1: ("delivered", False, "pm-1", None),
            2: ("sent", True, "known-2", None),
            3: ("failed", False, "pm-3", "131026"),
            4: ("queued", True, None, None),
        }
        # Only the attempt still sent is found by the sweeper once its window has passed.
        await pool.execute(
            "UPDATE attempts SET created_at = now() - interval '1 day' WHERE campaign_id = $1",
            CAMPAIGN,
        )
        async with pool.acquire() as conn, conn.transaction():
            waiting = await attempts.claim_expired_windows(conn, 100)
            assert [(w.recipient_id, w.attempt_no) for w in waiting] == [(2, 1)]
            await attempts.mark_window_expired(conn, waiting)
        assert (
            await pool.fetchval(
                "SELECT window_open FROM attempts "
                "WHERE campaign_id = $1 AND recipient_id = 2 AND attempt_no = 1",
                CAMPAIGN,
            )
            is False
        )
    finally:
        await pool.close()
