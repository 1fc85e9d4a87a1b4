"""Audience expansion on the real PostgreSQL: every source (contact ids, lists, tags, segment
rules, raw destinations) at once, each recipient once, other accounts' data never."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import Any

import asyncpg

from herald.demo import campaign_event
from herald.domain.channels import Channel, SendingMode
from herald.domain.events import parse_campaign_confirmed, variant_of, variant_starts
from herald.store import accounts, campaigns, db, lists, recipients, segments


async def _contact(
    conn: asyncpg.Connection, account: str, phone: str, *, tags: list[str], stage: str = ""
) -> uuid.UUID:
    cid: uuid.UUID = await conn.fetchval(
        "INSERT INTO contacts (account_id, phone, first_name, tags, lifecycle_stage) "
        "VALUES ($1, $2, 'Ada', $3, $4) RETURNING id",
        account,
        phone,
        tags,
        stage or None,
    )
    return cid


async def _expand(pool: asyncpg.Pool, raw: dict[str, Any]) -> int:
    event = parse_campaign_confirmed(raw)
    async with pool.acquire() as conn, conn.transaction():
        assert await campaigns.insert(pool, event, raw)
        return await campaigns.expand(conn, event)


async def test_every_source_once(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        await accounts.ensure(pool, "a", "A", None)
        await accounts.ensure(pool, "b", "B", None)
        async with pool.acquire() as conn:
            by_id = await _contact(conn, "a", "+14155550101", tags=[])
            in_list = await _contact(conn, "a", "+14155550102", tags=[])
            tagged = await _contact(conn, "a", "+14155550103", tags=["vip"])
            lead = await _contact(conn, "a", "+14155550104", tags=[], stage="lead")
            # In two sources at once: counted once.
            both = await _contact(conn, "a", "+14155550105", tags=["vip"], stage="lead")
            await _contact(conn, "a", "+14155550106", tags=["other"])  # matches nothing
            foreign = await _contact(conn, "b", "+14155550107", tags=["vip"])
        group = await lists.insert(pool, "a", "list", "")
        added = await lists.add_members(pool, "a", group["id"], [in_list, both])
        assert added is not None
        segment = await segments.insert(pool, "a", "leads", "", {"lifecycle_stage": "lead"})
        raw = campaign_event(campaign_id="c1", account_id="a", mode=SendingMode.SMS, tags=["vip"])
        raw["audience"] = {
            "contact_ids": [str(by_id), str(foreign), "not-a-uuid"],
            "list_ids": [str(group["id"])],
            "segment_id": str(segment["id"]),
            "tags": ["vip"],
            # One new number, one repeated, one already a contact's: two more recipients.
            "destinations": ["+14155550199", "+14155550199", "+14155550101", "12345"],
        }
        total = await _expand(pool, raw)
        rows = await pool.fetch(
            "SELECT id, contact_id, phone FROM recipients WHERE campaign_id = 'c1' ORDER BY id"
        )
        contacts_in = {r["contact_id"] for r in rows if r["contact_id"]}
        assert contacts_in == {by_id, in_list, tagged, lead, both}
        assert sorted(r["phone"] for r in rows if r["contact_id"] is None) == [
            "+14155550199",
            "12345",
        ]
        assert total == len(rows) == 7
        assert [r["id"] for r in rows] == list(range(1, 8))
        batches = await pool.fetchval("SELECT count(*) FROM batches WHERE campaign_id = 'c1'")
        assert batches == 1
    finally:
        await pool.close()


async def test_unknown_segment_reaches_nobody_and_completes(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        await accounts.ensure(pool, "a", "A", None)
        raw = campaign_event(campaign_id="c2", account_id="a", mode=SendingMode.SMS, tags=["x"])
        raw["audience"] = {"segment_id": str(uuid.uuid4())}
        assert await _expand(pool, raw) == 0
        counters = await campaigns.counters(pool, "c2")
        assert counters is not None
        assert counters.status == "completed"
    finally:
        await pool.close()


async def test_opt_outs_reach_the_worker(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        await accounts.ensure(pool, "a", "A", None)
        async with pool.acquire() as conn:
            cid = await _contact(conn, "a", "+14155550101", tags=["t"])
            await conn.execute(
                "INSERT INTO contact_preferences (contact_id, channel, opted_in) "
                "VALUES ($1, 'whatsapp', false), ($1, 'sms', true)",
                cid,
            )
        raw = campaign_event(
            campaign_id="c3", account_id="a", mode=SendingMode.WHATSAPP_SMS, tags=["t"]
        )
        assert await _expand(pool, raw) == 1
        chunk = await recipients.queued_chunk(pool, "c3", 0, 10, 10)
        assert [r.opted_out for r in chunk] == [frozenset({Channel.WHATSAPP})]
    finally:
        await pool.close()


async def test_ab_variants_split_exactly_as_the_domain_rule_says(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        await accounts.ensure(pool, "a", "A", None)
        raw = campaign_event(campaign_id="ab", account_id="a", mode=SendingMode.SMS, tags=[])
        raw["audience"] = {"destinations": [f"+1415555{n:04d}" for n in range(300)]}
        sms = raw["content"]["sms"]
        raw["variants"] = [
            {"name": "A", "weight": 50, "content": {"sms": {**sms, "body": "a"}}},
            {"name": "B", "weight": 30, "content": {"sms": {**sms, "body": "b"}}},
            {"name": "C", "weight": 20, "content": {"sms": {**sms, "body": "c"}}},
        ]
        assert await _expand(pool, raw) == 300
        rows = await pool.fetch("SELECT id, variant FROM recipients WHERE campaign_id = 'ab'")
        starts = variant_starts(parse_campaign_confirmed(raw).variants)
        assert starts == [0, 50, 80]
        assert {r["id"]: r["variant"] for r in rows} == {
            r["id"]: variant_of(r["id"], starts) for r in rows
        }
        # Every 100 consecutive recipients split exactly.
        assert Counter(r["variant"] for r in rows) == {0: 150, 1: 90, 2: 60}
        chunk = await recipients.queued_chunk(pool, "ab", 0, 300, 10)
        assert [r.variant for r in chunk] == [variant_of(r.id, starts) for r in chunk]

        plain = campaign_event(campaign_id="plain", account_id="a", mode=SendingMode.SMS, tags=[])
        plain["audience"] = {"destinations": ["+14155550001"]}
        await _expand(pool, plain)
        assert (
            await pool.fetchval("SELECT variant FROM recipients WHERE campaign_id = 'plain'")
            is None
        )
    finally:
        await pool.close()


async def test_failed_of_brings_back_only_that_campaigns_failed_recipients(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        await accounts.ensure(pool, "a", "A", None)
        await accounts.ensure(pool, "b", "B", None)
        async with pool.acquire() as conn:
            failed_contact = await _contact(conn, "a", "+14155550201", tags=[])
            delivered_contact = await _contact(conn, "a", "+14155550202", tags=[])
        first = campaign_event(campaign_id="first", account_id="a", mode=SendingMode.SMS, tags=[])
        first["audience"] = {
            "contact_ids": [str(failed_contact), str(delivered_contact)],
            "destinations": ["+14155550203", "+14155550204"],
        }
        await _expand(pool, first)
        await pool.execute(
            "UPDATE recipients SET status = CASE WHEN contact_id = $1 OR phone = '+14155550204' "
            "THEN 'failed' ELSE 'delivered' END WHERE campaign_id = 'first'",
            failed_contact,
        )
        retry = campaign_event(campaign_id="retry", account_id="a", mode=SendingMode.SMS, tags=[])
        retry["audience"] = {"failed_of": "first"}
        assert await _expand(pool, retry) == 2
        rows = await pool.fetch(
            "SELECT contact_id, phone FROM recipients WHERE campaign_id = 'retry' ORDER BY id"
        )
        assert [(r["contact_id"], r["phone"]) for r in rows] == [
            (failed_contact, "+14155550201"),
            (None, "+14155550204"),
        ]
        # Another account cannot name it.
        stolen = campaign_event(campaign_id="stolen", account_id="b", mode=SendingMode.SMS, tags=[])
        stolen["audience"] = {"failed_of": "first"}
        assert await _expand(pool, stolen) == 0
    finally:
        await pool.close()


async def test_one_recipient_per_normalised_address(pg_url: str) -> None:
    """Seven spellings of one number in an upstream event, and two contacts sharing a phone
    (or, for an email campaign, an address in two cases), each reach one recipient."""
    pool = await db.create_pool(pg_url)
    try:
        await accounts.ensure(pool, "a", "A", None)
        async with pool.acquire() as conn:
            twins = {
                await _contact(conn, "a", "+14155550101", tags=["t"]),
                await _contact(conn, "a", "+14155550101", tags=["t"]),
            }
            # A malformed number is no address: both contacts stay, each skipped at send.
            await _contact(conn, "a", "12345", tags=["t"])
            await _contact(conn, "a", "12345", tags=["t"])
            await conn.execute(
                "INSERT INTO contacts (account_id, email, tags) VALUES "
                "('a', 'Ada@Example.com', '{m}'), ('a', 'ada@example.com', '{m}'), "
                "('a', NULL, '{m}'), ('a', NULL, '{m}')"
            )
        spellings = [
            "+14155550199",
            "+1 415 555 0199",
            "+1 (415) 555-0199",
            "+1-415-555-0199",
            "+1.415.555.0199",
            " +14155550199 ",
            "+1 415/555 0199",
        ]
        raw = campaign_event(campaign_id="c-d", account_id="a", mode=SendingMode.SMS, tags=["t"])
        raw["audience"] = {"tags": ["t"], "destinations": [*spellings, "+1 415 555 0101"]}
        assert await _expand(pool, raw) == 4
        rows = await pool.fetch(
            "SELECT contact_id, phone FROM recipients WHERE campaign_id = 'c-d'"
            " AND phone <> '12345'"
        )
        by_phone = {r["phone"]: r["contact_id"] for r in rows}
        assert by_phone.keys() == {"+14155550101", "+14155550199"}
        assert by_phone["+14155550101"] in twins and by_phone["+14155550199"] is None
        mail = campaign_event(campaign_id="c-m", account_id="a", mode=SendingMode.EMAIL, tags=["m"])
        mail["audience"] = {"tags": ["m"]}
        # One per address; the two contacts without one are each kept (skipped at send).
        assert await _expand(pool, mail) == 3
    finally:
        await pool.close()
