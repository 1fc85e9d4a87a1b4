"""How herald reaches Kafka: one set of aiokafka connection arguments, from HERALD_KAFKA_*
settings, for every producer, consumer and admin client herald builds.

A combination that cannot work (SASL without a user, TLS files with a plaintext protocol)
is refused before any connection is tried, naming the variable to fix.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any, Final

from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.helpers import create_ssl_context

from herald.settings import Settings, SettingsError, env_name

PROTOCOLS: Final = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
# What herald has settings for; aiokafka's GSSAPI and OAUTHBEARER need more than a password.
MECHANISMS: Final = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")

DEPENDENCY: Final = "kafka"

# What a broker outage raises into a loop's round: the client's own errors, a socket error,
# or a timeout herald put around a call.
ERRORS: Final[tuple[type[BaseException], ...]] = (KafkaError, OSError, TimeoutError)

_PROTOCOL = env_name("kafka_security_protocol")
_MECHANISM = env_name("kafka_sasl_mechanism")
_USERNAME = env_name("kafka_sasl_username")
_PASSWORD = env_name("kafka_sasl_password")
_TLS_FILES: Final = ("kafka_ssl_cafile", "kafka_ssl_certfile", "kafka_ssl_keyfile")


def connection_kwargs(settings: Settings) -> dict[str, Any]:
    """aiokafka's connection keyword arguments (bootstrap, TLS, SASL) for these settings.

    Raises SettingsError naming the variable when the combination cannot work.
    """
    if not settings.kafka_bootstrap.strip():
        raise SettingsError(f"{env_name('kafka_bootstrap')}: not set")
    protocol = settings.kafka_security_protocol.strip().upper()
    if protocol not in PROTOCOLS:
        raise SettingsError(
            f"{_PROTOCOL}: one of {', '.join(PROTOCOLS)}, not {settings.kafka_security_protocol!r}"
        )
    kwargs: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap,
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        kwargs |= _sasl(settings, protocol)
    else:
        given = [
            env_name(name)
            for name, value in (
                ("kafka_sasl_mechanism", settings.kafka_sasl_mechanism),
                ("kafka_sasl_username", settings.kafka_sasl_username),
                ("kafka_sasl_password", settings.kafka_sasl_password.value),
            )
            if value
        ]
        if given:
            raise SettingsError(
                f"{given[0]}: set, but {_PROTOCOL}={protocol} does not use SASL "
                f"(SASL_SSL or SASL_PLAINTEXT does)"
            )
    if protocol.endswith("SSL"):
        kwargs["ssl_context"] = _ssl_context(settings)
    else:
        given = [env_name(name) for name in _TLS_FILES if getattr(settings, name)]
        if given:
            raise SettingsError(
                f"{given[0]}: set, but {_PROTOCOL}={protocol} does not use TLS "
                f"(SSL or SASL_SSL does)"
            )
    return kwargs


def _sasl(settings: Settings, protocol: str) -> dict[str, Any]:
    mechanism = settings.kafka_sasl_mechanism.strip().upper()
    if not mechanism:
        raise SettingsError(
            f"{_MECHANISM}: required with {_PROTOCOL}={protocol}; one of {', '.join(MECHANISMS)}"
        )
    if mechanism not in MECHANISMS:
        raise SettingsError(
            f"{_MECHANISM}: one of {', '.join(MECHANISMS)}, not {settings.kafka_sasl_mechanism!r}"
        )
    if not settings.kafka_sasl_username:
        raise SettingsError(f"{_USERNAME}: required with {_PROTOCOL}={protocol}")
    if not settings.kafka_sasl_password.value:
        raise SettingsError(f"{_PASSWORD}: required with {_PROTOCOL}={protocol}")
    return {
        "sasl_mechanism": mechanism,
        "sasl_plain_username": settings.kafka_sasl_username,
        "sasl_plain_password": settings.kafka_sasl_password.value,
    }


def _ssl_context(settings: Settings) -> ssl.SSLContext:
    """Verifies the brokers (with the CA given, else the system's); mutual TLS when a client
    certificate is given."""
    for name in _TLS_FILES:
        path = getattr(settings, name)
        if path and not Path(path).is_file():
            raise SettingsError(f"{env_name(name)}: no file at {path}")
    if settings.kafka_ssl_keyfile and not settings.kafka_ssl_certfile:
        raise SettingsError(
            f"{env_name('kafka_ssl_keyfile')}: set without {env_name('kafka_ssl_certfile')}"
        )
    try:
        context: ssl.SSLContext = create_ssl_context(
            cafile=settings.kafka_ssl_cafile or None,
            certfile=settings.kafka_ssl_certfile or None,
            keyfile=settings.kafka_ssl_keyfile or None,
        )
    except ssl.SSLError as exc:
        given = [env_name(name) for name in _TLS_FILES if getattr(settings, name)]
        raise SettingsError(
            f"{' / '.join(given) or 'Kafka TLS'}: cannot load: {exc.reason or exc}"
        ) from None
    return context


def transient(exc: BaseException) -> bool:
    """Whether waiting may fix it: a broker not up yet, not a refused login or a bad setting."""
    if isinstance(exc, KafkaConnectionError | OSError | TimeoutError):
        return True
    return isinstance(exc, KafkaError) and bool(getattr(exc, "retriable", False))
