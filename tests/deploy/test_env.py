"""The environment the overlays give each role: real settings only, every secret from one key
of an operator-made Secret (none committed), the keys deploy/README.md lists, and a
production environment that builds herald's settings and can enable every channel."""

from __future__ import annotations

import re
from dataclasses import fields

import pytest

from herald import preflight
from herald.settings import (
    DEVELOPMENT_PROFILE,
    PRODUCTION,
    SECRET_PREFIX,
    Settings,
    describe,
    env_name,
)
from tests.deploy.render import (
    DEPLOY,
    OVERLAYS,
    container,
    mounted_file,
    of_kind,
    production_env,
    render,
    rendered_secret_data,
    role_env,
    roles,
    secret_refs,
    strings,
    workload_for,
)

ROLES = ("api", "scheduler", "worker", "status", "ingress", "relay")
SECRET = "herald-secrets"
# What the production Secret holds: the database, the Kafka user, every channel's credentials.
SECRET_KEYS = {
    "HERALD_DATABASE_URL",
    "HERALD_KAFKA_SASL_USERNAME",
    "HERALD_KAFKA_SASL_PASSWORD",
    "HERALD_TWILIO_ACCOUNT_SID",
    "HERALD_TWILIO_AUTH_TOKEN",
    "HERALD_TWILIO_WEBHOOK_SHARED_KEY",
    "HERALD_WHATSAPP_PHONE_NUMBER_ID",
    "HERALD_WHATSAPP_ACCESS_TOKEN",
    "HERALD_WHATSAPP_APP_SECRET",
    "HERALD_WHATSAPP_VERIFY_TOKEN",
    "HERALD_RBM_AGENT_ID",
    "HERALD_RBM_TOKEN",
    "HERALD_RBM_SERVICE_ACCOUNT_JSON",
    "HERALD_RBM_CLIENT_TOKEN",
    "HERALD_VIBER_AUTH_TOKEN",
    "HERALD_SMTP_HOST",
    "HERALD_SMTP_USERNAME",
    "HERALD_SMTP_PASSWORD",
    "HERALD_SENDGRID_API_KEY",
    "HERALD_EMAIL_WEBHOOK_PUBLIC_KEY",
}
# Settings whose values are secrets (typed Secret) or name a credential.
SECRET_SETTINGS = {env_name(f.name) for f in fields(Settings) if str(f.type) == "Secret"}
PROVIDER_URLS = ("twilio_base_url", "whatsapp_base_url", "rbm_base_url", "viber_base_url")


def fake_secrets() -> dict[str, str]:
    return {key: f"fake-{key.lower()}" for key in SECRET_KEYS} | {
        "HERALD_DATABASE_URL": "postgresql://herald:pw@db.invalid:5432/herald"
    }


def readme_table(heading: str) -> list[str]:
    """First-column `HERALD_*` names of the table under `heading` in deploy/README.md."""
    text = (DEPLOY / "README.md").read_text()
    start = text.index(heading)
    end = text.find("\n#", start + len(heading))
    section = text[start : end if end != -1 else None]
    return re.findall(r"^\| `(HERALD_[A-Z0-9_]+)` \|", section, re.MULTILINE)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_herald_variable_in_the_manifests_is_a_setting(overlay: str) -> None:
    known = {name for name, _, _ in describe() if not name.startswith(SECRET_PREFIX)}
    named = set()
    for doc in render(overlay):
        for text in strings(doc):
            named |= set(re.findall(r"\bHERALD_[A-Z0-9_]*[A-Z0-9]", text))
    assert len(named) > 20
    unknown = sorted(n for n in named - known if not n.startswith(SECRET_PREFIX))
    assert not unknown, f"{overlay}: not herald settings: {unknown}"
    for config in of_kind(render(overlay), "ConfigMap").values():
        if any(k.startswith("HERALD_") for k in config.get("data", {})):
            Settings.from_env(config["data"])  # every value casts to its field's type


def test_every_role_reads_each_secret_from_its_own_key() -> None:
    for role in ROLES:
        env = role_env("production", role)
        assert secret_refs("production", role) == {(SECRET, key) for key in SECRET_KEYS}, role
        for name, ref in env.secrets.items():
            # One key per variable, named as the variable.
            assert ref.key == name, role
            # Only the database is required; a channel or Kafka user may be left out.
            assert ref.optional is (name != "HERALD_DATABASE_URL"), (role, name)
        # HERALD_SECRET_<NAME> for provider_accounts rows, from an optional Secret.
        assert env.secret_sources == {"herald-account-secrets": True}, role
    migrate = role_env("production", "migrate")
    assert secret_refs("production", "migrate") == {(SECRET, "HERALD_DATABASE_URL")}
    assert migrate.secrets["HERALD_DATABASE_URL"].optional is False
    assert migrate.secret_sources == {}


def test_readme_lists_every_secret_key_and_each_is_referenced() -> None:
    listed = readme_table("### Secret `herald-secrets`")
    assert len(listed) == len(set(listed)), "a key is listed twice"
    referenced = {key for role in ROLES for _, key in secret_refs("production", role)}
    assert set(listed) == referenced == SECRET_KEYS


def test_readme_lists_the_production_config_map() -> None:
    (config,) = of_kind(render("production"), "ConfigMap").values()
    listed = readme_table("### ConfigMap `herald-config`")
    assert len(listed) == len(set(listed))
    assert set(listed) == set(config["data"])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_no_secret_value_is_committed(overlay: str) -> None:
    docs = render(overlay)
    for config in of_kind(docs, "ConfigMap").values():
        leaked = set(config.get("data", {})) & (SECRET_SETTINGS | SECRET_KEYS)
        assert not leaked, f"{overlay}: {config['metadata']['name']} holds {sorted(leaked)}"
    for role in (*ROLES, "migrate"):
        env = role_env(overlay, role)
        # A variable comes from the ConfigMap or from the Secret, never both.
        assert not set(env.values) & set(env.secrets), role
        assert not set(env.values) & (SECRET_SETTINGS | SECRET_KEYS), role
    if overlay == "production":
        assert not of_kind(docs, "Secret"), "production's Secrets are the operator's"
    else:
        # Development credentials are the simulator's, from the profile; the generated
        # Secret holds the in-cluster database's password and where email goes.
        held = {key for secret, key in rendered_secret_data(overlay) if secret == SECRET}
        assert held == {
            "HERALD_DATABASE_URL",
            "HERALD_SMTP_HOST",
            "HERALD_EMAIL_WEBHOOK_PUBLIC_KEY",
        }


@pytest.mark.parametrize("role", (*ROLES, "migrate"))
def test_the_production_environment_builds_production_settings(role: str) -> None:
    env = production_env("production", role, fake_secrets())
    assert env["HERALD_PROFILE"] == PRODUCTION
    # Explicit, so even a command that defaults to development runs as production.
    for default in (PRODUCTION, DEVELOPMENT_PROFILE):
        settings = Settings.from_env(env, profile=default)
        assert settings.profile == PRODUCTION
    defaults = Settings()
    for url in PROVIDER_URLS:
        assert getattr(settings, url) == getattr(defaults, url), url
        assert getattr(settings, url).startswith("https://"), url
    assert settings.database_url == fake_secrets()["HERALD_DATABASE_URL"]
    assert settings.kafka_bootstrap and settings.kafka_create_topics is False
    assert settings.kafka_idempotence is True
    assert settings.log_format == "json"
    assert settings.public_ingress_url.startswith("https://")
    if role != "migrate":
        assert settings.kafka_security_protocol == "SASL_SSL"
        assert settings.kafka_sasl_mechanism == "SCRAM-SHA-512"
        assert settings.kafka_sasl_password.value == fake_secrets()["HERALD_KAFKA_SASL_PASSWORD"]
        assert settings.twilio_auth_token.value == fake_secrets()["HERALD_TWILIO_AUTH_TOKEN"]


@pytest.mark.parametrize("role", ROLES)
def test_the_secret_can_enable_every_channel_and_may_enable_none(role: str) -> None:
    everything = Settings.from_env(production_env("production", role, fake_secrets()))
    uses = set(preflight.Use)
    full = preflight.check(everything, uses=uses, database=True, kafka=True)
    assert full.missing == () and not full.disabled, full
    assert full.enabled == frozenset(preflight.VARIABLES)
    # Only the database: every channel off with a warning, nothing missing to start.
    bare = Settings.from_env(
        production_env("production", role, {"HERALD_DATABASE_URL": "postgresql://db/herald"})
    )
    minimal = preflight.check(bare, uses=uses, database=True, kafka=True)
    assert minimal.missing == () and not minimal.enabled, minimal
    assert set(minimal.disabled) == set(preflight.VARIABLES)
    # Every variable a channel needs is one the manifests provide.
    provided = set(production_env("production", role)) | {
        name for name, _ in role_env("production", role).secrets.items()
    }
    for channel, variables in preflight.VARIABLES.items():
        for name in (*variables.credentials, *variables.send, *variables.verify):
            if "base_url" not in name:  # left to the vendors' defaults
                assert env_name(name) in provided, (channel, name)


def test_files_the_settings_name_are_mounted() -> None:
    docs = render("production")
    for role in ROLES:
        settings = Settings.from_env(production_env("production", role, fake_secrets()))
        workload = workload_for(docs, role)
        for path in (
            settings.kafka_ssl_cafile,
            settings.kafka_ssl_certfile,
            settings.kafka_ssl_keyfile,
        ):
            if path:
                mounted_file(workload, path)
        assert mounted_file(workload, settings.kafka_ssl_cafile) == (
            "herald-cluster-ca-cert",
            "ca.crt",
        )


def test_dev_is_self_contained() -> None:
    from herald.simulator import devkeys

    docs = render("dev")
    given = {key: value for (secret, key), value in rendered_secret_data("dev").items()}
    simulator = container(roles(docs)["simulator"])
    ports = {p["name"]: p["containerPort"] for p in simulator["ports"]}
    services = of_kind(docs, "Service")
    sim_ports = {p["name"]: p["port"] for p in services["herald-simulator"]["spec"]["ports"]}
    ingress_port = services["herald-ingress"]["spec"]["ports"][0]["port"]
    for role in (*ROLES, "simulator", "migrate"):
        settings = Settings.from_env(production_env("dev", role, given))
        assert settings.profile == DEVELOPMENT_PROFILE, role
        assert settings.kafka_create_topics is False and settings.kafka_idempotence is True
        assert settings.public_ingress_url == f"http://herald-ingress:{ingress_port}"
        if role == "simulator":
            assert settings.simulator_port == ports["http"] == sim_ports["http"]
            assert settings.simulator_smtp_port == ports["smtp"] == sim_ports["smtp"]
            continue
        assert "@herald-postgres:5432/" in settings.database_url, role
        if role == "migrate":
            continue
        for url in PROVIDER_URLS:
            assert getattr(settings, url) == f"http://herald-simulator:{sim_ports['http']}"
        assert settings.smtp_host == "herald-simulator"
        assert settings.smtp_port == sim_ports["smtp"]
        assert settings.email_webhook_public_key == devkeys.public_key()


def test_production_env_gives_what_a_role_starts_with() -> None:
    """The helper other tests start roles with."""
    env = production_env(role="ingress")
    assert env["HERALD_PROFILE"] == PRODUCTION and "HERALD_DATABASE_URL" not in env
    assert ("herald-secrets", "HERALD_DATABASE_URL") in secret_refs(role="ingress")
    with pytest.raises(KeyError, match="HERALD_DATABASE_URL"):
        production_env(role="ingress", secrets={"HERALD_VIBER_AUTH_TOKEN": "x"})
    filled = production_env(role="ingress", secrets={"HERALD_DATABASE_URL": "postgresql://x/y"})
    assert filled["HERALD_DATABASE_URL"] == "postgresql://x/y"
    assert "HERALD_VIBER_AUTH_TOKEN" not in filled
