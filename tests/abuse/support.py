"""Shared pieces of the abuse tests: the API served from a thread of its own (so blocking
clients such as schemathesis can call it over a real socket), signed provider callbacks, and
a reader of what reached the status topic."""

from __future__ import annotations

import asyncio
import base64
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import anyio
import orjson
from aiokafka import AIOKafkaConsumer
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.api.app import serve
from herald.api.config import ApiConfig
from herald.constants import TOPIC_STATUS_EVENTS
from herald.embedded import free_port
from herald.settings import Settings
from herald.store import db


class ThreadedApi:
    """The real API (`herald.api.app.serve`, uvicorn) on 127.0.0.1, run by a thread with its
    own event loop and pool, so a test may call it with a blocking client."""

    def __init__(self, database_url: str, config: ApiConfig) -> None:
        self.database_url = database_url
        self.config = config
        self.port = free_port()
        self._ready = threading.Event()
        self._failure: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: anyio.Event | None = None
        self._thread = threading.Thread(target=self._run, name="abuse-api", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ThreadedApi:
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("the API did not start within 30 s")
        if self._failure is not None:
            raise RuntimeError("the API failed to start") from self._failure
        return self

    def __exit__(self, *_: object) -> None:
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def _run(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as exc:  # reported to the starting thread
            self._failure = exc
            self._ready.set()

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = anyio.Event()
        ready = anyio.Event()
        async with db.pool(self.database_url, max_size=8) as pool, anyio.create_task_group() as tg:
            tg.start_soon(self._serve, pool, ready)
            await ready.wait()
            self._ready.set()

    async def _serve(self, pool: Any, ready: anyio.Event) -> None:
        assert self._stop is not None
        await serve(
            settings=Settings.development(drain_timeout_s=2.0),
            pool=pool,
            stop=self._stop,
            host="127.0.0.1",
            port=self.port,
            ready=ready,
            config=self.config,
        )


# Provider callbacks ------------------------------------------------------------------------


@dataclass(frozen=True)
class EmailSigner:
    """A SendGrid-style Event Webhook key pair: ECDSA P-256 over timestamp + body."""

    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )

    @property
    def public_key(self) -> str:
        der = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return base64.b64encode(der).decode("ascii")

    def sign(self, timestamp: str, body: bytes) -> str:
        signature = self.key.sign(timestamp.encode("ascii") + body, ec.ECDSA(hashes.SHA256()))
        return base64.b64encode(signature).decode("ascii")


def rbm_push(event: Mapping[str, Any]) -> dict[str, Any]:
    """A Pub/Sub push carrying one RBM agent event."""
    data = base64.b64encode(orjson.dumps(event)).decode("ascii")
    return {"message": {"data": data, "messageId": uuid.uuid4().hex}, "subscription": "s"}


def whatsapp_webhook(statuses: list[Any]) -> dict[str, Any]:
    return {
        "object": "whatsapp_business_account",
        "entry": [{"id": "1", "changes": [{"field": "messages", "value": {"statuses": statuses}}]}],
    }


async def status_records(settings: Settings, *, settle_s: float = 1.0) -> list[Any]:
    """Every record on the test's status-events topic so far (read from the beginning)."""
    consumer = AIOKafkaConsumer(
        settings.topic(TOPIC_STATUS_EVENTS),
        bootstrap_servers=settings.kafka_bootstrap,
        group_id=None,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    found: list[Any] = []
    try:
        deadline = time.monotonic() + settle_s
        while time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            for records in batch.values():
                found.extend(orjson.loads(r.value) for r in records)
    finally:
        await consumer.stop()
    return found
