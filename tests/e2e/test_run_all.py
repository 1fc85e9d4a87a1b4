"""`herald run all` as a developer runs it: its own embedded broker, left idle longer than
anyio keeps an idle worker thread (10 s), then a campaign through the API. The broker used to
be started from such a thread with PR_SET_PDEATHSIG, so it died when the thread was retired."""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import anyio
import httpx

from herald.embedded import free_port
from herald.settings import Secret, Settings
from herald.store import db
from tests.pipeline import wait_completed

IDLE_S = 14
CONTACTS = 10


async def _burst(port: int, key: str, requests: int = 24) -> None:
    async with (
        httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30
        ) as api,
        anyio.create_task_group() as tg,
    ):
        for _ in range(requests):
            tg.start_soon(api.get, "/v1/campaigns")


def _start(env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    with log_path.open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "herald", "run", "all"],
            env={**os.environ, **env},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )


async def test_run_all_outlives_idle_worker_threads(pg_url: str, tmp_path: Path) -> None:
    key = f"hk_runall_{uuid.uuid4().hex}"
    settings = Settings.development(
        database_url=pg_url,
        data_dir=tmp_path,
        topic_prefix=f"r{uuid.uuid4().hex[:8]}.",
        topic_partitions=2,
        api_port=free_port(),
        ingress_port=free_port(),
        simulator_port=free_port(),
        simulator_smtp_port=free_port(),
        metrics_port=free_port(),
        bootstrap_api_key=Secret(key),
        drain_timeout_s=5.0,
    )
    # No broker given: `run all` starts its own.
    env = {k: v for k, v in settings.to_env().items() if k != "HERALD_KAFKA_BOOTSTRAP"}
    process = _start(env, tmp_path / "run-all.log")
    try:
        async with httpx.AsyncClient() as client:
            ready = f"http://127.0.0.1:{settings.metrics_port}/readyz"
            with anyio.fail_after(90):
                while True:
                    assert process.poll() is None, (tmp_path / "run-all.log").read_text()
                    try:
                        if (await client.get(ready)).status_code == 200:
                            break
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.2)
        # Concurrent requests spread over several worker threads (FastAPI runs sync
        # dependencies in anyio's pool); once they have idled past 10 s, the next burst makes
        # anyio retire the older ones, the thread that started the broker among them before.
        await _burst(settings.api_port, key)
        await anyio.sleep(IDLE_S)
        await _burst(settings.api_port, key)
        await anyio.sleep(1)
        async with (
            httpx.AsyncClient(
                base_url=f"http://127.0.0.1:{settings.api_port}",
                headers={"X-API-Key": key},
                timeout=30,
            ) as api,
            db.pool(pg_url) as pool,
        ):
            for i in range(CONTACTS):
                body = {"phone": f"+1415555{i:04d}", "tags": ["idle"]}
                assert (await api.post("/v1/contacts", json=body)).status_code == 201
            created = await api.post(
                "/v1/campaigns",
                json={"name": "After a pause", "channel": "sms", "tags": ["idle"], "body": "Hi"},
            )
            assert created.status_code == 201, created.text
            cid = created.json()["data"]["id"]
            assert (await api.post(f"/v1/campaigns/{cid}/send")).status_code == 202
            counters = await wait_completed(pool, cid, timeout_s=60)
            assert counters.total == counters.final == CONTACTS
    finally:
        process.terminate()
        assert process.wait(timeout=60) == 0, (tmp_path / "run-all.log").read_text()
