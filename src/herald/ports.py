"""The delivery pass's ports, and their production adapters.

A pass (delivery.py) decides; these carry its I/O:
- the attempt log: the attempt rows written before and after each provider call, and the
  recipients a pass holds for their quiet hours (PostgreSQL: store/attempts, store/recipients);
- the accounts: an account's rate and quiet hours, and the error-budget pause;
- the transport: which providers an account sends through (providers/directory.Directory);
- the status sink: where a pass's status events go (the status-events topic, bus/envelope).

fakes.py has an in-memory implementation of each, with its own tests, so the hot path can
be driven and measured without PostgreSQL, Kafka or HTTP (load-tests/bench_send_loop.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Protocol

import asyncpg

from herald.domain.campaign import Command
from herald.domain.channels import Channel
from herald.domain.status import StatusEvent
from herald.providers.base import Provider
from herald.store import accounts, attempts, campaigns, recipients
from herald.store.accounts import AccountSettings
from herald.store.attempts import Recorded, Result

# (recipient id, attempt to resume at, until when)
Held = tuple[int, int, datetime]


class AttemptLog(Protocol):
    """One row per (recipient, attempt): written `pending` before the provider call, its
    answer recorded after. A row that exists already means an earlier pass got that far."""

    async def insert_pending(
        self,
        campaign_id: str,
        recipient_ids: Sequence[int],
        attempt_nos: Sequence[int],
        channel: str,
        provider: str,
    ) -> set[int]:
        """The recipient ids whose row this call created (a recipient has one row per
        attempt and per channel)."""
        ...

    async def claim_resend(
        self, campaign_id: str, recipient_ids: Sequence[int], channel: str
    ) -> set[int]:
        """The recipients whose answer was lost (pending or ambiguous) and not yet sent
        twice: each is counted as sent once more and comes back, to be sent again."""
        ...

    async def existing(
        self, campaign_id: str, recipient_ids: Sequence[int], channel: str
    ) -> list[Recorded]: ...

    async def record_results(self, campaign_id: str, results: Sequence[Result]) -> None:
        """The answers; a provider message id already known is kept."""
        ...

    async def forget_unsent(
        self, campaign_id: str, recipient_ids: Sequence[int], channel: str
    ) -> None:
        """Rows written for sends a pause stopped before they started: no provider saw them."""
        ...

    async def hold(self, campaign_id: str, held: Sequence[Held]) -> None:
        """Recipients held until their quiet hours end."""
        ...


class Accounts(Protocol):
    async def settings(self, account_id: str) -> AccountSettings: ...

    async def pause_for_budget(self, account_id: str, campaign_id: str, reason: str) -> bool:
        """Pause a sending campaign whose error budget ran out; False when it was not
        sending (paused or ended already)."""
        ...


class Transport(Protocol):
    """Which providers an account sends through, per channel, in priority order."""

    @property
    def rates(self) -> Mapping[str, float]:
        """A provider account's own send rate, by its label, where one is set."""
        ...

    async def for_account(self, account_id: str) -> dict[Channel, list[Provider]]: ...

    def chosen(
        self, providers: Mapping[Channel, list[Provider]], choice: Mapping[Channel, str]
    ) -> dict[Channel, list[Provider]]:
        """The providers with a campaign's own choice of provider account per channel."""
        ...


class StatusSink(Protocol):
    async def publish(self, campaign_id: str, events: Sequence[StatusEvent]) -> None:
        """Every event is durably handed on when this returns."""
        ...


class PgAttemptLog:
    """The attempt log in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def insert_pending(
        self,
        campaign_id: str,
        recipient_ids: Sequence[int],
        attempt_nos: Sequence[int],
        channel: str,
        provider: str,
    ) -> set[int]:
        return await attempts.insert_pending(
            self.pool, campaign_id, recipient_ids, attempt_nos, channel, provider
        )

    async def claim_resend(
        self, campaign_id: str, recipient_ids: Sequence[int], channel: str
    ) -> set[int]:
        return await attempts.claim_resend(self.pool, campaign_id, recipient_ids, channel)

    async def existing(
        self, campaign_id: str, recipient_ids: Sequence[int], channel: str
    ) -> list[Recorded]:
        return await attempts.existing(self.pool, campaign_id, recipient_ids, channel)

    async def record_results(self, campaign_id: str, results: Sequence[Result]) -> None:
        await attempts.record_results(self.pool, campaign_id, results)

    async def forget_unsent(
        self, campaign_id: str, recipient_ids: Sequence[int], channel: str
    ) -> None:
        await attempts.forget_unsent(self.pool, campaign_id, recipient_ids, channel)

    async def hold(self, campaign_id: str, held: Sequence[Held]) -> None:
        await recipients.hold(self.pool, campaign_id, held)


class PgAccounts:
    """Accounts and campaign statuses in PostgreSQL."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def settings(self, account_id: str) -> AccountSettings:
        return await accounts.settings(self.pool, account_id)

    async def pause_for_budget(self, account_id: str, campaign_id: str, reason: str) -> bool:
        moved = await campaigns.transition(
            self.pool,
            Command.PAUSE_FOR_BUDGET,
            [campaign_id],
            account_id=account_id,
            pause_reason=reason,
        )
        return bool(moved)
