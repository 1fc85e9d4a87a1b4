"""One typed, immutable settings object built from HERALD_* environment variables.

Built once in the CLI and passed down; nothing deeper reads os.environ.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Final

from herald.domain.work import MAX_SHARES
from herald.errors import HeraldError


class SettingsError(HeraldError, ValueError):
    """A HERALD_* variable has a value herald cannot use."""


PRODUCTION: Final = "production"
DEVELOPMENT_PROFILE: Final = "development"
PROFILES: Final = (PRODUCTION, DEVELOPMENT_PROFILE)


@dataclass(frozen=True, repr=False)
class Secret:
    """A string that never shows its value in repr, logs or errors."""

    value: str

    def __repr__(self) -> str:
        return "Secret('**********')" if self.value else "Secret('')"

    __str__ = __repr__


def _doc(text: str, **kw: Any) -> Any:  # a dataclass field that carries its description
    return field(metadata={"doc": text}, **kw)


@dataclass(frozen=True, kw_only=True)
class Settings:
    profile: str = _doc(
        "production or development; `herald demo` and `herald run all` default to development, "
        "every other command to production",
        default=PRODUCTION,
    )
    database_url: str = _doc(
        "PostgreSQL URL (required in production; empty in development starts an embedded server)",
        default="",
    )
    kafka_bootstrap: str = _doc(
        "Kafka bootstrap servers (required in production; empty in development starts an "
        "embedded broker)",
        default="",
    )
    data_dir: Path = _doc("Data directory of the embedded services", default=Path(".herald-data"))
    topic_prefix: str = _doc("Prefix of every topic and consumer group name", default="herald.")
    topic_partitions: int = _doc("Partitions per topic when herald creates topics", default=8)
    kafka_create_topics: bool = _doc(
        "Create missing topics at start (development; in production deploy/ owns the topics)",
        default=False,
    )
    kafka_idempotence: bool = _doc(
        "Idempotent producer (on for Apache Kafka; the embedded broker refuses it)", default=True
    )
    kafka_security_protocol: str = _doc(
        "PLAINTEXT, SSL, SASL_PLAINTEXT or SASL_SSL", default="PLAINTEXT"
    )
    kafka_sasl_mechanism: str = _doc(
        "PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512 (with a SASL_* protocol)", default=""
    )
    kafka_sasl_username: str = _doc("SASL user name", default="")
    kafka_sasl_password: Secret = _doc("SASL password", default=Secret(""))
    kafka_ssl_cafile: str = _doc(
        "CA bundle (PEM) that verifies the brokers; empty uses the system's", default=""
    )
    kafka_ssl_certfile: str = _doc("Client certificate (PEM) for mutual TLS", default="")
    kafka_ssl_keyfile: str = _doc("Client private key (PEM) for mutual TLS", default="")
    startup_timeout_s: float = _doc(
        "How long a role waits for PostgreSQL and Kafka at start (retrying with backoff) before "
        "it exits; keep it inside the startupProbe's window",
        default=240.0,
    )
    shutdown_flush_timeout_s: float = _doc(
        "After the drain, the longest the final producer flush and connection close may take; "
        "drain plus this stays under terminationGracePeriodSeconds minus preStop",
        default=10.0,
    )
    api_port: int = _doc("Control-plane API port", default=8080)
    bootstrap_api_key: Secret = _doc(
        "Development only: an API key made to open HERALD_BOOTSTRAP_ACCOUNT_ID at start",
        default=Secret(""),
    )
    bootstrap_account_id: str = _doc("Account the bootstrap API key opens", default="dev")
    api_max_body_bytes: int = _doc(
        "Largest JSON request body the API accepts (bulk import streams are exempt)",
        default=4 * 1024 * 1024,
    )
    api_rate_limit_per_s: float = _doc(
        "Requests per second each API key may make on average (a token bucket per key, per API "
        "process); 0 turns the limit off",
        default=50.0,
    )
    api_rate_limit_burst: int = _doc(
        "Requests an API key may make at once before the rate applies; the same rate and burst "
        "also bound each account across all its keys",
        default=100,
    )
    api_auth_failure_rate_per_s: float = _doc(
        "Failed authentications a client address may make per second on average; past its "
        "burst, the address is answered 429 before any database lookup",
        default=0.2,
    )
    api_auth_failure_burst: int = _doc(
        "Failed authentications a client address may make at once", default=20
    )
    api_max_keys_per_account: int = _doc(
        "Live (unrevoked) API keys an account may hold", default=100
    )
    accounts_create_on_first_event: bool = _doc(
        "Create the account of an upstream campaign.confirmed event herald has never heard of "
        "(otherwise the event is dead-lettered unknown_account)",
        default=False,
    )
    relay_poll_s: float = _doc("How often the outbox relay looks for unpublished rows", default=0.2)
    ingress_port: int = _doc("Callback ingress port", default=8081)
    simulator_port: int = _doc("Provider simulator port", default=8082)
    metrics_port: int = _doc("Prometheus /metrics port; 0 disables it", default=9100)
    bind_host: str = _doc("Address every HTTP listener binds to", default="127.0.0.1")
    public_ingress_url: str = _doc(
        "URL providers post callbacks to; empty means http://127.0.0.1:<ingress_port>", default=""
    )
    twilio_base_url: str = _doc(
        "Twilio API base URL; empty in development means the local simulator",
        default="https://api.twilio.com",
    )
    twilio_account_sid: str = _doc("Twilio Account SID", default="")
    twilio_auth_token: Secret = _doc(
        "Twilio Auth Token (also verifies X-Twilio-Signature)", default=Secret("")
    )
    twilio_webhook_shared_key: Secret = _doc(
        "The SharedKey of a Twilio Webhooks Rule (callbacks signed HMAC-SHA256, named by "
        "X-Twilio-Webhooks-Signature-Settings); empty: only Auth Token signatures",
        default=Secret(""),
    )
    twilio_from: str = _doc("Default SMS sender when an event names none", default="")
    whatsapp_base_url: str = _doc(
        "WhatsApp Cloud API base URL; empty in development means the simulator",
        default="https://graph.facebook.com",
    )
    whatsapp_graph_version: str = _doc(
        "Graph API version of the WhatsApp Cloud API calls (Meta retires each about two years "
        "after its release)",
        default="v25.0",
    )
    whatsapp_phone_number_id: str = _doc("WhatsApp sender phone number id", default="")
    whatsapp_access_token: Secret = _doc("WhatsApp Cloud API access token", default=Secret(""))
    whatsapp_app_secret: Secret = _doc(
        "Meta app secret (verifies X-Hub-Signature-256)", default=Secret("")
    )
    whatsapp_verify_token: Secret = _doc(
        "Token of the webhook verification handshake", default=Secret("")
    )
    rbm_base_url: str = _doc(
        "RBM API base URL; empty in development means the simulator",
        default="https://rcsbusinessmessaging.googleapis.com",
    )
    rbm_agent_id: str = _doc("RBM agent id", default="")
    rbm_token: Secret = _doc(
        "A fixed RBM bearer token (development and tests); production mints tokens from "
        "HERALD_RBM_SERVICE_ACCOUNT_JSON",
        default=Secret(""),
    )
    rbm_service_account_json: Secret = _doc(
        "The RBM agent's Google service-account key (the JSON file's content); herald mints "
        "and refreshes OAuth 2.0 access tokens from it",
        default=Secret(""),
    )
    rbm_token_uri: str = _doc(
        "OAuth 2.0 token endpoint; empty means the one the service-account key names",
        default="",
    )
    rbm_client_token: Secret = _doc(
        "RBM webhook client token (verifies X-Goog-Signature)", default=Secret("")
    )
    viber_base_url: str = _doc(
        "Viber API base URL; empty in development means the simulator",
        default="https://chatapi.viber.com",
    )
    viber_auth_token: Secret = _doc(
        "Viber auth token (also verifies X-Viber-Content-Signature)", default=Secret("")
    )
    viber_sender_name: str = _doc("Viber sender name when an event names none", default="Herald")
    email_transport: str = _doc(
        "smtp (any relay; SendGrid's SMTP gets X-SMTPAPI unique_args) or sendgrid (SendGrid's "
        "v3 Mail Send API with custom_args)",
        default="smtp",
    )
    sendgrid_base_url: str = _doc(
        "SendGrid API base URL; empty in development means the simulator",
        default="https://api.sendgrid.com",
    )
    sendgrid_api_key: Secret = _doc(
        "SendGrid API key (with HERALD_EMAIL_TRANSPORT=sendgrid)", default=Secret("")
    )
    smtp_host: str = _doc(
        "SMTP relay host; empty disables email (in development: the simulator's SMTP server)",
        default="",
    )
    smtp_port: int = _doc("SMTP relay port", default=587)
    smtp_username: str = _doc("SMTP user; empty sends without AUTH", default="")
    smtp_password: Secret = _doc("SMTP password", default=Secret(""))
    smtp_tls: bool = _doc("STARTTLS/TLS to the SMTP relay", default=False)
    email_webhook_public_key: str = _doc(
        "Base64 DER public key that signs email event webhooks (SendGrid's verification key); "
        "empty in development with the simulator means the simulator's development key",
        default="",
    )
    simulator_smtp_port: int = _doc("The simulator's SMTP port", default=8025)
    simulator_latency_ms: float = _doc("Simulator: mean added answer latency", default=0.0)
    simulator_error_5xx_ratio: float = _doc("Simulator: share of sends answered 5xx", default=0.0)
    simulator_rate_429_ratio: float = _doc(
        "Simulator: share of sends answered 429 with Retry-After", default=0.0
    )
    simulator_timeout_ratio: float = _doc(
        "Simulator: share of sends accepted and never answered", default=0.0
    )
    simulator_duplicate_callback_ratio: float = _doc(
        "Simulator: share of messages whose last callback comes twice", default=0.0
    )
    simulator_out_of_order_ratio: float = _doc(
        "Simulator: share of messages whose final callback comes before sent", default=0.0
    )
    default_rate_per_s: float = _doc("Send rate per account and channel unless set", default=2000.0)
    account_settings_ttl_s: float = _doc(
        "How old a worker's copy of an account's rate and quiet hours may be: a change "
        "through the API reaches running sends within this time, without a restart",
        default=2.0,
    )
    worker_concurrency: int = _doc("In-flight provider requests per worker process", default=128)
    worker_chunk_size: int = _doc("Recipients read from Postgres per chunk", default=500)
    worker_slice_s: float = _doc(
        "Longest a worker spends on one batch before it hands the rest back to the end of "
        "its partition, so other accounts' work on that partition is not held up",
        default=2.0,
    )
    dispatch_subkeys: int = _doc(
        "Sub-keys each account's batches and fallback work are spread over (at most the "
        "dispatch topic's partitions), each paced at the account's rate / this: one account "
        "is sent by up to this many workers at once and never faster than its rate. 1 keys "
        "work by account alone, which costs least with one worker (each sub-key is a pass of "
        "its own); change it while the account sends nothing (items published under the old "
        "value keep their share of the rate until done)",
        default=1,
    )
    send_timeout_s: float = _doc("Provider HTTP timeout", default=10.0)
    status_batch_max: int = _doc("Status events folded per transaction", default=2000)
    status_linger_ms: int = _doc(
        "Longest a status record waits for more to fold with it (a quarter of "
        "HERALD_STATUS_BATCH_MAX records go at once): how late a status may show, traded for "
        "fuller, cheaper folds",
        default=100,
    )
    scheduler_poll_s: float = _doc("How often the scheduler looks for due campaigns", default=1.0)
    drain_timeout_s: float = _doc("SIGTERM grace for in-flight work", default=20.0)
    kafka_session_timeout_ms: int = _doc(
        "How long a silent consumer keeps its partitions before the group moves them",
        default=30_000,
    )
    error_budget_window: int = _doc(
        "Recent sends per campaign the error budget looks at", default=200
    )
    error_budget_max_failure_ratio: float = _doc(
        "Share of those sends that may fail at the provider before the campaign is paused",
        default=0.5,
    )
    reconcile_interval_s: float = _doc(
        "How often the scheduler looks in PostgreSQL for work Kafka lost", default=30.0
    )
    reconcile_after_s: float = _doc(
        "How long published work may sit untouched before it is published again (a running "
        "batch stamps its progress per chunk)",
        default=120.0,
    )
    recipients_partition_from: int = _doc(
        "Recipients from which a campaign's rows get their own partition of the recipients "
        "table (archived by detaching it); smaller campaigns share the default partition",
        default=100_000,
    )
    recipients_retention_days: float = _doc(
        "Days after a campaign ended before the scheduler moves its recipient and attempt "
        "rows into the archive schema (counters stay; its recipients list answers 410); 0 "
        "keeps them",
        default=0.0,
    )
    recipients_archive_interval_s: float = _doc(
        "How often the scheduler looks for ended campaigns past the recipients retention",
        default=60.0,
    )
    sweep_interval_s: float = _doc(
        "How often fallback work, parked callbacks and fallback windows are swept", default=0.5
    )
    status_park_timeout_s: float = _doc(
        "How long a callback for an unknown provider message id is retried before it is "
        "dead-lettered",
        default=300.0,
    )
    log_level: str = _doc("Log level of herald's own loggers", default="INFO")
    log_format: str = _doc(
        "json (one object per line; the production default) or text (development)",
        default="json",
    )
    # Credentials that provider_accounts rows name by secret_ref, from HERALD_SECRET_<NAME>.
    secrets: Mapping[str, Secret] = field(default_factory=dict, metadata={"secrets": True})

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, *, profile: str = PRODUCTION
    ) -> Settings:
        """Settings from HERALD_* variables. `profile` is the command's default profile;
        HERALD_PROFILE overrides it. Development fills what is unset with DEVELOPMENT."""
        env = os.environ if environ is None else environ
        chosen = env.get(env_name("profile"), "").strip().lower() or profile
        if chosen not in PROFILES:
            raise SettingsError(f"HERALD_PROFILE: one of {', '.join(PROFILES)}, not {chosen!r}")
        values: dict[str, Any] = dict(DEVELOPMENT) if chosen == DEVELOPMENT_PROFILE else {}
        values |= {
            "secrets": {
                name.removeprefix(SECRET_PREFIX): Secret(value)
                for name, value in env.items()
                if name.startswith(SECRET_PREFIX) and len(name) > len(SECRET_PREFIX)
            }
        }
        values["profile"] = chosen
        for f in fields(cls):
            if f.metadata.get("secrets") or f.name == "profile":
                continue
            key = env_name(f.name)
            if key not in env:
                continue
            raw = env[key]
            values[f.name] = _cast(key, f.type, raw)
        return cls(**values)

    def __post_init__(self) -> None:
        # A share of the rate is the rate / this: 0 or a negative count has no meaning.
        if not 1 <= self.dispatch_subkeys <= MAX_SHARES:
            raise SettingsError(
                f"{env_name('dispatch_subkeys')}: from 1 to {MAX_SHARES}, "
                f"not {self.dispatch_subkeys}"
            )

    def to_env(self) -> dict[str, str]:
        """HERALD_* variables that rebuild these settings in a child process."""
        env = {f"{SECRET_PREFIX}{name}": secret.value for name, secret in self.secrets.items()}
        for f in fields(self):
            if f.metadata.get("secrets"):
                continue
            value = getattr(self, f.name)
            if isinstance(value, Secret):
                value = value.value
            elif isinstance(value, bool):
                value = "true" if value else "false"
            env[env_name(f.name)] = str(value)
        return env

    @classmethod
    def development(cls, **values: Any) -> Settings:
        """Development settings (tests, `herald demo`): DEVELOPMENT under the values given."""
        return cls(**{**DEVELOPMENT, "profile": DEVELOPMENT_PROFILE, **values})

    def with_overrides(self, **changes: Any) -> Settings:
        return replace(self, **changes)

    @property
    def is_development(self) -> bool:
        return self.profile == DEVELOPMENT_PROFILE

    @property
    def ingress_url(self) -> str:
        # Without its trailing slashes: callback paths are appended ("/callbacks/..."), and
        # Twilio signs the URL exactly as herald gave it, so "//callbacks" would be a 404.
        return (
            self.public_ingress_url.strip().rstrip("/") or f"http://127.0.0.1:{self.ingress_port}"
        )

    @property
    def simulator_url(self) -> str:
        return f"http://127.0.0.1:{self.simulator_port}"

    def topic(self, name: str) -> str:
        return f"{self.topic_prefix}{name}"


SECRET_PREFIX = "HERALD_SECRET_"

# What development (`herald demo`, `herald run all`, tests) uses where production has nothing:
# the simulator's credentials, topics created by herald, the embedded broker's limits, text
# logs. Production never reads these; a secret left unset there disables its channel.
DEVELOPMENT: Final[Mapping[str, Any]] = {
    "kafka_create_topics": True,
    # The embedded broker refuses InitProducerId.
    "kafka_idempotence": False,
    "log_format": "text",
    # Tests and demos publish events for accounts they name on the spot.
    "accounts_create_on_first_event": True,
    # Empty provider URLs mean the simulator, in development only.
    "twilio_base_url": "",
    "whatsapp_base_url": "",
    "rbm_base_url": "",
    "viber_base_url": "",
    "sendgrid_base_url": "",
    "twilio_account_sid": "ACherald0000000000000000000000000",
    "twilio_from": "+15005550006",
    "whatsapp_phone_number_id": "1000000001",
    "rbm_agent_id": "herald-dev-agent",
    "twilio_auth_token": Secret("herald-dev-token"),
    "whatsapp_access_token": Secret("herald-dev-whatsapp-token"),
    "whatsapp_app_secret": Secret("herald-dev-whatsapp-app-secret"),
    "whatsapp_verify_token": Secret("herald-dev-verify-token"),
    "rbm_token": Secret("herald-dev-rbm-token"),
    "rbm_client_token": Secret("herald-dev-rbm-client-token"),
    "viber_auth_token": Secret("herald-dev-viber-token"),
    "sendgrid_api_key": Secret("herald-dev-sendgrid-key"),
}


def env_name(field_name: str) -> str:
    return f"HERALD_{field_name.upper()}"


def _cast(key: str, type_name: Any, raw: str) -> Any:
    kind = str(type_name)
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            lowered = raw.strip().lower()
            if lowered in {"1", "true", "yes", "on"}:
                return True
            if lowered in {"0", "false", "no", "off", ""}:
                return False
            raise ValueError(raw)
        if kind == "Path":
            return Path(raw)
        if kind == "Secret":
            return Secret(raw)
    except ValueError as exc:
        raise SettingsError(f"{key}: cannot read {kind} from the value given") from exc
    return raw


def describe() -> list[tuple[str, str, str]]:
    """(variable, default, description) for every setting: the README table and --help."""
    rows = []
    defaults = Settings()
    for f in fields(Settings):
        if f.metadata.get("secrets"):
            rows.append(
                (f"{SECRET_PREFIX}<NAME>", "", "A credential a provider_accounts row names")
            )
            continue
        default = getattr(defaults, f.name)
        shown = "(set)" if isinstance(default, Secret) and default.value else str(default)
        rows.append((env_name(f.name), shown, f.metadata.get("doc", "")))
    return rows
