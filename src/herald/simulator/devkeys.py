"""The simulator's fixed development key for signing email event webhooks.

Fixed so that herald's ingress and a simulator in another process agree without passing a
key around; it signs nothing but the simulator's own events. Production reads the real
provider's public key from HERALD_EMAIL_WEBHOOK_PUBLIC_KEY.
"""

from __future__ import annotations

from functools import cache

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from herald.simulator.smtp import public_key_b64

# Any scalar below the curve order makes a valid P-256 key; this one spells "herald-dev".
_DEV_SCALAR = int.from_bytes(b"herald-dev-email-events", "big")


@cache
def _key() -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(_DEV_SCALAR, ec.SECP256R1())


def private_key_pem() -> bytes:
    return _key().private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def public_key() -> str:
    return public_key_b64(_key())
