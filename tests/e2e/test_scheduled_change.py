"""A scheduled campaign changed and another deleted through the API, with every role running:
the scheduler sends the changed one as changed, and never starts the deleted one."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import anyio
import httpx

from herald.settings import Secret, Settings
from herald.store import campaigns, db
from tests.pipeline import running, wait_completed

CONTACTS = 20


async def test_a_changed_schedule_sends_the_change_and_a_deleted_one_never_runs(
    settings: Settings,
) -> None:
    key = f"hk_e2e_{uuid.uuid4().hex}"
    account = f"acct-{uuid.uuid4().hex[:8]}"
    settings = settings.with_overrides(bootstrap_api_key=Secret(key), bootstrap_account_id=account)
    async with (
        db.pool(settings.database_url) as pool,
        running(settings),
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{settings.api_port}", headers={"X-API-Key": key}
        ) as api,
    ):
        for i in range(CONTACTS):
            body = {"phone": f"+1415555{i:04d}", "first_name": f"C{i}", "tags": ["later"]}
            assert (await api.post("/v1/contacts", json=body)).status_code == 201
        soon = (datetime.now(UTC) + timedelta(seconds=4)).isoformat()
        draft = {
            "name": "Later",
            "channel": "sms",
            "tags": ["later"],
            "scheduled_at": soon,
            # Nobody has a nickname: sent as it stands, every recipient would be skipped.
            "body": "Hi {{nickname}}",
        }
        changed = (await api.post("/v1/campaigns", json=draft)).json()["data"]["id"]
        deleted = (await api.post("/v1/campaigns", json=draft)).json()["data"]["id"]
        for cid in (changed, deleted):
            assert (await api.post(f"/v1/campaigns/{cid}/send")).status_code == 202
        answer = await api.put(f"/v1/campaigns/{changed}", json={"body": "Hi {{first_name}}"})
        assert answer.status_code == 200, answer.text
        assert (await api.delete(f"/v1/campaigns/{deleted}")).status_code == 204

        counters = await wait_completed(pool, changed)
        assert counters.total == counters.final == CONTACTS
        assert counters.skipped == 0 and counters.sent > 0
        # Well past its time, the deleted one was never expanded.
        with anyio.fail_after(10):
            while datetime.now(UTC) < datetime.fromisoformat(soon) + timedelta(seconds=3):
                await anyio.sleep(0.2)
        gone = await campaigns.counters(pool, deleted)
        assert gone is not None and gone.status == "cancelled" and gone.total == 0
        assert (
            await pool.fetchval("SELECT expanded_at FROM campaigns WHERE id = $1", deleted) is None
        )
        assert (await api.get(f"/v1/campaigns/{deleted}")).status_code == 404
