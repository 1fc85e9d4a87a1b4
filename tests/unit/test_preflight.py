"""Production refuses development defaults: what a deployment enables, what each role lacks."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

from herald import preflight, roles
from herald.domain.channels import Channel
from herald.preflight import Use
from herald.settings import DEVELOPMENT, Secret, Settings, SettingsError

URLS = {"database_url": "postgresql://db/herald", "kafka_bootstrap": "kafka:9092"}
SMS = {
    "twilio_account_sid": "AC1",
    "twilio_auth_token": Secret("t"),
    "public_ingress_url": "https://hooks.example.com",
}


def test_development_enables_every_channel_with_nothing_missing() -> None:
    checked = preflight.check(
        Settings.development(), uses={Use.SEND, Use.VERIFY}, database=True, kafka=True
    )
    assert checked.enabled == frozenset(Channel)
    assert checked.missing == () and checked.disabled == {}


def test_production_has_no_secret_defaults() -> None:
    settings = Settings()
    assert settings.profile == "production" and not settings.is_development
    for name, value in DEVELOPMENT.items():
        if isinstance(value, Secret):
            assert getattr(settings, name).value == "", name
    assert not settings.kafka_create_topics and settings.kafka_idempotence
    assert settings.log_format == "json"


def test_production_with_nothing_set_disables_every_channel() -> None:
    checked = preflight.check(Settings(**URLS), uses={Use.SEND, Use.VERIFY})
    assert checked.enabled == frozenset()
    assert checked.missing == ()
    assert set(checked.disabled) == set(Channel)
    assert any("HERALD_WHATSAPP_ACCESS_TOKEN" in line for line in checked.warnings())


@pytest.mark.parametrize(
    ("values", "uses", "enabled", "missing"),
    [
        # A complete SMS setup: enabled, nothing missing for either use.
        (SMS, {Use.SEND, Use.VERIFY}, {Channel.SMS}, ()),
        # Twilio without the public URL it signs and posts callbacks to.
        (
            {k: v for k, v in SMS.items() if k != "public_ingress_url"},
            {Use.SEND},
            {Channel.SMS},
            ("HERALD_PUBLIC_INGRESS_URL",),
        ),
        # WhatsApp meant on (a token set): the worker lacks the sender, the ingress the secrets.
        (
            {"whatsapp_access_token": Secret("a")},
            {Use.SEND},
            {Channel.WHATSAPP},
            ("HERALD_WHATSAPP_PHONE_NUMBER_ID",),
        ),
        (
            {"whatsapp_access_token": Secret("a")},
            {Use.VERIFY},
            {Channel.WHATSAPP},
            ("HERALD_WHATSAPP_APP_SECRET", "HERALD_WHATSAPP_VERIFY_TOKEN"),
        ),
        # A role that neither sends nor verifies needs no channel variable.
        ({"whatsapp_access_token": Secret("a")}, set(), {Channel.WHATSAPP}, ()),
        # RBM: the client token alone turns it on; the worker then lacks agent and token.
        (
            {"rbm_client_token": Secret("c")},
            {Use.SEND},
            {Channel.RCS},
            ("HERALD_RBM_AGENT_ID", "HERALD_RBM_TOKEN"),
        ),
        # RBM with a service-account key instead of a fixed token: nothing missing.
        (
            {
                "rbm_agent_id": "agent",
                "rbm_service_account_json": Secret('{"type": "service_account"}'),
                "rbm_client_token": Secret("c"),
            },
            {Use.SEND, Use.VERIFY},
            {Channel.RCS},
            (),
        ),
        # The key alone turns RCS on; the worker then lacks only the agent id.
        (
            {"rbm_service_account_json": Secret("{}")},
            {Use.SEND},
            {Channel.RCS},
            ("HERALD_RBM_AGENT_ID",),
        ),
        # The fixed token still works on its own terms.
        (
            {"rbm_agent_id": "agent", "rbm_token": Secret("t")},
            {Use.SEND},
            {Channel.RCS},
            (),
        ),
        # A provider URL emptied in production is missing, never the simulator.
        (
            {"viber_auth_token": Secret("v"), "viber_base_url": ""},
            {Use.SEND},
            {Channel.VIBER},
            ("HERALD_VIBER_BASE_URL",),
        ),
        # Email: an SMTP host without SendGrid's verification key.
        (
            {"smtp_host": "smtp.sendgrid.net"},
            {Use.VERIFY},
            {Channel.EMAIL},
            ("HERALD_EMAIL_WEBHOOK_PUBLIC_KEY",),
        ),
    ],
)
def test_channel_table(
    values: dict[str, Any], uses: set[Use], enabled: set[Channel], missing: tuple[str, ...]
) -> None:
    checked = preflight.check(Settings(**URLS, **values), uses=uses)
    assert checked.enabled == enabled
    assert checked.missing == missing


def test_roles_name_what_each_lacks() -> None:
    settings = Settings(whatsapp_access_token=Secret("a"))
    line = roles.refusal(settings, ["worker", "ingress", "api"])
    assert line is not None and "\n" not in line
    assert "api needs HERALD_DATABASE_URL;" in line
    assert "ingress needs HERALD_KAFKA_BOOTSTRAP, HERALD_WHATSAPP_APP_SECRET" in line
    assert "worker needs HERALD_DATABASE_URL, HERALD_KAFKA_BOOTSTRAP, " in line
    assert "HERALD_WHATSAPP_PHONE_NUMBER_ID" in line
    assert roles.refusal(Settings(**URLS), roles.NAMES) is None
    assert roles.refusal(Settings.development(), roles.NAMES) is None


def test_profile_from_environment() -> None:
    assert Settings.from_env({}).profile == "production"
    assert Settings.from_env({}, profile="development").is_development
    dev = Settings.from_env({"HERALD_PROFILE": "development"})
    assert dev.twilio_auth_token.value == "herald-dev-token" and dev.twilio_base_url == ""
    # An explicit value wins over the development default.
    assert (
        Settings.from_env(
            {"HERALD_TWILIO_AUTH_TOKEN": "x"}, profile="development"
        ).twilio_auth_token.value
        == "x"
    )
    assert Settings.from_env({"HERALD_PROFILE": "production"}, profile="development").profile == (
        "production"
    )
    with pytest.raises(SettingsError, match="HERALD_PROFILE"):
        Settings.from_env({"HERALD_PROFILE": "staging"})


def test_settings_round_trip_through_the_environment_keeps_the_profile() -> None:
    for settings in (Settings(), Settings.development(api_port=1)):
        again = Settings.from_env(settings.to_env())
        assert again == settings


def test_registry_parses_names_and_declares_needs() -> None:
    assert roles.parse(["all"]) == frozenset(roles.NAMES)
    with pytest.raises(roles.RoleError, match="unknown role 'sweeper'"):
        roles.parse(["worker", "sweeper"])
    need = roles.needs(["ingress"])
    assert (need.database, need.kafka, need.uses) == (False, True, frozenset({Use.VERIFY}))
    assert roles.needs(["simulator"]).kafka is False


def test_production_roles_never_import_the_simulator() -> None:
    # A fresh interpreter: this test session has the simulator loaded already.
    production = [name for name in roles.NAMES if name != "simulator"]
    code = (
        "import sys\n"
        "from herald import roles\n"
        f"for name in {production!r}:\n"
        "    roles.load(name)\n"
        "import herald.cli\n"
        "leaked = sorted(m for m in sys.modules if m.startswith(('herald.simulator', "
        "'aiosmtpd')))\n"
        "print(','.join(leaked))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == ""


def test_a_role_whose_extra_is_missing_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins

    real_import = builtins.__import__

    def no_aiosmtpd(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.startswith("aiosmtpd"):
            raise ModuleNotFoundError("No module named 'aiosmtpd'", name="aiosmtpd")
        return real_import(name, *args, **kwargs)

    for module in [
        m for m in sys.modules if m.startswith(("herald.simulator", "herald.roles.sim"))
    ]:
        monkeypatch.delitem(sys.modules, module)
    for module in [m for m in sys.modules if m.startswith("aiosmtpd")]:
        monkeypatch.delitem(sys.modules, module)
    monkeypatch.setattr(builtins, "__import__", no_aiosmtpd)
    with pytest.raises(roles.RoleError, match=r"simulator extra .*herald\[simulator\]"):
        roles.load("simulator")
