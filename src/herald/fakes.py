"""In-memory implementations of the delivery pass's ports (ports.py).

They keep the production adapters' contract (tests/integration/test_attempt_log_contract.py
runs one table of cases against MemoryAttemptLog and PgAttemptLog), so a delivery pass over
them behaves as it does over PostgreSQL, Kafka and real providers: for tests of the dispatch
core and for measuring its own CPU (load-tests/bench_send_loop.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from herald.domain.channels import Channel
from herald.domain.status import StatusEvent
from herald.ports import Held
from herald.providers.base import OutboundMessage, Provider, SendResult
from herald.store.accounts import AccountSettings
from herald.store.attempts import Recorded, Result

ACCEPTED = SendResult(accepted=True, provider_message_id="fake")


@dataclass(kw_only=True)
class _Row:
    channel: str
    provider: str
    outcome: str = "pending"
    provider_message_id: str | None = None
    error_code: str | None = None
    error_description: str | None = None
    sends: int = 1


class MemoryAttemptLog:
    """Attempt rows keyed as the table's two unique keys: (campaign, recipient, attempt)
    and (campaign, recipient, channel). Recipient rows are not kept: `following` records
    the channel a later attempt moved its recipient to, `held` the quiet-hours holds."""

    def __init__(self) -> None:
        self.rows: dict[tuple[str, int, int], _Row] = {}
        self._by_channel: dict[tuple[str, int, str], int] = {}
        self.following: dict[tuple[str, int], str] = {}
        self.held: dict[tuple[str, int], tuple[int, datetime]] = {}

    def _matching(
        self, campaign_id: str, recipient_ids: Iterable[int], channel: str
    ) -> list[tuple[int, int, _Row]]:
        found = []
        for rid in recipient_ids:
            attempt_no = self._by_channel.get((campaign_id, rid, channel))
            if attempt_no is not None:
                found.append((rid, attempt_no, self.rows[(campaign_id, rid, attempt_no)]))
        return found

    async def insert_pending(
        self,
        campaign_id: str,
        recipient_ids: Sequence[int],
        attempt_nos: Sequence[int],
        channel: str,
        provider: str,
    ) -> set[int]:
        created: set[int] = set()
        for rid, attempt_no in zip(recipient_ids, attempt_nos, strict=True):
            key = (campaign_id, rid, attempt_no)
            if key in self.rows or (campaign_id, rid, channel) in self._by_channel:
                continue
            self.rows[key] = _Row(channel=channel, provider=provider)
            self._by_channel[(campaign_id, rid, channel)] = attempt_no
            created.add(rid)
            if attempt_no > 1:
                self.following[(campaign_id, rid)] = channel
        return created

    async def claim_resend(
        self, campaign_id: str, recipient_ids: Sequence[int], channel: str
    ) -> set[int]:
        claimed: set[int] = set()
        for rid, _, row in self._matching(campaign_id, recipient_ids, channel):
            if row.outcome in ("pending", "ambiguous") and row.sends < 2:
                row.sends += 1
                claimed.add(rid)
        return claimed

    async def existing(
        self, campaign_id: str, recipient_ids: Sequence[int], channel: str
    ) -> list[Recorded]:
        return [
            Recorded(
                recipient_id=rid,
                attempt_no=attempt_no,
                outcome=row.outcome,
                provider_message_id=row.provider_message_id,
                error_code=row.error_code,
                error_description=row.error_description,
                sends=row.sends,
            )
            for rid, attempt_no, row in self._matching(campaign_id, recipient_ids, channel)
        ]

    async def record_results(self, campaign_id: str, results: Sequence[Result]) -> None:
        for result in results:
            row = self.rows.get((campaign_id, result.recipient_id, result.attempt_no))
            if row is None:
                continue
            row.outcome = result.outcome
            row.provider = result.provider
            row.provider_message_id = row.provider_message_id or result.provider_message_id
            row.error_code = result.error_code or row.error_code
            row.error_description = result.error_description or row.error_description

    async def forget_unsent(
        self, campaign_id: str, recipient_ids: Sequence[int], channel: str
    ) -> None:
        for rid, attempt_no, row in self._matching(campaign_id, recipient_ids, channel):
            if row.outcome == "pending" and row.sends == 1:
                del self.rows[(campaign_id, rid, attempt_no)]
                del self._by_channel[(campaign_id, rid, channel)]

    async def hold(self, campaign_id: str, held: Sequence[Held]) -> None:
        for rid, start, until in held:
            self.held[(campaign_id, rid)] = (start, until)


@dataclass(kw_only=True)
class MemoryAccounts:
    """Accounts' settings (`default` for any other account) and the campaigns paused for
    their error budget; a campaign is paused once."""

    settings_by_account: dict[str, AccountSettings] = field(default_factory=dict)
    default: AccountSettings = field(
        default_factory=lambda: AccountSettings(rate_per_s=None, quiet_hours=None)
    )
    paused: dict[str, str] = field(default_factory=dict)

    async def settings(self, account_id: str) -> AccountSettings:
        return self.settings_by_account.get(account_id, self.default)

    async def pause_for_budget(self, account_id: str, campaign_id: str, reason: str) -> bool:
        if campaign_id in self.paused:
            return False
        self.paused[campaign_id] = reason
        return True


Answer = SendResult | Callable[[OutboundMessage], SendResult]


class ScriptedProvider:
    """A provider that answers at once: always `answer`, or what `answer(message)` says.
    Every message it was given is kept in `sent` (off with keep=False, for benchmarks)."""

    def __init__(
        self, name: str, channel: Channel, answer: Answer = ACCEPTED, *, keep: bool = True
    ) -> None:
        self.name = name
        self.channel = channel
        self.answer = answer
        self.keep = keep
        self.sent: list[OutboundMessage] = []

    async def send(self, message: OutboundMessage) -> SendResult:
        if self.keep:
            self.sent.append(message)
        if isinstance(self.answer, SendResult):
            return self.answer
        return self.answer(message)

    async def close(self) -> None:
        return None


class MemoryTransport:
    """The same providers for every account; a campaign's choice names a provider by name."""

    def __init__(
        self,
        providers: Mapping[Channel, Sequence[Provider]],
        rates: Mapping[str, float] | None = None,
    ) -> None:
        self.providers = {channel: list(found) for channel, found in providers.items()}
        self.rates: dict[str, float] = dict(rates or {})

    async def for_account(self, account_id: str) -> dict[Channel, list[Provider]]:
        return self.providers

    def chosen(
        self, providers: Mapping[Channel, list[Provider]], choice: Mapping[Channel, str]
    ) -> dict[Channel, list[Provider]]:
        routed = dict(providers)
        for channel, name in choice.items():
            named = [p for p in providers.get(channel, ()) if p.name == name]
            if named:
                routed[channel] = named
        return routed


class MemorySink:
    """Status events in the order they were published, one list entry per publish."""

    def __init__(self) -> None:
        self.published: list[tuple[str, list[StatusEvent]]] = []

    async def publish(self, campaign_id: str, events: Sequence[StatusEvent]) -> None:
        if events:
            self.published.append((campaign_id, list(events)))

    @property
    def events(self) -> list[StatusEvent]:
        return [e for _, batch in self.published for e in batch]

    def last(self) -> dict[int, StatusEvent]:
        """Each recipient's last event."""
        return {e.recipient_id: e for e in self.events}
