"""A local provider simulator: Twilio, WhatsApp Cloud API, RBM, Viber and SendGrid's Mail Send
API on one HTTP server.

Each endpoint speaks the real provider's wire format, so herald's adapters talk to it exactly
as they would to the provider. Answers come from the pure per-number outcomes in outcomes.py;
accepted messages get signed status callbacks, posted in order by a bounded worker pool so a
send handler never waits on them. Behaviour adds latency, faults, duplicate and out-of-order
callbacks, all decided from herald's message id so runs repeat. Counters let tests assert
exact totals; GET /_simulator/stats serves them.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Mapping
from types import TracebackType
from typing import Final

from aiohttp import web

from herald.domain.channels import Channel
from herald.settings import Secret
from herald.simulator import devkeys, rbm, sendgrid, twilio, viber, whatsapp
from herald.simulator.behaviour import Behaviour
from herald.simulator.callbacks import Dispatcher
from herald.simulator.callbacks import backoff_ms as backoff_ms
from herald.simulator.desk import Desk, json_response
from herald.simulator.smtp import load_private_key
from herald.simulator.stats import SimulatorStats as SimulatorStats
from herald.simulator.twilio import MESSAGES_PATH as MESSAGES_PATH
from herald.simulator.twilio import fault_code as fault_code
from herald.simulator.twilio import is_callback_url as is_callback_url
from herald.simulator.twilio import num_segments as num_segments
from herald.simulator.twilio import parse_basic_authorization as parse_basic_authorization
from herald.simulator.twilio import twilio_error as twilio_error

log = logging.getLogger(__name__)

# Development credentials: the simulator's defaults, to pair with herald's settings.
DEV_WHATSAPP_TOKEN: Final = "herald-dev-whatsapp-token"
DEV_WHATSAPP_APP_SECRET: Final = "herald-dev-whatsapp-app-secret"
DEV_RBM_TOKEN: Final = "herald-dev-rbm-token"
DEV_RBM_CLIENT_TOKEN: Final = "herald-dev-rbm-client-token"
DEV_VIBER_TOKEN: Final = "herald-dev-viber-token"

PATH_STATS: Final = "/_simulator/stats"
# [[unix time, destination], ...] of the SMS send requests that reached the Twilio endpoint.
PATH_ARRIVALS: Final = "/_simulator/arrivals"
# Where WhatsApp, RBM and Viber callbacks go, under callback_base_url (Twilio: StatusCallback).
CALLBACK_PATHS: Final[Mapping[Channel, str]] = {
    Channel.WHATSAPP: whatsapp.CALLBACK_PATH,
    Channel.RCS: rbm.CALLBACK_PATH,
    Channel.VIBER: viber.CALLBACK_PATH,
}

_DEFAULT_BEHAVIOUR: Final = Behaviour()
_DEV_WHATSAPP_TOKEN: Final = Secret(DEV_WHATSAPP_TOKEN)
_DEV_WHATSAPP_APP_SECRET: Final = Secret(DEV_WHATSAPP_APP_SECRET)
_DEV_RBM_TOKEN: Final = Secret(DEV_RBM_TOKEN)
_DEV_RBM_CLIENT_TOKEN: Final = Secret(DEV_RBM_CLIENT_TOKEN)
_DEV_VIBER_TOKEN: Final = Secret(DEV_VIBER_TOKEN)
_DEV_SENDGRID_KEY: Final = Secret(sendgrid.DEV_API_KEY)

_CALLBACK_TIMEOUT_S: Final = 10.0
# In-flight send handlers are short; don't let a stuck client hold up stop().
_SHUTDOWN_TIMEOUT_S: Final = 2.0


class Simulator:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        account_sid: str,
        auth_token: Secret,
        callback_delay_ms: int = 20,
        callback_concurrency: int = 64,
        callback_max_attempts: int = 8,
        drain_timeout_s: float = 5.0,
        whatsapp_token: Secret = _DEV_WHATSAPP_TOKEN,
        whatsapp_app_secret: Secret = _DEV_WHATSAPP_APP_SECRET,
        rbm_token: Secret = _DEV_RBM_TOKEN,
        rbm_client_token: Secret = _DEV_RBM_CLIENT_TOKEN,
        viber_token: Secret = _DEV_VIBER_TOKEN,
        sendgrid_api_key: Secret = _DEV_SENDGRID_KEY,
        email_private_key_pem: bytes | None = None,
        callback_base_url: str = "",
        behaviour: Behaviour = _DEFAULT_BEHAVIOUR,
        whatsapp_batch_max: int = 1,
        whatsapp_batch_window_ms: int = 10,
    ) -> None:
        if callback_concurrency < 1 or callback_max_attempts < 1:
            raise ValueError("callback_concurrency and callback_max_attempts must be >= 1")
        self.host = host
        self.port = port
        self.account_sid = account_sid
        self.behaviour = behaviour
        self._drain_timeout_s = drain_timeout_s
        self.stats = SimulatorStats()
        self._dispatcher = Dispatcher(
            stats=self.stats,
            concurrency=callback_concurrency,
            max_attempts=callback_max_attempts,
            batch_max=whatsapp_batch_max,
            batch_window_s=whatsapp_batch_window_ms / 1000,
        )
        self._desk = Desk(
            stats=self.stats,
            dispatcher=self._dispatcher,
            behaviour=behaviour,
            callback_delay_s=callback_delay_ms / 1000,
            callback_base_url=callback_base_url,
        )
        self._twilio = twilio.TwilioDesk(self._desk, account_sid=account_sid, auth_token=auth_token)
        self._whatsapp = whatsapp.WhatsAppDesk(
            self._desk, token=whatsapp_token, app_secret=whatsapp_app_secret
        )
        self._rbm = rbm.RbmDesk(self._desk, token=rbm_token, client_token=rbm_client_token)
        self._viber = viber.ViberDesk(self._desk, token=viber_token)
        # SendGrid events are signed with the same key as the SMTP server's (development's
        # fixed one unless given), so one HERALD_EMAIL_WEBHOOK_PUBLIC_KEY checks both.
        self._sendgrid = sendgrid.SendGridDesk(
            self._desk,
            api_key=sendgrid_api_key,
            private_key=load_private_key(email_private_key_pem or devkeys.private_key_pem()),
        )
        self._runner: web.AppRunner | None = None

    def __repr__(self) -> str:
        return f"Simulator(base_url={self.base_url!r}, behaviour={self.behaviour!r})"

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def callback_base_url(self) -> str:
        return self._desk.callback_base_url

    @property
    def sent_to(self) -> collections.Counter[str]:
        """Accepted sends per destination number (E.164), every channel together."""
        return self._desk.sent_to

    @property
    def viber_users(self) -> viber.ViberDesk:
        """The Viber bot's users: add_user / remove_user post the subscription callbacks."""
        return self._viber

    def fail_next(self, n: int, status: int = 500) -> None:
        """Answer the next n send requests (any channel) with `status` and an error body."""
        self._desk.faults.extend([status] * n)

    async def start(self) -> None:
        if self._runner is not None:
            raise RuntimeError("simulator already started")
        app = web.Application()
        app.router.add_post(twilio.MESSAGES_PATH, self._twilio.send)
        app.router.add_post(whatsapp.MESSAGES_PATH, self._whatsapp.send)
        app.add_routes(self._rbm.routes())
        app.router.add_post(viber.SEND_PATH, self._viber.send)
        app.router.add_post(sendgrid.MAIL_SEND_PATH, self._sendgrid.send)
        app.router.add_post(viber.USERS_PATH, self._viber.users_post)
        app.router.add_delete(viber.USER_PATH, self._viber.user_delete)
        app.router.add_get(PATH_STATS, self._stats)
        app.router.add_get(PATH_ARRIVALS, self._arrivals)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=_SHUTDOWN_TIMEOUT_S)
        await runner.setup()
        try:
            site = web.TCPSite(runner, self.host, self.port)
            await site.start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._desk.release.clear()
        self.port = int(runner.addresses[0][1])
        self._dispatcher.start(_CALLBACK_TIMEOUT_S)
        log.info("provider simulator listening on %s", self.base_url)

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is None:
            return
        # Sends left hanging by timeout_ratio answer now, so the server can close.
        self._desk.release.set()
        # Stop taking sends first (in-flight handlers finish and may queue callbacks).
        await runner.cleanup()
        if not await self.wait_idle(self._drain_timeout_s):
            log.warning(
                "simulator stopping with %d callback chains unfinished",
                self._dispatcher.open_chains,
            )
        await self._dispatcher.close()

    async def wait_idle(self, timeout_s: float) -> bool:
        """True once every queued callback was posted or dropped; False on timeout."""
        return await self._dispatcher.wait_idle(timeout_s)

    async def __aenter__(self) -> Simulator:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    async def _stats(self, request: web.Request) -> web.Response:
        return json_response(self.stats.as_json())

    async def _arrivals(self, request: web.Request) -> web.Response:
        return json_response({"arrivals": list(self._desk.arrivals)})
