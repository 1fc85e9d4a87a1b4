"""Locust: the control-plane API under a user mix, against its latency and error budgets.

    locust -f load-tests/locust_api.py --headless -u 100 -r 20 -t 60s --only-summary

ApiMixUser (FastHttpUser) does what an integrating platform does all day: creates contacts
and reads them back, searches them, builds a segment and reads its contact count, drafts a
campaign, calculates its goal and sends it (which writes campaign.confirmed to the outbox),
and reads the account's statistics and campaign lists.

Target: HERALD_API_URL and HERALD_API_KEY name a running API. Without them this file starts
its own: embedded PostgreSQL and broker, and `herald run api` in a child process with a
bootstrap key and the per-key request limit off (one key serves every simulated user here;
a real client keeps its own key under it), and stops it when Locust quits.

Gates (on quit, the exit code is 1 when one is missed): the failure ratio stays at or under
HERALD_LOCUST_MAX_FAIL_RATIO (default 0) and the 99th percentile of all requests at or under
HERALD_LOCUST_P99_BUDGET_MS (default 100).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import sys
import uuid
from collections.abc import Iterator
from datetime import date, timedelta
from pathlib import Path
from typing import Any

from locust import between, events, task
from locust.contrib.fasthttp import FastHttpUser
from locust.env import Environment
from locust.runners import WorkerRunner

sys.path.insert(0, str(Path(__file__).resolve().parent))

import harness

from herald import embedded

log = logging.getLogger("herald.locust_api")

MAX_FAIL_RATIO = float(os.environ.get("HERALD_LOCUST_MAX_FAIL_RATIO", "0"))
P99_BUDGET_MS = float(os.environ.get("HERALD_LOCUST_P99_BUDGET_MS", "100"))
OWN_KEY = "hk_locust_" + uuid.uuid4().hex


class Target:
    """The API under test: a URL and key from the environment, or one this file started."""

    def __init__(self) -> None:
        self.url = os.environ.get("HERALD_API_URL", "").rstrip("/")
        self.key = os.environ.get("HERALD_API_KEY", "")
        self._stack = contextlib.ExitStack()

    def start(self) -> None:
        if self.url and self.key:
            return
        self.url, self.key = self._stack.enter_context(self._own_api())

    @contextlib.contextmanager
    def _own_api(self) -> Iterator[tuple[str, str]]:
        os.environ["HERALD_BOOTSTRAP_API_KEY"] = OWN_KEY
        os.environ["HERALD_API_RATE_LIMIT_PER_S"] = "0"
        data_dir = Path(os.environ.get("HERALD_DATA_DIR", ".herald-data/locust-api"))
        settings = harness.run_settings(data_dir)
        with embedded.started(settings) as resolved:
            api = harness.Child(resolved, ["api"]).start()
            with harness.children(api):
                api.wait_ready()
                log.info("herald api ready on port %d", resolved.api_port)
                yield f"http://127.0.0.1:{resolved.api_port}", OWN_KEY

    def stop(self) -> None:
        self._stack.close()


TARGET = Target()


def _start_target(environment: Environment, **_: Any) -> None:
    if not isinstance(environment.runner, WorkerRunner):
        TARGET.start()
    environment.host = TARGET.url


def _gates(environment: Environment, **_: Any) -> None:
    total = environment.stats.total
    reasons = []
    if not total.num_requests:
        reasons.append("no request was made")
    if total.fail_ratio > MAX_FAIL_RATIO:
        reasons.append(f"failure ratio {total.fail_ratio:.2%} > {MAX_FAIL_RATIO:.2%}")
    p99 = total.get_response_time_percentile(0.99)
    if p99 > P99_BUDGET_MS:
        reasons.append(f"p99 {p99:.0f} ms > {P99_BUDGET_MS:.0f} ms")
    for reason in reasons:
        log.error("gate missed: %s", reason)
    if reasons:
        environment.process_exit_code = 1
    TARGET.stop()


events.init.add_listener(_start_target)  # type: ignore[no-untyped-call]
events.quitting.add_listener(_gates)  # type: ignore[no-untyped-call]


def _phone() -> str:
    # San Francisco numbers that phonenumbers accepts as valid, unlikely to repeat.
    return f"+1415{random.randint(200, 999)}{random.randint(0, 9999):04d}"


class ApiMixUser(FastHttpUser):
    wait_time = between(0.5, 1.5)

    def on_start(self) -> None:
        self.headers = {"X-API-Key": TARGET.key}
        self.tag = f"t{uuid.uuid4().hex[:6]}"
        self.contacts: list[str] = []
        self.segment: str | None = None

    def _post(self, path: str, body: Any, name: str, expect: int) -> dict[str, Any] | None:
        with self.client.post(
            path, json=body, headers=self.headers, name=name, catch_response=True
        ) as answer:
            if answer.status_code != expect:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")
                return None
            found: dict[str, Any] = answer.json()["data"]
            return found

    def _get(self, path: str, name: str, **params: Any) -> None:
        with self.client.get(
            path, params=params, headers=self.headers, name=name, catch_response=True
        ) as answer:
            if answer.status_code != 200:
                answer.failure(f"{answer.status_code}: {answer.text[:200]}")

    @task(4)
    def create_contact(self) -> None:
        body = {
            "phone": _phone(),
            "first_name": random.choice(["Ada", "Grace", "Alan", "Edsger"]),
            "tags": [self.tag],
            "lifecycle_stage": random.choice(["lead", "customer"]),
            "metadata": {"plan": random.choice(["free", "pro"])},
        }
        made = self._post("/v1/contacts", body, "/v1/contacts [create]", 201)
        if made is not None:
            self.contacts.append(made["id"])

    @task(3)
    def search_contacts(self) -> None:
        self._get("/v1/contacts", "/v1/contacts [search]", search="Grace", limit=20)

    @task(2)
    def read_contact(self) -> None:
        if self.contacts:
            self._get(f"/v1/contacts/{random.choice(self.contacts)}", "/v1/contacts/{id}")

    @task(1)
    def segment_count(self) -> None:
        if self.segment is None:
            rules = {"$and": [{"tags": {"$contains": self.tag}}, {"lifecycle_stage": "lead"}]}
            made = self._post(
                "/v1/contacts/segments",
                {"name": f"leads {self.tag}", "rules": rules},
                "/v1/contacts/segments [create]",
                201,
            )
            self.segment = None if made is None else made["id"]
        if self.segment is not None:
            self._get(f"/v1/contacts/segments/{self.segment}", "/v1/contacts/segments/{id}")

    @task(1)
    def campaign(self) -> None:
        draft = {
            "name": f"locust {uuid.uuid4().hex[:8]}",
            "channel": "sms",
            "body": "Hi {{first_name}}, 20% off today.",
            "tags": [self.tag],
        }
        made = self._post("/v1/campaigns", draft, "/v1/campaigns [create]", 201)
        if made is None:
            return
        cid = made["id"]
        self._post(
            f"/v1/campaigns/{cid}/calculate-goal", None, "/v1/campaigns/{id}/calculate-goal", 200
        )
        self._post(f"/v1/campaigns/{cid}/send", None, "/v1/campaigns/{id}/send", 202)

    @task(2)
    def stats(self) -> None:
        self._get("/v1/campaigns/stats", "/v1/campaigns/stats")

    @task(1)
    def timeseries(self) -> None:
        self._get(
            "/v1/campaigns/stats/timeseries",
            "/v1/campaigns/stats/timeseries",
            aggregate_on="day",
            start_date=(date.today() - timedelta(days=7)).isoformat(),
            end_date=date.today().isoformat(),
        )

    @task(2)
    def list_campaigns(self) -> None:
        self._get("/v1/campaigns", "/v1/campaigns", limit=20)
