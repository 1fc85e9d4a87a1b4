"""Locust: whole campaigns through herald, with campaign completion time as a Locust request.

    locust -f load-tests/locustfile.py --headless -u 4 -r 2 -t 90s --stop-timeout 150

Users
- CampaignUser (always): owns an account with HERALD_LOCUST_RECIPIENTS synthetic contacts;
  each task publishes a campaign.confirmed event on Kafka ("KAFKA campaign.confirmed"), polls
  PostgreSQL until the campaign completes, checks that its counters equal a recount, and
  reports "E2E campaign_complete" with the time from publish to completion (a failure when it
  times out or the counters are not exact).
- ApiCampaignUser (only when HERALD_API_URL is set): the same through the control-plane API
  (POST /v1/campaigns, POST /v1/campaigns/{id}/send, GET /v1/campaigns/{id} until completed),
  reported as "E2E api_campaign_complete". It needs HERALD_API_KEY; when the API does not
  answer /openapi.json at start, the class is left out with a warning and nothing fails.

Target: with HERALD_KAFKA_BOOTSTRAP and HERALD_DATABASE_URL set, that deployment. Without
them the file starts its own stack before the first user (embedded PostgreSQL and broker, the
simulator, a worker, and status + ingress + scheduler, in child processes) and stops it when
Locust quits. Distributed runs (--master/--worker) need a deployment named in the environment.

Gates (on quit, the exit code is 1 when one is missed): the failure ratio over every request
stays at or under HERALD_LOCUST_MAX_FAIL_RATIO (0.01), and each E2E entry's 95th percentile
at or under HERALD_LOCUST_P95_BUDGET_MS (60000).

Locust runs on gevent; herald's clients are asyncio. Every database and Kafka call goes
through one asyncio loop in one native thread (gevent's thread pool, size 1): a greenlet
waits for it cooperatively, and calls are short (a publish, a counters read).
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import gevent  # type: ignore[import-untyped]
import uvloop
from gevent.threadpool import ThreadPool  # type: ignore[import-untyped]
from locust import HttpUser, User, between, events, task
from locust.env import Environment
from locust.runners import WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness
import measures

from herald import embedded
from herald.demo import FIRST_PHONE
from herald.domain.channels import SendingMode
from herald.settings import DEVELOPMENT_PROFILE, Settings
from herald.store import campaigns, db

log = logging.getLogger("herald.locust")
T = TypeVar("T")

RECIPIENTS = int(os.environ.get("HERALD_LOCUST_RECIPIENTS", "200"))
SENDING_MODE = SendingMode(os.environ.get("HERALD_LOCUST_SENDING_MODE", "SMS").upper())
RATE_PER_S = float(os.environ.get("HERALD_LOCUST_RATE_PER_S", "2000"))
CAMPAIGN_TIMEOUT_S = float(os.environ.get("HERALD_LOCUST_CAMPAIGN_TIMEOUT_S", "120"))
POLL_S = 0.25
MAX_FAIL_RATIO = float(os.environ.get("HERALD_LOCUST_MAX_FAIL_RATIO", "0.01"))
P95_BUDGET_MS = float(os.environ.get("HERALD_LOCUST_P95_BUDGET_MS", "60000"))
API_URL = os.environ.get("HERALD_API_URL", "").rstrip("/")
API_KEY = os.environ.get("HERALD_API_KEY", "")
E2E = "E2E"


def _api_answers() -> bool:
    """Whether the control-plane API user mix can run: a URL, a key, and /openapi.json."""
    if not API_URL:
        return False
    if not API_KEY:
        log.warning("HERALD_API_URL is set but HERALD_API_KEY is not: no API users")
        return False
    try:
        with urllib.request.urlopen(f"{API_URL}/openapi.json", timeout=3.0) as answer:
            if answer.status == 200:
                return True
    except (OSError, urllib.error.URLError) as exc:
        log.warning("no control-plane API at %s (%s): no API users", API_URL, exc)
        return False
    log.warning("no control-plane API at %s: no API users", API_URL)
    return False


API_ON = _api_answers()


class CampaignIncomplete(Exception):
    """The campaign did not complete in time, or its counters were not exact."""


class AsyncBridge:
    """One asyncio (uvloop) loop in one native thread; greenlets run coroutines on it."""

    def __init__(self) -> None:
        self._pool = ThreadPool(1)
        self._loop: Any = None
        self.db: Any = None

    def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        result: T = self._pool.apply(self._run, (fn, *args))
        return result

    def _run(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        if self._loop is None:
            self._loop = uvloop.new_event_loop()
        result: T = self._loop.run_until_complete(fn(*args))
        return result

    def close(self) -> None:
        if self._loop is not None:
            if self.db is not None:
                self._pool.apply(self._loop.run_until_complete, (self.db.close(),))
            self._pool.apply(self._loop.close)
        self._pool.kill()


class Target:
    """The deployment under test: its settings, and the stack this file started, if any."""

    def __init__(self) -> None:
        self.settings: Settings | None = None
        self.bridge = AsyncBridge()
        self._stack = contextlib.ExitStack()

    def start(self) -> None:
        base = Settings.from_env(profile=DEVELOPMENT_PROFILE)
        if base.kafka_bootstrap and base.database_url:
            self.settings = base
            return
        self.settings = self._stack.enter_context(self._own_stack())

    @contextlib.contextmanager
    def _own_stack(self) -> Iterator[Settings]:
        # HERALD_* variables still tune it (e.g. HERALD_WORKER_CONCURRENCY); data persists in
        # HERALD_DATA_DIR between runs, like `herald run all`.
        data_dir = Path(os.environ.get("HERALD_DATA_DIR", ".herald-data/locust"))
        settings = harness.run_settings(data_dir)
        with embedded.started(settings) as resolved:
            groups = [["simulator"], ["worker"], ["status", "ingress", "scheduler"]]
            kids = [harness.Child(resolved, g).start() for g in groups]
            with harness.children(*kids):
                for kid in kids:
                    kid.wait_ready()
                log.info("herald stack ready: %s", ", ".join(k.name for k in kids))
                yield resolved

    def stop(self) -> None:
        self.bridge.close()
        self._stack.close()

    async def pool(self) -> Any:
        if self.bridge.db is None:
            assert self.settings is not None
            self.bridge.db = await db.create_pool(self.settings.database_url, max_size=4)
        return self.bridge.db


TARGET = Target()


def _start_target(environment: Environment, **_: Any) -> None:
    if isinstance(environment.runner, WorkerRunner):
        TARGET.settings = Settings.from_env(profile=DEVELOPMENT_PROFILE)
        return
    TARGET.start()


def _gates(environment: Environment, **_: Any) -> None:
    total = environment.stats.total
    reasons = []
    if total.fail_ratio > MAX_FAIL_RATIO:
        reasons.append(f"failure ratio {total.fail_ratio:.2%} > {MAX_FAIL_RATIO:.2%}")
    for (name, method), entry in environment.stats.entries.items():
        if method != E2E or not entry.num_requests:
            continue
        p95 = entry.get_response_time_percentile(0.95)
        if p95 > P95_BUDGET_MS:
            reasons.append(f"{name} p95 {p95:.0f} ms > {P95_BUDGET_MS:.0f} ms")
    finished = [e for (_, method), e in environment.stats.entries.items() if method == E2E]
    if not any(e.num_requests for e in finished):
        reasons.append("no campaign finished")
    for reason in reasons:
        log.error("gate missed: %s", reason)
    if reasons:
        environment.process_exit_code = 1
    TARGET.stop()


events.init.add_listener(_start_target)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_gates)  # type: ignore[no-untyped-call]


def _fire(
    environment: Environment,
    request_type: str,
    name: str,
    started: float,
    exception: BaseException | None = None,
) -> None:
    environment.events.request.fire(  # type: ignore[no-untyped-call]
        request_type=request_type,
        name=name,
        response_time=(time.perf_counter() - started) * 1000,
        response_length=0,
        exception=exception,
        context={},
    )


async def _audience(account_id: str, tag: str) -> None:
    pool = await TARGET.pool()
    await harness.audience(
        pool,
        account_id=account_id,
        count=RECIPIENTS,
        tag=tag,
        first_phone=FIRST_PHONE,
        rate_per_s=RATE_PER_S,
    )


async def _publish(event: dict[str, Any]) -> None:
    assert TARGET.settings is not None
    await harness.publish(TARGET.settings, [event])


async def _state(campaign_id: str) -> tuple[str, int]:
    """(status, lost): lost is only computed once the campaign completed."""
    pool = await TARGET.pool()
    counters = await campaigns.counters(pool, campaign_id)
    if counters is None:
        return "unknown", 0
    if counters.status != "completed":
        return counters.status, 0
    recount = await campaigns.recount(pool, campaign_id)
    folded = {f: getattr(counters, f) for f in measures.COUNTER_FIELDS}
    return counters.status, measures.lost(
        expected_total=RECIPIENTS, counters=folded, recount=recount
    )


class CampaignUser(User):
    """Publishes campaign.confirmed and waits for the campaign to complete, exactly."""

    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.account_id = f"locust-{uuid.uuid4().hex[:8]}"
        self.tag = f"l{uuid.uuid4().hex[:6]}"
        TARGET.bridge.call(_audience, self.account_id, self.tag)

    @task
    def campaign(self) -> None:
        campaign_id = str(uuid.uuid4())
        event = harness.confirmed(
            campaign_id=campaign_id,
            account_id=self.account_id,
            mode=SENDING_MODE,
            tag=self.tag,
            batch_size=1_000,
        )
        began = time.perf_counter()
        try:
            TARGET.bridge.call(_publish, event)
        except Exception as exc:
            _fire(self.environment, "KAFKA", "campaign.confirmed", began, exc)
            return
        _fire(self.environment, "KAFKA", "campaign.confirmed", began)
        deadline = began + CAMPAIGN_TIMEOUT_S
        failure: BaseException | None = None
        while True:
            status, lost = TARGET.bridge.call(_state, campaign_id)
            if status == "completed":
                if lost:
                    failure = CampaignIncomplete(f"{lost} recipients lost or miscounted")
                break
            if time.perf_counter() > deadline:
                failure = CampaignIncomplete(f"still {status} after {CAMPAIGN_TIMEOUT_S:.0f} s")
                break
            gevent.sleep(POLL_S)
        _fire(self.environment, E2E, "campaign_complete", began, failure)


class ApiCampaignUser(HttpUser):
    """The same campaign through the control-plane API; only when HERALD_API_URL is set."""

    # Decided once at import: without an answering API the class is never spawned.
    abstract = not API_ON
    host = API_URL or None
    wait_time = between(1, 3)

    def on_start(self) -> None:
        self.client.headers["X-API-Key"] = API_KEY

    @task
    def campaign(self) -> None:
        phones = [f"+{FIRST_PHONE + g}" for g in range(1, RECIPIENTS + 1)]
        body = {
            "name": f"locust {uuid.uuid4().hex[:8]}",
            "sending_mode": "SMS",
            "content": {"sms": {"sender": "+15005550006", "body": "Hi, 20% off today."}},
            "destinations": phones,
        }
        began = time.perf_counter()
        created = self.client.post("/v1/campaigns", json=body, name="/v1/campaigns")
        if created.status_code != 201:
            return
        campaign_id = created.json()["data"]["id"]
        sent = self.client.post(
            f"/v1/campaigns/{campaign_id}/send", json={}, name="/v1/campaigns/{id}/send"
        )
        if sent.status_code != 202:
            return
        deadline = began + CAMPAIGN_TIMEOUT_S
        failure: BaseException | None = None
        while True:
            got = self.client.get(f"/v1/campaigns/{campaign_id}", name="/v1/campaigns/{id}")
            status = got.json().get("data", {}).get("status") if got.ok else None
            if status == "completed":
                break
            if status in ("cancelled", "failed") or time.perf_counter() > deadline:
                failure = CampaignIncomplete(f"campaign {status} after {CAMPAIGN_TIMEOUT_S:.0f} s")
                break
            gevent.sleep(POLL_S)
        _fire(self.environment, E2E, "api_campaign_complete", began, failure)
