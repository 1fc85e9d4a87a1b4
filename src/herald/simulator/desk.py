"""What every simulated provider endpoint shares: counters, injected faults, callbacks.

Each provider module answers its own wire format and leans on one Desk for the rest: the
request count and fault hook, Behaviour's latency and faults, duplicate detection, timed-out
sends that never answer, and handing callback chains to the dispatcher.
"""

from __future__ import annotations

import asyncio
import collections
import hmac
import time
from collections.abc import Mapping
from typing import Any

import orjson
from aiohttp import web

from herald.domain.channels import Channel
from herald.settings import Secret
from herald.simulator.behaviour import (
    Behaviour,
    Fault,
    arrange,
    callback_plan,
    latency_s,
    send_fault,
)
from herald.simulator.callbacks import Chain, Dispatcher, Encoder, Step, Track
from herald.simulator.outcomes import is_slow
from herald.simulator.stats import SimulatorStats

# Send requests whose arrival is kept for GET /_simulator/arrivals (the oldest go first).
ARRIVALS_KEPT = 200_000


class Desk:
    def __init__(
        self,
        *,
        stats: SimulatorStats,
        dispatcher: Dispatcher,
        behaviour: Behaviour,
        callback_delay_s: float,
        callback_base_url: str,
    ) -> None:
        self.stats = stats
        self.behaviour = behaviour
        self.callback_base_url = callback_base_url.rstrip("/")
        # Accepted sends per destination number (E.164), every channel together.
        self.sent_to: collections.Counter[str] = collections.Counter()
        self.faults: collections.deque[int] = collections.deque()
        # (wall-clock time, destination) of each send request, as it arrived: a sender's rate
        # as the provider sees it.
        self.arrivals: collections.deque[tuple[float, str]] = collections.deque(
            maxlen=ARRIVALS_KEPT
        )
        self.release = asyncio.Event()  # set on stop: timed-out sends answer and finish
        self._dispatcher = dispatcher
        self._callback_delay_s = callback_delay_s
        self._accepted_ids: dict[Channel, set[str]] = collections.defaultdict(set)
        self._request_nos: collections.Counter[tuple[Channel, str]] = collections.Counter()

    def begin(self, channel: Channel) -> int | None:
        """Count the request; the HTTP status the fault hook injects into it, if any."""
        self.stats.channel(channel).requests += 1
        return self.faults.popleft() if self.faults else None

    def arrived(self, to: str) -> None:
        self.arrivals.append((time.time(), to))

    def note_duplicate(self, channel: Channel, message_id: str) -> None:
        if message_id and message_id in self._accepted_ids[channel]:
            self.stats.channel(channel).duplicates += 1

    async def fate(self, channel: Channel, key: str) -> Fault | None:
        """Added latency, then the injected fault for this request of this message, if any."""
        request_no = 0
        if self.behaviour.faults_sends or self.behaviour.latency_ms > 0:
            # A retry of the same message draws again.
            request_no = self._request_nos[(channel, key)]
            self._request_nos[(channel, key)] += 1
        delay_s = latency_s(self.behaviour, key, request_no)
        if delay_s > 0:
            await asyncio.sleep(delay_s)
        return send_fault(self.behaviour, key, request_no)

    def accept(self, channel: Channel, message_id: str, phone: str) -> None:
        self.stats.channel(channel).accepted += 1
        self.sent_to[phone] += 1
        if message_id:
            self._accepted_ids[channel].add(message_id)

    async def hang(self, channel: Channel) -> web.Response:
        # Taken, never answered: the client's read timeout makes the send ambiguous.
        self.stats.channel(channel).timeouts += 1
        await self.release.wait()
        return web.Response(status=503)

    def refuse(
        self,
        channel: Channel,
        status: int,
        body: Mapping[str, Any],
        headers: Mapping[str, str] | None = None,
    ) -> web.Response:
        self.stats.channel(channel).rejected += 1
        return json_response(body, status=status, headers=headers)

    def retry_after(self) -> dict[str, str]:
        return {"Retry-After": str(self.behaviour.retry_after_s)}

    def step_delay_s(self, phone: str, *, delivers: bool) -> float:
        """Wait before a callback: slow numbers get their delivered one late."""
        if delivers and is_slow(phone):
            return self.behaviour.slow_delivery_ms / 1000
        return self._callback_delay_s

    def callback_url(self, path: str) -> str:
        return f"{self.callback_base_url}{path}" if self.callback_base_url else ""

    def submit(
        self,
        channel: Channel,
        *,
        url: str,
        key: str,
        steps: list[Step],
        encode: Encoder,
        group: str = "",
        track: Track | None = None,
        batched: bool = False,
    ) -> None:
        """Post steps to url in order (rearranged by Behaviour for this message key)."""
        if not url or not steps:
            return
        ordered = arrange(steps, callback_plan(self.behaviour, key))
        self._dispatcher.submit(
            Chain(
                channel=channel.value,
                url=url,
                steps=tuple(ordered),
                encode=encode,
                track=track or Track(),
                group=group,
                batched=batched,
            )
        )


def json_response(
    body: Mapping[str, Any], *, status: int = 200, headers: Mapping[str, str] | None = None
) -> web.Response:
    return web.Response(
        status=status, body=orjson.dumps(body), content_type="application/json", headers=headers
    )


async def read_json(request: web.Request) -> object:
    """The request's JSON body; None when it is not JSON."""
    try:
        return orjson.loads(await request.read())
    except orjson.JSONDecodeError:
        return None


def secret_matches(given: str, secret: Secret) -> bool:
    return bool(secret.value) and hmac.compare_digest(given.encode(), secret.value.encode())


def bearer_ok(request: web.Request, secret: Secret) -> bool:
    scheme, _, token = request.headers.get("Authorization", "").strip().partition(" ")
    return scheme.lower() == "bearer" and secret_matches(token.strip(), secret)
