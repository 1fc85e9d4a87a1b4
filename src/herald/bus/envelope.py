"""The status-events envelope: one record carries `{"v": 1, "events": [...]}`.

The items are status events in their compact wire form (domain/status.py to_wire) and, from
the ingress, channel identities learned from callbacks (domain/identities.py), which travel
on the same topic. Every producer of the topic builds its records here, and the status
consumer opens them here.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Final

from herald.bus import codec
from herald.domain.status import StatusEvent, to_wire

STATUS_VERSION: Final = 1


def status_value(events: Iterable[StatusEvent]) -> bytes:
    """One status-events record holding these events."""
    return status_items_value([to_wire(e) for e in events])


def status_items_value(items: list[Any]) -> bytes:
    """One status-events record holding items already in wire form."""
    return codec.encode({"v": STATUS_VERSION, "events": items})


def status_items(raw: bytes | None) -> list[Any]:
    """The wire-form items of a status-events record. Raises codec.DecodeError on what is
    not JSON, ValueError on JSON that is not an envelope."""
    decoded = codec.decode(raw)
    if not isinstance(decoded, dict) or not isinstance(decoded.get("events"), list):
        raise ValueError("status record must be an object with an events list")
    items: list[Any] = decoded["events"]
    return items
