"""Work items on dispatch-batches: a batch (a recipient id range) or fallback work (recipients
and the chain position to resume at).

Every item is on one of its account's sub-keys: sub-key `sub` of `shares`. A worker paces it
under the bucket (account, channel, sub) at the account's rate / shares, and each sub-key is
published to one partition (bus/dispatch.py), so one worker at a time owns each bucket.
Whichever workers own which sub-keys, an account's buckets add up to its rate, and its
campaign is sent by as many workers as hold its sub-keys' partitions.

Every item of every account is on a sub-key, a small campaign's too: sent whole under a
bucket at the full rate, a small campaign and a large one of the same account spread over the
sub-keys would together exceed the rate. The price: expansion cuts every batch_size range into
one batch per sub-key, and a campaign with fewer recipients than sub-keys runs at part of the
rate (a few milliseconds at any real rate).

Each bucket holds its share within the pacer's bound (ratelimit.py); to what jitter at a
one-second window's edges does to one pacer, the split adds at most one send per sub-key (4 by
default: 1 % at 400/s).

Items published before sub-keys carry neither field: the worker reads them as sub-key 0 of its
own HERALD_DISPATCH_SUBKEYS (sub-key 0's key and partition are the account's own, as before,
so such an item shares sub-key 0's bucket and the account still stays within its rate).
"""

from __future__ import annotations

from dataclasses import dataclass

MAX_FALLBACK_ITEMS = 5_000
# More sub-keys than any topic has partitions would only share partitions again.
MAX_SHARES = 256


@dataclass(frozen=True, kw_only=True)
class Share:
    """Which of its account's sub-keys an item is on, and how many sub-keys there are."""

    sub: int = 0
    shares: int = 1

    def __post_init__(self) -> None:
        if not 1 <= self.shares <= MAX_SHARES or not 0 <= self.sub < self.shares:
            raise ValueError(f"sub-key {self.sub} of {self.shares} is out of range")

    def rate_per_s(self, account_rate_per_s: float) -> float:
        """This sub-key's part of the account's rate: all sub-keys together make the rate."""
        return account_rate_per_s / self.shares


WHOLE = Share()


@dataclass(frozen=True, kw_only=True)
class BatchItem:
    campaign_id: str
    account_id: str
    batch_no: int
    first_id: int
    last_id: int
    share: Share = WHOLE


@dataclass(frozen=True, kw_only=True)
class FallbackItem:
    campaign_id: str
    account_id: str
    # (recipient id, attempt number to start the chain walk at)
    recipients: tuple[tuple[int, int], ...]
    share: Share = WHOLE


def shares_for(configured: int, partitions: int) -> int:
    """The sub-keys an account's work is spread over: as configured, but never more than the
    topic's partitions (two sub-keys on one partition are sent one after the other, each at
    its part of the rate, so the account would not reach its rate)."""
    return max(1, min(configured, partitions, MAX_SHARES))


@dataclass(frozen=True, kw_only=True)
class BatchRange:
    batch_no: int
    first_id: int
    last_id: int


def batch_ranges(total: int, batch_size: int, parts: int) -> list[BatchRange]:
    """The batches expansion makes (store/queries/campaigns.sql insert_batches, the same
    arithmetic): each batch_size range of recipient ids cut into `parts` consecutive batches
    of nearly equal size, numbered (range - 1) * parts + part + 1; a part that would be empty
    (a range smaller than parts) is left out, and its number with it."""
    found = []
    for g in range(-(-total // batch_size)):
        first = g * batch_size + 1
        size = min(batch_size, total - g * batch_size)
        for part in range(parts):
            lo, hi = size * part // parts, size * (part + 1) // parts
            if hi > lo:
                found.append(
                    BatchRange(
                        batch_no=g * parts + part + 1, first_id=first + lo, last_id=first + hi - 1
                    )
                )
    return found


def batch_share(batch_no: int, shares: int) -> Share:
    """Batches take the sub-keys in turn: expansion cuts each batch_size range into `shares`
    consecutive batches (store/campaigns.expand), so every sub-key gets an equal part."""
    return Share(sub=(batch_no - 1) % shares, shares=shares)


def recipient_share(recipient_id: int, shares: int) -> Share:
    """Fallback work is spread by recipient id, so a recipient's later channels always come
    through the same sub-key and a large fallback wave uses the account's whole rate."""
    return Share(sub=recipient_id % shares, shares=shares)


def subkey(account_id: str, share: Share) -> str:
    """The Kafka key of an account's sub-key: sub-key 0 is the account id itself, as every
    item was keyed before sub-keys existed."""
    return account_id if share.sub == 0 else f"{account_id}#{share.sub}"


def batch_to_wire(item: BatchItem) -> dict[str, object]:
    return {
        "v": 1,
        "kind": "batch",
        "campaign_id": item.campaign_id,
        "account_id": item.account_id,
        "batch_no": item.batch_no,
        "first_id": item.first_id,
        "last_id": item.last_id,
        "sub": item.share.sub,
        "shares": item.share.shares,
    }


def fallback_to_wire(item: FallbackItem) -> dict[str, object]:
    return {
        "v": 1,
        "kind": "fallback",
        "campaign_id": item.campaign_id,
        "account_id": item.account_id,
        "recipients": [list(pair) for pair in item.recipients],
        "sub": item.share.sub,
        "shares": item.share.shares,
    }


def parse_work(raw: object, *, default_shares: int = 1) -> BatchItem | FallbackItem:
    """Raises ValueError naming what is wrong; the worker dead-letters the record. An item
    without sub-key fields (published before them) is sub-key 0 of `default_shares`."""
    if not isinstance(raw, dict) or raw.get("v") != 1:
        raise ValueError("work item must be an object with v=1")
    kind = raw.get("kind", "batch")
    try:
        campaign_id = raw["campaign_id"]
        account_id = raw["account_id"]
        if not isinstance(campaign_id, str) or not isinstance(account_id, str):
            raise TypeError("ids must be strings")
        share = _share(raw, default_shares)
        if kind == "batch":
            item = BatchItem(
                campaign_id=campaign_id,
                account_id=account_id,
                batch_no=_int(raw["batch_no"]),
                first_id=_int(raw["first_id"]),
                last_id=_int(raw["last_id"]),
                share=share,
            )
            if not 1 <= item.first_id <= item.last_id:
                raise ValueError("batch id range is empty or negative")
            return item
        if kind == "fallback":
            pairs = raw["recipients"]
            if not isinstance(pairs, list) or not 0 < len(pairs) <= MAX_FALLBACK_ITEMS:
                raise ValueError("recipients must be a non-empty list")
            recipients = tuple((_int(p[0]), _int(p[1])) for p in pairs)
            if any(r < 1 or a < 1 for r, a in recipients):
                raise ValueError("recipient ids and attempts start at 1")
            return FallbackItem(
                campaign_id=campaign_id,
                account_id=account_id,
                recipients=recipients,
                share=share,
            )
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"work item field missing or wrong: {exc}") from None
    raise ValueError(f"unknown work kind {kind!r}")


def _share(raw: dict[str, object], default_shares: int) -> Share:
    if "sub" not in raw and "shares" not in raw:
        return Share(sub=0, shares=default_shares)
    return Share(sub=_int(raw["sub"]), shares=_int(raw["shares"]))


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value
