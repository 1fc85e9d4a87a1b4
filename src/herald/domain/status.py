"""Recipient states, status events and the monotonic fold.

A recipient moves queued → sent → delivered → read, or ends failed or skipped. Callbacks
arrive duplicated and out of order, so folding is monotonic by rank: a late `sent` never
overwrites `delivered`, and the same event twice changes nothing. A `delivered` that arrives
after `failed` wins (the provider did deliver), so the final state is the highest-ranked one.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import NamedTuple


class RecipientStatus(StrEnum):
    QUEUED = "queued"
    SENT = "sent"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"
    DELIVERED = "delivered"
    READ = "read"


# By value, without the cost of an Enum call per row.
STATUSES: dict[str, RecipientStatus] = {s.value: s for s in RecipientStatus}

RANK: dict[RecipientStatus, int] = {
    RecipientStatus.QUEUED: 0,
    RecipientStatus.SENT: 1,
    RecipientStatus.FAILED: 2,
    RecipientStatus.SKIPPED: 2,
    RecipientStatus.CANCELLED: 2,
    RecipientStatus.DELIVERED: 3,
    RecipientStatus.READ: 4,
}

_FAILED_RANK = RANK[RecipientStatus.FAILED]

FINAL: frozenset[RecipientStatus] = frozenset(
    {
        RecipientStatus.FAILED,
        RecipientStatus.SKIPPED,
        RecipientStatus.CANCELLED,
        RecipientStatus.DELIVERED,
        RecipientStatus.READ,
    }
)

# States that mean a provider accepted the message at some point.
ACCEPTED: frozenset[RecipientStatus] = frozenset(
    {RecipientStatus.SENT, RecipientStatus.DELIVERED, RecipientStatus.READ}
)


# StatusEvent and RecipientState are named tuples rather than frozen dataclasses: the status
# consumer makes one per event and per locked row, and a frozen dataclass costs several times
# more to build. Both are still immutable; build them with keywords.
class StatusEvent(NamedTuple):
    """One observation about one attempt: from a worker (sync outcome) or a provider callback."""

    campaign_id: str
    recipient_id: int
    attempt: int
    channel: str
    status: RecipientStatus
    occurred_at_ms: int
    source: str
    provider_message_id: str | None = None
    error_code: str | None = None
    error_description: str | None = None
    # True when a provider said it took the message (a send, or any later callback).
    accepted: bool = False
    # A failure that means "not reachable on this channel": the next channel may be tried.
    fallback: bool = False


class RecipientState(NamedTuple):
    status: RecipientStatus
    accepted: bool
    channel: str | None = None
    error_code: str | None = None
    error_description: str | None = None


# A named tuple's constructor is a Python function around tuple.__new__; called directly (the
# fields positional, all of them) it builds the same tuple about three times faster. For the
# constructions that run once per event and per locked row.
new_tuple = tuple.__new__

_ERROR_STATUSES = frozenset(
    {RecipientStatus.FAILED, RecipientStatus.SKIPPED, RecipientStatus.CANCELLED}
)


def fold(
    state: RecipientState, events: Iterable[StatusEvent], chain_length: int = 0
) -> RecipientState:
    """The state after applying events in any order; idempotent and order-independent.

    With chain_length, each event counts as for_recipient(event, chain_length) maps it (the
    recipient's view of a chain), without building the mapped events."""
    status, accepted, channel, error_code, error_description = state
    rank = RANK[status]
    failed = RecipientStatus.FAILED
    moved = False
    for event in events:
        incoming = event.status
        if (
            incoming is failed
            and chain_length
            and event.fallback
            and 1 <= event.attempt < chain_length
        ):
            incoming = RecipientStatus.QUEUED  # as for_recipient maps it
        if not accepted and (event.accepted or incoming in ACCEPTED):
            accepted = moved = True
        incoming_rank = RANK[incoming]
        # failed, skipped and cancelled share a rank; none replaces another.
        if incoming_rank <= rank:
            continue
        moved = True
        rank = incoming_rank
        status = incoming
        channel = event.channel or channel
        if incoming in _ERROR_STATUSES:
            error_code = event.error_code
            error_description = event.error_description
        elif incoming_rank > _FAILED_RANK:
            # Delivered after a failure report: the failure no longer describes the recipient.
            error_code = None
            error_description = None
    if not moved:
        return state  # the same object: nothing to write
    # Positional, in RecipientState's field order: the fold makes one per changed row.
    return new_tuple(RecipientState, (status, accepted, channel, error_code, error_description))


@dataclass(frozen=True, kw_only=True)
class CounterDelta:
    """Changes to a campaign's exact counters caused by transitions."""

    sent: int = 0
    delivered: int = 0
    read: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    final: int = 0

    def __add__(self, other: CounterDelta) -> CounterDelta:
        return CounterDelta(
            sent=self.sent + other.sent,
            delivered=self.delivered + other.delivered,
            read=self.read + other.read,
            failed=self.failed + other.failed,
            skipped=self.skipped + other.skipped,
            cancelled=self.cancelled + other.cancelled,
            final=self.final + other.final,
        )

    @property
    def is_zero(self) -> bool:
        return self == CounterDelta()

    @classmethod
    def of(cls, flags: Sequence[int]) -> CounterDelta:
        sent, delivered, read, failed, skipped, cancelled, final = flags
        return cls(
            sent=sent,
            delivered=delivered,
            read=read,
            failed=failed,
            skipped=skipped,
            cancelled=cancelled,
            final=final,
        )


Flags = tuple[int, int, int, int, int, int, int]


def _flags(status: RecipientStatus, accepted: bool) -> Flags:
    return (
        int(accepted),
        int(status in (RecipientStatus.DELIVERED, RecipientStatus.READ)),
        int(status is RecipientStatus.READ),
        int(status is RecipientStatus.FAILED),
        int(status is RecipientStatus.SKIPPED),
        int(status is RecipientStatus.CANCELLED),
        int(status in FINAL),
    )


# Every (status, accepted) pair's counter flags, computed once: the fold runs this per event.
_FLAGS: dict[tuple[RecipientStatus, bool], Flags] = {
    (status, accepted): _flags(status, accepted)
    for status in RecipientStatus
    for accepted in (False, True)
}


def delta_flags(before: RecipientState, after: RecipientState) -> Flags:
    """delta() as a tuple in CounterDelta's field order, for summing many cheaply."""
    b = _FLAGS[(before.status, before.accepted)]
    a = _FLAGS[(after.status, after.accepted)]
    return (
        a[0] - b[0],
        a[1] - b[1],
        a[2] - b[2],
        a[3] - b[3],
        a[4] - b[4],
        a[5] - b[5],
        a[6] - b[6],
    )


def delta(before: RecipientState, after: RecipientState) -> CounterDelta:
    """Counter changes for one recipient: cumulative milestones, final-state buckets.

    sent counts recipients a provider accepted; delivered includes read; failed, skipped and
    cancelled are final buckets. delivered + failed + skipped + cancelled == final, always.
    """
    return CounterDelta.of(delta_flags(before, after))


MAX_RECIPIENT_ID = 2**31 - 1  # recipients.id is a PostgreSQL integer
MAX_ATTEMPT = 32

# Error code of the failure the sweeper records when a channel stayed silent too long.
WINDOW_EXPIRED = "fallback_window"


def is_unresolved(event: StatusEvent) -> bool:
    """Names only the provider's message id; the folder looks the attempt up."""
    return not event.campaign_id


def for_recipient(event: StatusEvent, chain_length: int) -> StatusEvent:
    """The event as the recipient sees it: a failure that hands over to a later channel of
    the chain does not fail the recipient (it only records that a provider took the
    message, if one did)."""
    if (
        event.status is RecipientStatus.FAILED
        and event.fallback
        and 1 <= event.attempt < chain_length
    ):
        return event._replace(status=RecipientStatus.QUEUED)
    return event


def message_id(campaign_id: str, recipient_id: int, attempt: int) -> str:
    """Herald's stable id of one send attempt, passed to providers that echo it back."""
    return f"{campaign_id}.{recipient_id}.{attempt}"


def parse_message_id(value: str) -> tuple[str, int, int]:
    """Inverse of message_id; raises ValueError on anything else."""
    campaign_id, recipient, attempt = value.rsplit(".", 2)
    if not campaign_id:
        raise ValueError("empty campaign id")
    if not (recipient.isascii() and attempt.isascii()) or len(recipient) > 10:
        raise ValueError("recipient and attempt are decimal numbers")
    recipient_id, attempt_no = int(recipient), int(attempt)
    # The same bounds from_wire and the store hold: an id PostgreSQL's integer takes, an
    # attempt within the longest chain.
    if not 1 <= recipient_id <= MAX_RECIPIENT_ID or not 1 <= attempt_no <= MAX_ATTEMPT:
        raise ValueError("recipient or attempt out of range")
    return campaign_id, recipient_id, attempt_no


def to_wire(event: StatusEvent) -> dict[str, object]:
    """Compact JSON form on the status-events topic (one record carries a list of these)."""
    wire: dict[str, object] = {
        "c": event.campaign_id,
        "r": event.recipient_id,
        "a": event.attempt,
        "ch": event.channel,
        "s": event.status.value,
        "t": event.occurred_at_ms,
        "src": event.source,
    }
    if event.accepted:
        wire["acc"] = True
    if event.fallback:
        wire["fb"] = True
    if event.provider_message_id:
        wire["pm"] = event.provider_message_id
    if event.error_code:
        wire["e"] = event.error_code
    if event.error_description:
        wire["d"] = event.error_description
    return wire


def from_wire(raw: object) -> StatusEvent:
    """Raises ValueError naming what is wrong; the status consumer dead-letters the record."""
    if not isinstance(raw, dict):
        raise ValueError("status event must be an object")
    try:
        campaign_id = raw["c"]
        recipient_id = raw["r"]
        attempt = raw["a"]
        status_value = raw["s"]
    except KeyError as exc:
        raise ValueError(f"status event lacks {exc.args[0]!r}") from None
    # By value without an Enum call (the consumer parses every event); the same refusal.
    status = STATUSES.get(status_value) if isinstance(status_value, str) else None
    if status is None:
        status = RecipientStatus(status_value)
    if not isinstance(campaign_id, str):
        raise ValueError("c must be a campaign id")
    if not campaign_id:
        # Unresolved: a provider that echoes only its own message id (resolved by the folder).
        if not raw.get("pm") or recipient_id != 0 or attempt != 0:
            raise ValueError("an event without a campaign needs pm and r=a=0")
    elif type(recipient_id) is not int or not 1 <= recipient_id <= MAX_RECIPIENT_ID:
        raise ValueError("r must be a recipient id")
    if type(attempt) is not int or attempt < 0 or attempt > MAX_ATTEMPT:
        raise ValueError("a must be an attempt number")
    get = raw.get
    occurred = get("t", 0)
    pm, code, description = get("pm"), get("e"), get("d")
    # Positional, in StatusEvent's field order: the consumer builds one per event.
    return new_tuple(
        StatusEvent,
        (
            campaign_id,
            recipient_id,
            attempt,
            str(get("ch", "")),
            status,
            occurred if type(occurred) is int else 0,
            str(get("src", "")),
            None if pm is None else str(pm)[:500],
            None if code is None else str(code)[:500],
            None if description is None else str(description)[:500],
            get("acc") is True,
            get("fb") is True,
        ),
    )
