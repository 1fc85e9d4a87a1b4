"""Work items on dispatch-batches: a batch (a recipient id range) or fallback work (recipients
and the chain position to resume at). Both are keyed by account, so one worker owns an
account's rate limits."""

from __future__ import annotations

from dataclasses import dataclass

MAX_FALLBACK_ITEMS = 5_000


@dataclass(frozen=True, kw_only=True)
class BatchItem:
    campaign_id: str
    account_id: str
    batch_no: int
    first_id: int
    last_id: int


@dataclass(frozen=True, kw_only=True)
class FallbackItem:
    campaign_id: str
    account_id: str
    # (recipient id, attempt number to start the chain walk at)
    recipients: tuple[tuple[int, int], ...]


def batch_to_wire(item: BatchItem) -> dict[str, object]:
    return {
        "v": 1,
        "kind": "batch",
        "campaign_id": item.campaign_id,
        "account_id": item.account_id,
        "batch_no": item.batch_no,
        "first_id": item.first_id,
        "last_id": item.last_id,
    }


def fallback_to_wire(item: FallbackItem) -> dict[str, object]:
    return {
        "v": 1,
        "kind": "fallback",
        "campaign_id": item.campaign_id,
        "account_id": item.account_id,
        "recipients": [list(pair) for pair in item.recipients],
    }


def parse_work(raw: object) -> BatchItem | FallbackItem:
    """Raises ValueError naming what is wrong; the worker dead-letters the record."""
    if not isinstance(raw, dict) or raw.get("v") != 1:
        raise ValueError("work item must be an object with v=1")
    kind = raw.get("kind", "batch")
    try:
        campaign_id = raw["campaign_id"]
        account_id = raw["account_id"]
        if not isinstance(campaign_id, str) or not isinstance(account_id, str):
            raise TypeError("ids must be strings")
        if kind == "batch":
            item = BatchItem(
                campaign_id=campaign_id,
                account_id=account_id,
                batch_no=_int(raw["batch_no"]),
                first_id=_int(raw["first_id"]),
                last_id=_int(raw["last_id"]),
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
                campaign_id=campaign_id, account_id=account_id, recipients=recipients
            )
    except (KeyError, TypeError, IndexError) as exc:
        raise ValueError(f"work item field missing or wrong: {exc}") from None
    raise ValueError(f"unknown work kind {kind!r}")


def _int(value: object) -> int:
    if type(value) is not int:
        raise TypeError(f"{value!r} is not an integer")
    return value
