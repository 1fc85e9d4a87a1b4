"""The raw ceiling: a bare aiohttp loop that makes a campaign's provider requests itself.

Same simulator, same endpoints and wire bodies (built with herald's own pure request-body
functions), same callback URLs, same number of requests in flight (worker_concurrency, one
session with one connector, like the worker). No PostgreSQL, no Kafka, no rate limiter, no
composition: what is left is HTTP plus the simulator's own work, which is the most any
sender on this machine can get through this simulator.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import orjson
from measures import PlannedSend
from yarl import URL

from herald.constants import PATH_CALLBACK_TWILIO
from herald.domain.channels import Channel
from herald.providers import rbm, whatsapp
from herald.providers.base import OutboundMessage, WhatsAppTemplate
from herald.providers.twilio import API_VERSION
from herald.settings import Settings

SMS_BODY = "Hi Guest, 20% off today."
TEMPLATE_COMPONENTS: tuple[dict[str, Any], ...] = (
    {"type": "body", "parameters": [{"type": "text", "text": "Guest"}]},
)


@dataclass(frozen=True, kw_only=True)
class CeilingResult:
    requests: int
    elapsed_s: float
    latencies_s: list[float]
    by_status: dict[int, int]

    @property
    def per_s(self) -> float:
        return self.requests / self.elapsed_s if self.elapsed_s > 0 else 0.0


class Requests:
    """Builds each planned send as the matching provider adapter would put it on the wire."""

    def __init__(self, settings: Settings, run_id: str) -> None:
        self.settings = settings
        self.run_id = run_id
        base = settings.simulator_url
        self.wa_url = (
            f"{base}/{whatsapp.DEFAULT_API_VERSION}/{settings.whatsapp_phone_number_id}/messages"
        )
        self.sms_url = f"{base}/{API_VERSION}/Accounts/{settings.twilio_account_sid}/Messages.json"
        self.rbm_base = URL(base) / "v1" / "phones"
        self.wa_headers = _bearer(settings.whatsapp_access_token.value)
        self.rbm_headers = _bearer(settings.rbm_token.value)
        self.sms_headers = {
            "Accept": "application/json",
            "Authorization": aiohttp.BasicAuth(
                settings.twilio_account_sid, settings.twilio_auth_token.value
            ).encode(),
        }

    def message_id(self, send: PlannedSend) -> str:
        # Never a herald campaign id: the simulator's duplicate counters stay the campaign's.
        return f"ceiling-{self.run_id}.{send.index + 1}.{send.attempt}"

    def build(self, send: PlannedSend) -> tuple[str | URL, dict[str, str], Any]:
        mid = self.message_id(send)
        ingress = self.settings.ingress_url
        if send.channel is Channel.WHATSAPP:
            message = OutboundMessage(
                message_id=mid,
                channel=Channel.WHATSAPP,
                to=send.phone,
                sender="",
                body="",
                callback_url=f"{ingress}/callbacks/whatsapp",
                template=WhatsAppTemplate(
                    name="spring_sale", language="en_US", components=TEMPLATE_COMPONENTS
                ),
            )
            return self.wa_url, self.wa_headers, orjson.dumps(whatsapp.request_body(message))
        if send.channel is Channel.RCS:
            message = OutboundMessage(
                message_id=mid,
                channel=Channel.RCS,
                to=send.phone,
                sender=self.settings.rbm_agent_id,
                body="Hi Guest, 20% off.",
                callback_url=f"{ingress}/callbacks/rcs",
            )
            url = (self.rbm_base / send.phone / "agentMessages").with_query(
                messageId=mid, agentId=self.settings.rbm_agent_id
            )
            return url, self.rbm_headers, orjson.dumps(rbm.request_body(message))
        if send.channel is Channel.SMS:
            form = {
                "To": send.phone,
                "From": self.settings.twilio_from,
                "Body": SMS_BODY,
                "StatusCallback": f"{ingress}{PATH_CALLBACK_TWILIO}?m={mid}",
            }
            return self.sms_url, self.sms_headers, form
        raise ValueError(f"the ceiling loop does not send {send.channel.value}")


def _bearer(token: str) -> dict[str, str]:
    return {
        "Accept": "application/json",
        "Content-Type": "application/json",
        "Authorization": f"Bearer {token}",
    }


async def run(
    settings: Settings, sends: Sequence[PlannedSend], *, concurrency: int, run_id: str
) -> CeilingResult:
    """Every planned send once, at most `concurrency` in flight; bodies are built up front so
    the timed loop is only HTTP."""
    builder = Requests(settings, run_id)
    prepared = [builder.build(s) for s in sends]
    latencies: list[float] = []
    by_status: dict[int, int] = {}
    timeout = aiohttp.ClientTimeout(total=settings.send_timeout_s)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        position = 0

        async def lane() -> None:
            nonlocal position
            while position < len(prepared):
                url, headers, data = prepared[position]
                position += 1
                started = time.perf_counter()
                try:
                    async with session.post(url, headers=headers, data=data) as answer:
                        await answer.read()
                        status = answer.status
                except (aiohttp.ClientError, TimeoutError):
                    status = 0
                latencies.append(time.perf_counter() - started)
                by_status[status] = by_status.get(status, 0) + 1

        began = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for _ in range(concurrency):
                tg.start_soon(lane)
        elapsed = time.perf_counter() - began
    return CeilingResult(
        requests=len(prepared), elapsed_s=elapsed, latencies_s=latencies, by_status=by_status
    )
