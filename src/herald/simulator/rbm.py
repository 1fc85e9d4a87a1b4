"""The simulated RBM agentMessages API: create, revoke, signed Pub/Sub push events, and
Google's OAuth 2.0 token endpoint for service accounts.

Like RBM, a messageId must be a UUID (anything else is 400 INVALID_ARGUMENT), a messageId the
agent already used is ignored (answered 200, nothing sent), a number without RCS is a
synchronous 404, and a message can be revoked until it is delivered. A `ttl` shorter than the
delivery delay ends in a TTL_EXPIRATION_REVOKED server event.

Auth takes the fixed development token, or an access token this simulator issued at TOKEN_PATH
for a JWT assertion (RFC 7523, as google-auth sends it) signed by a trusted service-account
key, checked with the key's public part. Issued tokens expire (token_ttl_s, or at once with
expire_tokens()), and an expired one is a 401 with Google's error body.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
import uuid
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any, Final

import orjson
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from herald.domain.channels import Channel
from herald.settings import Secret
from herald.simulator.behaviour import Fault
from herald.simulator.callbacks import Encoder, Step, Track
from herald.simulator.desk import Desk, json_response, read_json, secret_matches
from herald.simulator.outcomes import Callback, rcs_outcome

MESSAGES_PATH: Final = "/v1/phones/{phone}/agentMessages"
MESSAGE_PATH: Final = "/v1/phones/{phone}/agentMessages/{message_id}"
CALLBACK_PATH: Final = "/callbacks/rbm"
# Google's is https://oauth2.googleapis.com/token; a key's token_uri (or
# HERALD_RBM_TOKEN_URI) points herald at this one.
TOKEN_PATH: Final = "/token"
TTL_REVOKED: Final = "TTL_EXPIRATION_REVOKED"
SCOPE: Final = "https://www.googleapis.com/auth/rcsbusinessmessaging"
JWT_BEARER: Final = "urn:ietf:params:oauth:grant-type:jwt-bearer"
# Google refuses assertions that live longer than an hour, or from a skewed clock.
MAX_ASSERTION_S: Final = 3600
CLOCK_SKEW_S: Final = 300

_E164: Final = re.compile(r"^\+[1-9]\d{7,14}$")
_TTL: Final = re.compile(r"^(\d{1,9})(\.\d{1,9})?s$")

GOOGLE_STATUS: Final[Mapping[int, str]] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ALREADY_EXISTS",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}
_MESSAGES: Final[Mapping[int, str]] = {
    400: "Request contains an invalid argument.",
    401: (
        "Request had invalid authentication credentials. Expected OAuth 2 access token, login "
        "cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project."
    ),
    404: "Requested entity was not found.",
    429: "Quota exceeded for quota metric 'Agent messages'.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
}


def rfc3339(moment: datetime | None = None) -> str:
    moment = moment or datetime.now(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond:06d}Z"


def google_error(status: int, message: str | None = None) -> dict[str, Any]:
    return {
        "error": {
            "code": status,
            "message": message or _MESSAGES.get(status, "Error"),
            "status": GOOGLE_STATUS.get(status, "UNKNOWN"),
        }
    }


def invalid_argument(field: str, description: str) -> dict[str, Any]:
    """Google's 400 INVALID_ARGUMENT, with the google.rpc.BadRequest detail naming the field."""
    body = google_error(400, f"Invalid value for {field}: {description}")
    body["error"]["details"] = [
        {
            "@type": "type.googleapis.com/google.rpc.BadRequest",
            "fieldViolations": [{"field": field, "description": description}],
        }
    ]
    return body


def is_e164(phone: str) -> bool:
    return bool(_E164.match(phone))


def is_uuid(value: str) -> bool:
    """RFC 4122 text form (8-4-4-4-12 hex digits), as agentMessages.create requires."""
    try:
        return len(value) == 36 and str(uuid.UUID(value)) == value.lower()
    except ValueError:
        return False


def parse_ttl_s(value: object) -> float | None:
    """Seconds from an AgentMessage `ttl` ("600s", "3.5s"); None when absent or malformed."""
    if not isinstance(value, str):
        return None
    match = _TTL.match(value)
    if match is None:
        return None
    return float(match.group(1) + (match.group(2) or ""))


def agent_message(phone: str, message_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
    """The created AgentMessage, as agentMessages.create echoes it."""
    echo: dict[str, Any] = {
        "name": f"phones/{phone}/agentMessages/{message_id}",
        "sendTime": rfc3339(),
    }
    for key in ("contentMessage", "messageTrafficType", "ttl", "expireTime"):
        if key in body:
            echo[key] = body[key]
    return echo


def user_event(*, phone: str, event_type: str, message_id: str, agent_id: str) -> dict[str, Any]:
    """A UserEvent (DELIVERED, READ) without sendTime, which is set when it is posted."""
    return {
        "senderPhoneNumber": phone,
        "eventType": event_type,
        "eventId": "MxS" + uuid.uuid4().hex[:20],
        "messageId": message_id,
        "agentId": agent_id,
    }


def server_event(*, phone: str, event_type: str, message_id: str, agent_id: str) -> dict[str, Any]:
    """A ServerEvent (TTL_EXPIRATION_REVOKED) without sendTime."""
    return {
        "phoneNumber": phone,
        "eventType": event_type,
        "eventId": "SE" + uuid.uuid4().hex[:20],
        "messageId": message_id,
        "agentId": agent_id,
    }


def step_payload(event: Mapping[str, Any]) -> dict[str, Any]:
    # The Pub/Sub message id is fixed per event: a redelivery repeats it, as Pub/Sub does.
    return {"event": dict(event), "pubsub_id": str(uuid.uuid4().int >> 66)}


def signature(client_token: str, data: bytes) -> str:
    return base64.b64encode(hmac.new(client_token.encode(), data, hashlib.sha512).digest()).decode()


def encoder(client_token: str) -> Encoder:
    """Pub/Sub push bodies, one event each, with X-Goog-Signature over the decoded data."""

    def encode(url: str, group: str, steps: Sequence[Step]) -> tuple[bytes, Mapping[str, str]]:
        (step,) = steps
        now = rfc3339()
        event = {**step.payload["event"], "sendTime": now}
        data = orjson.dumps(event)
        push = {
            "message": {
                "data": base64.b64encode(data).decode("ascii"),
                "messageId": step.payload["pubsub_id"],
                "publishTime": now,
                "attributes": {"product": "RBM", "event_type": event["eventType"]},
            },
            "subscription": f"projects/rbm-{group}/subscriptions/rbm-agent-subscription",
        }
        headers = {
            "Content-Type": "application/json",
            "X-Goog-Signature": signature(client_token, data),
        }
        return orjson.dumps(push), headers

    return encode


class AssertionRefused(ValueError):
    """A JWT assertion the token endpoint refuses (answered 400 invalid_grant)."""


def _b64url(part: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))
    except (binascii.Error, ValueError):
        raise AssertionRefused("Invalid JWT: not base64url") from None


def public_key(pem: bytes | str) -> rsa.RSAPublicKey:
    """The RSA public key in a PEM public key or private key (a service-account key's)."""
    data = pem.encode() if isinstance(pem, str) else pem
    if b"PRIVATE KEY" in data:
        private = serialization.load_pem_private_key(data, password=None)
        key: object = private.public_key()
    else:
        key = serialization.load_pem_public_key(data)
    if not isinstance(key, rsa.RSAPublicKey):
        raise ValueError("service-account keys are RSA")
    return key


def verify_assertion(
    assertion: str, keys: Mapping[str, rsa.RSAPublicKey], *, now_s: float
) -> dict[str, Any]:
    """The claims of a service account's RS256 JWT assertion, checked as Google checks them:
    a known issuer, its key's signature, a short life that has begun and not ended, the RBM
    scope. Raises AssertionRefused with Google's description."""
    try:
        head_b64, claims_b64, signature_b64 = assertion.split(".")
    except ValueError:
        raise AssertionRefused("Invalid JWT: not three segments") from None
    try:
        header = orjson.loads(_b64url(head_b64))
        claims = orjson.loads(_b64url(claims_b64))
    except orjson.JSONDecodeError:
        raise AssertionRefused("Invalid JWT: not JSON") from None
    if not isinstance(header, dict) or not isinstance(claims, dict):
        raise AssertionRefused("Invalid JWT: not JSON objects")
    if header.get("alg") != "RS256":
        raise AssertionRefused("Invalid JWT: alg must be RS256")
    key = keys.get(str(claims.get("iss", "")))
    if key is None:
        raise AssertionRefused("Invalid grant: account not found")
    try:
        key.verify(
            _b64url(signature_b64),
            f"{head_b64}.{claims_b64}".encode("ascii"),
            padding.PKCS1v15(),
            hashes.SHA256(),
        )
    except (InvalidSignature, UnicodeEncodeError):
        raise AssertionRefused("Invalid JWT Signature.") from None
    iat, exp = claims.get("iat"), claims.get("exp")
    if not isinstance(iat, int) or not isinstance(exp, int):
        raise AssertionRefused("Invalid JWT: iat and exp are required")
    if exp - iat > MAX_ASSERTION_S or iat > now_s + CLOCK_SKEW_S or exp < now_s - CLOCK_SKEW_S:
        raise AssertionRefused(
            "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable "
            "timeframe. Check your iat and exp values in the JWT claim."
        )
    if not str(claims.get("aud", "")).endswith(TOKEN_PATH):
        raise AssertionRefused("Invalid JWT: Failed audience check.")
    return claims


class RbmDesk:
    def __init__(
        self,
        desk: Desk,
        *,
        token: Secret,
        client_token: Secret,
        service_accounts: Mapping[str, bytes | str] | None = None,
        token_ttl_s: float = 3600.0,
    ) -> None:
        self._desk = desk
        self._token = token
        self._encode = encoder(client_token.value)
        self._tracks: dict[tuple[str, str], Track] = {}  # (agent, messageId) → its callbacks
        # client_email → the public part of its service-account key.
        self._keys: dict[str, rsa.RSAPublicKey] = {}
        for email, pem in (service_accounts or {}).items():
            self.trust(email, pem)
        self.token_ttl_s = token_ttl_s
        self._issued: dict[str, float] = {}  # access token → when it expires (monotonic)
        self.tokens_issued = 0
        self.tokens_refused = 0

    def routes(self) -> list[web.RouteDef]:
        return [
            web.post(MESSAGES_PATH, self.send),
            web.delete(MESSAGE_PATH, self.revoke),
            web.post(TOKEN_PATH, self.token),
        ]

    def trust(self, client_email: str, pem: bytes | str) -> None:
        """Accept assertions from this service account (its key PEM, public or private)."""
        self._keys[client_email] = public_key(pem)

    def distrust(self, client_email: str) -> None:
        """The key is deleted: its assertions are refused from now on."""
        self._keys.pop(client_email, None)

    def expire_tokens(self) -> None:
        """Every access token issued so far expires now (as if an hour had passed)."""
        now = time.monotonic()
        self._issued = dict.fromkeys(self._issued, now)

    async def token(self, request: web.Request) -> web.Response:
        """POST /token: grant_type=jwt-bearer&assertion=<JWT> → a short-lived access token."""
        form = await request.post()
        if form.get("grant_type") != JWT_BEARER or not isinstance(form.get("assertion"), str):
            self.tokens_refused += 1
            return json_response(
                {"error": "unsupported_grant_type", "error_description": "Invalid grant_type: "},
                status=400,
            )
        try:
            claims = verify_assertion(str(form["assertion"]), self._keys, now_s=time.time())
        except AssertionRefused as exc:
            self.tokens_refused += 1
            return json_response(
                {"error": "invalid_grant", "error_description": str(exc)}, status=400
            )
        if SCOPE not in str(claims.get("scope", "")).split():
            self.tokens_refused += 1
            return json_response(
                {"error": "invalid_scope", "error_description": "Invalid OAuth scope."},
                status=400,
            )
        access = "ya29.sim-" + secrets.token_urlsafe(32)
        self._issued[access] = time.monotonic() + self.token_ttl_s
        self.tokens_issued += 1
        return json_response(
            {
                "access_token": access,
                "expires_in": round(self.token_ttl_s),
                "token_type": "Bearer",
            }
        )

    def _authorised(self, request: web.Request) -> bool:
        scheme, _, given = request.headers.get("Authorization", "").strip().partition(" ")
        given = given.strip()
        if scheme.lower() != "bearer" or not given:
            return False
        if secret_matches(given, self._token):
            return True
        expires_at = self._issued.get(given)
        return expires_at is not None and time.monotonic() < expires_at

    async def send(self, request: web.Request) -> web.Response:
        desk, rcs = self._desk, Channel.RCS
        injected = desk.begin(rcs)
        if injected is not None:
            headers = desk.retry_after() if injected == 429 else None
            return desk.refuse(rcs, injected, google_error(injected), headers)
        if not self._authorised(request):
            return desk.refuse(rcs, 401, google_error(401))
        phone = request.match_info["phone"]
        message_id = request.query.get("messageId", "")
        agent_id = request.query.get("agentId", "")
        body = await read_json(request)
        if not is_e164(phone) or not agent_id:
            message = "phone must be E.164; agentId is required"
            return desk.refuse(rcs, 400, google_error(400, message))
        if not is_uuid(message_id):
            # agentMessages.create: "must be a UUID, as defined in RFC 4122".
            return desk.refuse(
                rcs, 400, invalid_argument("message_id", "must be a UUID (RFC 4122)")
            )
        if not isinstance(body, dict) or not isinstance(body.get("contentMessage"), dict):
            return desk.refuse(rcs, 400, google_error(400, "contentMessage is required"))

        key = (agent_id, message_id)
        if key in self._tracks:
            desk.stats.channel(rcs).duplicates += 1
        fault = await desk.fate(rcs, message_id)
        if fault is Fault.SERVER_ERROR:
            return desk.refuse(rcs, 500, google_error(500))
        if fault is Fault.RATE_LIMITED:
            return desk.refuse(rcs, 429, google_error(429), desk.retry_after())
        if key not in self._tracks:
            outcome = rcs_outcome(phone)
            if not outcome.accepted:
                return desk.refuse(rcs, outcome.http_status, google_error(outcome.http_status))
            track = self._tracks[key] = Track()
            desk.accept(rcs, "", phone)
            desk.submit(
                rcs,
                url=desk.callback_url(CALLBACK_PATH),
                key=message_id,
                steps=self._steps(phone, message_id, agent_id, outcome.callbacks, body),
                encode=self._encode,
                group=agent_id,
                track=track,
            )
        if fault is Fault.TIMEOUT:
            return await desk.hang(rcs)
        return json_response(agent_message(phone, message_id, body))

    async def revoke(self, request: web.Request) -> web.Response:
        if not self._authorised(request):
            return json_response(google_error(401), status=401)
        key = (request.query.get("agentId", ""), request.match_info["message_id"])
        track = self._tracks.get(key)
        if track is None or track.settled or track.cancelled:
            self._desk.stats.revoke_too_late += 1
            return json_response(google_error(404), status=404)
        track.cancelled = True
        self._desk.stats.revoked += 1
        return json_response({})

    def _steps(
        self,
        phone: str,
        message_id: str,
        agent_id: str,
        callbacks: tuple[Callback, ...],
        body: Mapping[str, Any],
    ) -> list[Step]:
        ttl_s = parse_ttl_s(body.get("ttl"))
        if ttl_s is not None and ttl_s < self._desk.step_delay_s(phone, delivers=True):
            # Not delivered within its time to live: RBM revokes it and says so.
            event = server_event(
                phone=phone, event_type=TTL_REVOKED, message_id=message_id, agent_id=agent_id
            )
            return [
                Step(label=TTL_REVOKED, payload=step_payload(event), delay_s=ttl_s, settles=True)
            ]
        steps = []
        for event_type, _ in callbacks:
            event = user_event(
                phone=phone, event_type=event_type, message_id=message_id, agent_id=agent_id
            )
            delivers = event_type == "DELIVERED"
            steps.append(
                Step(
                    label=event_type,
                    payload=step_payload(event),
                    delay_s=self._desk.step_delay_s(phone, delivers=delivers),
                    settles=delivers,
                )
            )
        return steps
