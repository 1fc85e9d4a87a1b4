"""Kafka connection arguments from settings: a table of settings to aiokafka keyword
arguments, and of combinations refused with the variable to fix."""

from __future__ import annotations

import datetime
import ssl
from pathlib import Path
from typing import Any

import pytest
from aiokafka import errors
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from herald.bus import client
from herald.settings import Secret, Settings, SettingsError

BOOTSTRAP = "kafka-0.kafka:9093,kafka-1.kafka:9093"
TLS = object()  # stands for "an ssl.SSLContext" in the table


def settings(**values: Any) -> Settings:
    return Settings(**{"kafka_bootstrap": BOOTSTRAP, **values})


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ({}, {"security_protocol": "PLAINTEXT"}),
        ({"kafka_security_protocol": "plaintext"}, {"security_protocol": "PLAINTEXT"}),
        ({"kafka_security_protocol": "SSL"}, {"security_protocol": "SSL", "ssl_context": TLS}),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "SCRAM-SHA-512",
                "kafka_sasl_username": "herald",
                "kafka_sasl_password": Secret("s3cret"),
            },
            {
                "security_protocol": "SASL_SSL",
                "ssl_context": TLS,
                "sasl_mechanism": "SCRAM-SHA-512",
                "sasl_plain_username": "herald",
                "sasl_plain_password": "s3cret",
            },
        ),
        (
            {
                "kafka_security_protocol": "sasl_plaintext",
                "kafka_sasl_mechanism": "scram-sha-256",
                "kafka_sasl_username": "herald",
                "kafka_sasl_password": Secret("s3cret"),
            },
            {
                "security_protocol": "SASL_PLAINTEXT",
                "sasl_mechanism": "SCRAM-SHA-256",
                "sasl_plain_username": "herald",
                "sasl_plain_password": "s3cret",
            },
        ),
        (
            {
                "kafka_security_protocol": "SASL_SSL",
                "kafka_sasl_mechanism": "PLAIN",
                "kafka_sasl_username": "herald",
                "kafka_sasl_password": Secret("s3cret"),
            },
            {
                "security_protocol": "SASL_SSL",
                "ssl_context": TLS,
                "sasl_mechanism": "PLAIN",
                "sasl_plain_username": "herald",
                "sasl_plain_password": "s3cret",
            },
        ),
    ],
)
def test_connection_kwargs(values: dict[str, Any], expected: dict[str, Any]) -> None:
    got = client.connection_kwargs(settings(**values))
    if expected.get("ssl_context") is TLS:
        context = got.pop("ssl_context")
        assert isinstance(context, ssl.SSLContext)
        # Brokers are verified, by name.
        assert context.verify_mode is ssl.CERT_REQUIRED and context.check_hostname
        expected = {k: v for k, v in expected.items() if k != "ssl_context"}
    assert got == {"bootstrap_servers": BOOTSTRAP, **expected}


SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "herald",
    "kafka_sasl_password": Secret("s3cret"),
}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"kafka_bootstrap": ""}, "HERALD_KAFKA_BOOTSTRAP: not set"),
        (
            {"kafka_security_protocol": "TLS"},
            "HERALD_KAFKA_SECURITY_PROTOCOL: one of PLAINTEXT, SSL, SASL_PLAINTEXT, SASL_SSL, "
            "not 'TLS'",
        ),
        (
            {**SASL, "kafka_sasl_mechanism": ""},
            "HERALD_KAFKA_SASL_MECHANISM: required with HERALD_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {**SASL, "kafka_sasl_mechanism": "GSSAPI"},
            "HERALD_KAFKA_SASL_MECHANISM: one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512, not 'GSSAPI'",
        ),
        (
            {**SASL, "kafka_sasl_username": ""},
            "HERALD_KAFKA_SASL_USERNAME: required with HERALD_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {**SASL, "kafka_sasl_password": Secret("")},
            "HERALD_KAFKA_SASL_PASSWORD: required with HERALD_KAFKA_SECURITY_PROTOCOL=SASL_SSL",
        ),
        (
            {**SASL, "kafka_security_protocol": "SSL"},
            "HERALD_KAFKA_SASL_MECHANISM: set, but HERALD_KAFKA_SECURITY_PROTOCOL=SSL does not "
            "use SASL",
        ),
        (
            {"kafka_sasl_password": Secret("s3cret")},
            "HERALD_KAFKA_SASL_PASSWORD: set, but HERALD_KAFKA_SECURITY_PROTOCOL=PLAINTEXT",
        ),
        (
            {"kafka_ssl_cafile": "/etc/kafka/ca.crt"},
            "HERALD_KAFKA_SSL_CAFILE: set, but HERALD_KAFKA_SECURITY_PROTOCOL=PLAINTEXT does "
            "not use TLS",
        ),
        (
            {"kafka_security_protocol": "SSL", "kafka_ssl_cafile": "/nowhere/ca.crt"},
            "HERALD_KAFKA_SSL_CAFILE: no file at /nowhere/ca.crt",
        ),
    ],
)
def test_refused_combinations_name_the_variable(values: dict[str, Any], message: str) -> None:
    with pytest.raises(SettingsError) as caught:
        client.connection_kwargs(settings(**values))
    assert str(caught.value).startswith(message)
    # A refusal never shows a password.
    assert "s3cret" not in str(caught.value)


def _ca(tmp_path: Path) -> tuple[Path, Path, Path]:
    """A self-signed certificate (as CA and as client certificate) and its key."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "herald test CA")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    ca = tmp_path / "ca.crt"
    ca.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path = tmp_path / "client.key"
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ca, ca, key_path


def test_tls_files_are_loaded(tmp_path: Path) -> None:
    ca, cert, key = _ca(tmp_path)
    got = client.connection_kwargs(
        settings(
            kafka_security_protocol="SSL",
            kafka_ssl_cafile=str(ca),
            kafka_ssl_certfile=str(cert),
            kafka_ssl_keyfile=str(key),
        )
    )
    context = got["ssl_context"]
    assert isinstance(context, ssl.SSLContext)
    assert [c["subject"] for c in context.get_ca_certs()] == [
        ((("commonName", "herald test CA"),),)
    ]


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ({"kafka_ssl_cafile": "junk"}, "HERALD_KAFKA_SSL_CAFILE: cannot load"),
        ({"kafka_ssl_keyfile": "key"}, "HERALD_KAFKA_SSL_KEYFILE: set without"),
    ],
)
def test_unreadable_tls_files_are_refused(
    tmp_path: Path, files: dict[str, str], message: str
) -> None:
    _, _, key = _ca(tmp_path)
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    paths = {"junk": str(junk), "key": str(key)}
    values = {name: paths[which] for name, which in files.items()}
    with pytest.raises(SettingsError, match=message):
        client.connection_kwargs(settings(kafka_security_protocol="SSL", **values))


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (ConnectionRefusedError(), True),
        (TimeoutError(), True),
        (errors.KafkaConnectionError("Unable to bootstrap"), True),
        (errors.RequestTimedOutError(), True),
        (errors.NodeNotReadyError(), True),
        (errors.TopicAuthorizationFailedError(), False),
        (errors.UnsupportedVersionError(), False),
        (ValueError("bad setting"), False),
    ],
)
def test_transient(exc: BaseException, transient: bool) -> None:
    assert client.transient(exc) is transient
