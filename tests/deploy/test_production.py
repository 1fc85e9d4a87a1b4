"""Herald deployed the way production runs it: the base install (no extras), each role its
own process, with the environment `kubectl kustomize deploy/overlays/production` renders.

Only what the test machine must change is substituted: the database and broker URLs (with
PLAINTEXT and no idempotence, since the embedded broker has neither TLS nor InitProducerId),
the listen ports, and the provider URLs and credentials, which point at the simulator given
by URL (started on its own, in development). Topics are created first, as Strimzi does.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

import anyio
import httpx
import orjson
import pytest

from herald import constants
from herald.bus.topics import ensure_topics
from herald.embedded import free_port
from herald.process import wait_listening
from herald.settings import DEVELOPMENT, Secret, Settings
from herald.simulator import devkeys
from herald.store import campaigns, db
from tests.deploy.base_install import BaseInstall, clean_env
from tests.deploy.render import production_env
from tests.pipeline import wait_completed

PRODUCTION_ROLES = ("scheduler", "worker", "status", "ingress", "relay", "api")
CONTACTS = 40


def _dev(name: str) -> str:
    value = DEVELOPMENT[name]
    return value.value if isinstance(value, Secret) else str(value)


def _provider_env(sim: Settings, ingress_url: str) -> dict[str, str]:
    """Every channel on, pointed at the simulator with the credentials it knows."""
    return {
        "HERALD_PUBLIC_INGRESS_URL": ingress_url,
        "HERALD_TWILIO_BASE_URL": sim.simulator_url,
        "HERALD_WHATSAPP_BASE_URL": sim.simulator_url,
        "HERALD_RBM_BASE_URL": sim.simulator_url,
        "HERALD_VIBER_BASE_URL": sim.simulator_url,
        "HERALD_TWILIO_ACCOUNT_SID": _dev("twilio_account_sid"),
        "HERALD_TWILIO_AUTH_TOKEN": _dev("twilio_auth_token"),
        "HERALD_TWILIO_FROM": _dev("twilio_from"),
        "HERALD_WHATSAPP_PHONE_NUMBER_ID": _dev("whatsapp_phone_number_id"),
        "HERALD_WHATSAPP_ACCESS_TOKEN": _dev("whatsapp_access_token"),
        "HERALD_WHATSAPP_APP_SECRET": _dev("whatsapp_app_secret"),
        "HERALD_WHATSAPP_VERIFY_TOKEN": _dev("whatsapp_verify_token"),
        "HERALD_RBM_AGENT_ID": _dev("rbm_agent_id"),
        "HERALD_RBM_TOKEN": _dev("rbm_token"),
        "HERALD_RBM_CLIENT_TOKEN": _dev("rbm_client_token"),
        "HERALD_VIBER_AUTH_TOKEN": _dev("viber_auth_token"),
        "HERALD_SMTP_HOST": "127.0.0.1",
        "HERALD_SMTP_PORT": str(sim.simulator_smtp_port),
        # Given explicitly, as an operator gives SendGrid's key; never a default.
        "HERALD_EMAIL_WEBHOOK_PUBLIC_KEY": devkeys.public_key(),
    }


class Deployment:
    def __init__(self, base: BaseInstall, logs: Path, env: dict[str, str]) -> None:
        self.base = base
        self.logs = logs
        self.env = env
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.metrics_ports: dict[str, int] = {}

    def env_of(self, role: str, **extra: str) -> dict[str, str]:
        # Secret keys are named as the variables they fill (deploy/README.md).
        rendered = production_env("production", role, secrets=self.env)
        port = free_port()
        self.metrics_ports[role] = port
        return {**rendered, **self.env, "HERALD_METRICS_PORT": str(port), **extra}

    def start(self, role: str, **extra: str) -> None:
        env = self.env_of(role, **extra)
        with (self.logs / f"{role}.log").open("wb") as log:
            self.processes[role] = subprocess.Popen(
                [self.base.herald, "run", role],
                env=clean_env(env),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )

    def log_of(self, role: str) -> str:
        return (self.logs / f"{role}.log").read_text(errors="replace")

    async def ready(self, role: str, timeout_s: float = 90) -> None:
        url = f"http://127.0.0.1:{self.metrics_ports[role]}/readyz"
        with anyio.fail_after(timeout_s):
            async with httpx.AsyncClient() as client:
                while True:
                    process = self.processes[role]
                    assert process.poll() is None, f"{role} exited:\n{self.log_of(role)}"
                    try:
                        if (await client.get(url)).status_code == 200:
                            return
                    except httpx.TransportError:
                        pass
                    await anyio.sleep(0.2)

    def stop(self) -> dict[str, int]:
        codes = {}
        for process in self.processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for role, process in self.processes.items():
            try:
                codes[role] = process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                process.kill()
                codes[role] = process.wait()
        return codes


@contextmanager
def simulator(sim: Settings, logs: Path) -> Iterator[None]:
    with (logs / "simulator.log").open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "herald", "run", "simulator"],
            env=clean_env(sim.to_env()),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_listening("127.0.0.1", sim.simulator_port)
        wait_listening("127.0.0.1", sim.simulator_smtp_port)
        yield
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def substituted(pg_url: str, kafka_bootstrap: str) -> dict[str, str]:
    return {
        "HERALD_DATABASE_URL": pg_url,
        "HERALD_KAFKA_BOOTSTRAP": kafka_bootstrap,
        "HERALD_KAFKA_SECURITY_PROTOCOL": "PLAINTEXT",
        "HERALD_KAFKA_SASL_MECHANISM": "",
        "HERALD_KAFKA_SSL_CAFILE": "",
        "HERALD_KAFKA_IDEMPOTENCE": "false",
        "HERALD_TOPIC_PREFIX": f"p{uuid.uuid4().hex[:10]}.",
        "HERALD_BIND_HOST": "127.0.0.1",
        "HERALD_API_PORT": str(free_port()),
        "HERALD_INGRESS_PORT": str(free_port()),
        # Short enough for a test, well inside the rendered grace period either way.
        "HERALD_DRAIN_TIMEOUT_S": "5",
    }


async def _create_topics(env: dict[str, str]) -> None:
    await ensure_topics(
        Settings.development(
            kafka_bootstrap=env["HERALD_KAFKA_BOOTSTRAP"],
            topic_prefix=env["HERALD_TOPIC_PREFIX"],
            topic_partitions=2,
        )
    )


def _json_lines(text: str) -> list[dict[str, Any]]:
    return [orjson.loads(line) for line in text.splitlines() if line.strip()]


async def test_every_role_as_its_own_process_runs_a_campaign(
    base_install: BaseInstall, substituted: dict[str, str], tmp_path: Path
) -> None:
    sim = Settings.development(
        simulator_port=free_port(),
        simulator_smtp_port=free_port(),
        ingress_port=int(substituted["HERALD_INGRESS_PORT"]),
        metrics_port=0,
        bind_host="127.0.0.1",
    )
    ingress_url = f"http://127.0.0.1:{substituted['HERALD_INGRESS_PORT']}"
    env = {**substituted, **_provider_env(sim, ingress_url)}
    await _create_topics(env)
    deployment = Deployment(base_install, tmp_path, env)
    migrated = base_install.run("migrate", env=deployment.env_of("migrate"))
    assert migrated.returncode == 0, migrated.stderr
    with ExitStack() as stack:
        stack.enter_context(simulator(sim, tmp_path))
        stack.callback(deployment.stop)
        for role in PRODUCTION_ROLES:
            deployment.start(role)
        for role in PRODUCTION_ROLES:
            await deployment.ready(role)
        made = base_install.run("keys", "create", "--account", "acme", env=deployment.env_of("api"))
        assert made.returncode == 0, made.stderr
        key = made.stdout.strip().splitlines()[-1]
        api = f"http://127.0.0.1:{substituted['HERALD_API_PORT']}"
        async with (
            httpx.AsyncClient(base_url=api, headers={"X-API-Key": key}, timeout=30) as client,
            db.pool(substituted["HERALD_DATABASE_URL"]) as pool,
        ):
            for i in range(CONTACTS):
                contact = {"phone": f"+1415555{i:04d}", "first_name": f"C{i}", "tags": ["prod"]}
                answer = await client.post("/v1/contacts", json=contact)
                assert answer.status_code == 201, answer.text
            campaign = {
                "name": "Production walk",
                "sending_mode": "WHATSAPP_RCS_SMS",
                "tags": ["prod"],
                "variable_mappings": {"1": "first_name"},
                "content": {
                    "whatsapp": {
                        "template_name": "spring_sale",
                        "language": "en_US",
                        "components": [
                            {"type": "body", "parameters": [{"type": "text", "text": "{{1}}"}]}
                        ],
                    },
                    "rcs": {"agent_id": _dev("rbm_agent_id"), "text": "Hi {{first_name}}"},
                    "sms": {"sender": _dev("twilio_from"), "body": "Hi {{first_name}}"},
                },
            }
            created = await client.post("/v1/campaigns", json=campaign)
            assert created.status_code == 201, created.text
            cid = created.json()["data"]["id"]
            assert (await client.post(f"/v1/campaigns/{cid}/send")).status_code == 202
            counters = await wait_completed(pool, cid, timeout_s=120)
            assert counters.total == counters.final == CONTACTS
            recount = await campaigns.recount(pool, cid)
            for name, value in recount.items():
                assert getattr(counters, name, value) == value, name
            # Fallback really happened across processes: all three channels were tried.
            channels = {
                row["channel"]
                for row in await pool.fetch(
                    "SELECT DISTINCT a.channel FROM attempts a JOIN recipients r"
                    " ON r.id = a.recipient_id WHERE r.campaign_id = $1",
                    cid,
                )
            }
            assert channels == {"whatsapp", "rcs", "sms"}
        codes = deployment.stop()
    assert codes == dict.fromkeys(PRODUCTION_ROLES, 0), codes
    # Production logs: one JSON object per line, each naming its event.
    for role in PRODUCTION_ROLES:
        lines = _json_lines(deployment.log_of(role))
        assert lines, role
        assert all("level" in line and "message" in line for line in lines), role
        assert {line.get("role") for line in lines} == {role}, role
        assert all(line.get("event") for line in lines if line["logger"].startswith("herald")), role


async def test_without_provider_secrets_channels_are_off_and_forgeries_refused(
    base_install: BaseInstall, substituted: dict[str, str], tmp_path: Path
) -> None:
    await _create_topics(substituted)
    deployment = Deployment(base_install, tmp_path, substituted)
    try:
        deployment.start("ingress")
        await deployment.ready("ingress")
        ingress = f"http://127.0.0.1:{substituted['HERALD_INGRESS_PORT']}"
        dev_values = [v.value for v in DEVELOPMENT.values() if isinstance(v, Secret)]
        async with httpx.AsyncClient(base_url=ingress) as client:
            for path in (
                constants.PATH_CALLBACK_TWILIO,
                constants.PATH_CALLBACK_WHATSAPP,
                constants.PATH_CALLBACK_RBM,
                constants.PATH_CALLBACK_VIBER,
                constants.PATH_CALLBACK_EMAIL,
            ):
                for value in dev_values:
                    answer = await client.post(
                        path,
                        content=b'{"clientToken": "%s", "secret": "x"}' % value.encode(),
                        headers={
                            "X-Twilio-Signature": value,
                            "X-Hub-Signature-256": f"sha256={value}",
                            "X-Goog-Signature": value,
                            "X-Viber-Content-Signature": value,
                        },
                    )
                    assert answer.status_code == 404, (path, answer.status_code)
    finally:
        codes = deployment.stop()
    assert codes == {"ingress": 0}
    warnings = [
        line["message"]
        for line in _json_lines(deployment.log_of("ingress"))
        if str(line.get("level", "")).upper() == "WARNING"
    ]
    for channel in ("sms", "whatsapp", "rcs", "viber", "email"):
        assert any(m.startswith(f"{channel} is disabled") for m in warnings), (channel, warnings)


def test_a_half_configured_channel_stops_the_roles_that_need_it(
    base_install: BaseInstall, substituted: dict[str, str]
) -> None:
    token = f"leak-me-not-{uuid.uuid4().hex}"
    env = {**substituted, "HERALD_WHATSAPP_ACCESS_TOKEN": token}
    for role, needs in {
        "worker": ["HERALD_WHATSAPP_PHONE_NUMBER_ID"],
        "ingress": ["HERALD_WHATSAPP_APP_SECRET", "HERALD_WHATSAPP_VERIFY_TOKEN"],
    }.items():
        ran = base_install.run(
            "run", role, env={**production_env("production", role, secrets=env), **env}
        )
        assert ran.returncode == 2, ran.stderr
        line = ran.stderr.strip()
        assert "\n" not in line and line.startswith("herald: cannot start in production:")
        for variable in needs:
            assert variable in line
        # A secret's value never appears in what is printed.
        assert token not in ran.stderr and token not in ran.stdout
