"""Viber identities on the real PostgreSQL: identity observations on status-events are folded
into contact_identities (later wins, an address moves between contacts of an account, an
unsubscribe unlinks), and the worker's recipient chunks carry the contact's Viber user id."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

import asyncpg

from herald.bus import codec
from herald.demo import campaign_event
from herald.domain import identities
from herald.domain.channels import SendingMode
from herald.domain.events import parse_campaign_confirmed
from herald.domain.identities import IdentityEvent
from herald.status import StatusFolder
from herald.store import accounts, campaigns, contacts_api, db, recipients
from herald.store.contacts_api import ContactFields

T = 1_700_000_000_000


@dataclass
class _Record:
    value: bytes


class _DeadLetters:
    def __init__(self) -> None:
        self.reasons: list[str] = []

    async def send(self, record: Any, reason: str) -> None:
        self.reasons.append(reason)


def link(contact: object, user: str, at: int) -> dict[str, object]:
    event = IdentityEvent(
        channel="viber", address=user, linked=True, occurred_at_ms=at, contact_ref=str(contact)
    )
    return identities.to_wire(event)


def unlink(user: str, at: int) -> dict[str, object]:
    return identities.to_wire(
        IdentityEvent(channel="viber", address=user, linked=False, occurred_at_ms=at)
    )


async def fold(folder: StatusFolder, *items: dict[str, object]) -> None:
    record = _Record(codec.encode({"v": 1, "events": list(items)}))
    await folder.handle(None, [record])


async def links(pool: asyncpg.Pool) -> set[tuple[str, str, str]]:
    rows = await pool.fetch("SELECT account_id, contact_id::text, address FROM contact_identities")
    return {(r[0], r[1], r[2]) for r in rows}


async def test_identities_are_learned_moved_and_forgotten(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        await accounts.ensure(pool, "a1", "a1", None)
        await accounts.ensure(pool, "a2", "a2", None)
        ann = (await contacts_api.insert(pool, "a1", ContactFields(phone="+14155550001")))["id"]
        bob = (await contacts_api.insert(pool, "a1", ContactFields(phone="+14155550002")))["id"]
        eve = (await contacts_api.insert(pool, "a2", ContactFields(phone="+14155550003")))["id"]
        dead = _DeadLetters()
        folder = StatusFolder(pool=pool, dead_letter=dead)  # type: ignore[arg-type]

        await fold(folder, link(ann, "U1", T), link(eve, "U1", T))
        assert await links(pool) == {("a1", str(ann), "U1"), ("a2", str(eve), "U1")}

        # The same user opens Bob's link later: the address moves to Bob in account a1.
        await fold(folder, link(bob, "U1", T + 10))
        assert await links(pool) == {("a1", str(bob), "U1"), ("a2", str(eve), "U1")}
        # A redelivered older observation changes nothing.
        await fold(folder, link(ann, "U1", T + 5))
        assert await links(pool) == {("a1", str(bob), "U1"), ("a2", str(eve), "U1")}
        # A context naming no contact links nothing and is not an error.
        await fold(folder, link(uuid.uuid4(), "U9", T))
        assert len(await links(pool)) == 2

        # Unsubscribed: gone from every account; an older unsubscribe would not have.
        await fold(folder, link(ann, "U2", T + 20), unlink("U2", T + 19))
        assert ("a1", str(ann), "U2") in await links(pool)
        await fold(folder, unlink("U1", T + 30))
        assert await links(pool) == {("a1", str(ann), "U2")}

        # Deleting a contact deletes its identities.
        assert await contacts_api.delete(pool, "a1", ann)
        assert await links(pool) == set()

        # A malformed identity item dead-letters its record, as a bad status event does.
        await fold(folder, {"k": "identity", "ch": "viber", "u": "U3", "l": True})
        assert dead.reasons == ["invalid_status: a link needs ref, a contact id"]
    finally:
        await pool.close()


async def test_recipient_chunks_carry_the_viber_user_id(pg_url: str) -> None:
    pool = await db.create_pool(pg_url)
    try:
        await accounts.ensure(pool, "a1", "a1", None)
        linked = await contacts_api.insert(
            pool, "a1", ContactFields(phone="+14155550001", tags=["vb"], viber_user_id="U1")
        )
        await contacts_api.insert(pool, "a1", ContactFields(phone="+14155550002", tags=["vb"]))
        raw = campaign_event(campaign_id="vb-c", account_id="a1", mode=SendingMode.VIBER, tags=[])
        raw["audience"] = {"tags": ["vb"], "destinations": ["+14155550009"]}
        event = parse_campaign_confirmed(raw)
        assert await campaigns.insert(pool, event, raw)
        async with pool.acquire() as conn, conn.transaction():
            assert await campaigns.expand(conn, event) == 3
        rows = await recipients.queued_chunk(pool, "vb-c", 0, 3, 10)
        got = sorted((r.contact_id == str(linked["id"]), r.viber_user_id) for r in rows)
        # The linked contact has its user id; the other contact and the raw destination none.
        assert got == [(False, None), (False, None), (True, "U1")]
        # Read at send time: unlinked after expansion, no longer addressed.
        await pool.execute("DELETE FROM contact_identities")
        again = await recipients.open_by_ids(pool, "vb-c", [r.id for r in rows])
        assert {r.viber_user_id for r in again} == {None}
    finally:
        await pool.close()
