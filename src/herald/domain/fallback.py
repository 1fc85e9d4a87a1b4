"""Per-channel fallback steps: how long each channel of the chain waits, and what counts as
its success, before the next channel is tried (8x8's fallbackAfter and successStatus,
Telesign's fallback_time, Infobip's per-step validity period).

A step's `success` is the status that ends the chain on that channel:

- `accepted` and `sent`: the provider took the message. Herald's recipient state does not
  tell a provider's synchronous acceptance from a later `sent` callback (both are `sent`), so
  the two mean the same here: no window fallback from that step. Its window still closes a
  recipient no report reached (failed, as on the chain's last channel, a late delivery still
  wins), so every recipient ends final and the campaign completes.
- `delivered` (the default): the chain goes on when no delivery arrives within the window.
- `read` is refused (READ_REFUSED says why).

A channel without a step, or a step without `after_s`, waits the campaign's
`fallback_window_s`. The window sweeper applies the same rule in SQL (expired_windows over
`campaigns.fallback_policy`, migration 0015); `decide` is the rule in Python.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from herald.domain.channels import Channel


class Success(StrEnum):
    ACCEPTED = "accepted"
    SENT = "sent"
    DELIVERED = "delivered"


READ_REFUSED = (
    "read cannot be a success status: delivered is a final recipient state, counted in the "
    "campaign's delivered and final counters, and the fold never moves a recipient back from "
    "it; moving an unread recipient on to the next channel would make it count twice or "
    "un-count a delivery. Most channels (SMS, email) and many users (WhatsApp with read "
    "receipts off) never report reads, so an unread message cannot be told from an unreported "
    "read either. Use delivered"
)


class PolicyError(ValueError):
    """A bad fallback policy; `field` is the dotted path inside the event or request."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


@dataclass(frozen=True, kw_only=True)
class FallbackStep:
    channel: Channel
    after_s: int | None = None  # None: the campaign's fallback_window_s
    success: Success = Success.DELIVERED


@dataclass(frozen=True, kw_only=True)
class StepDecision:
    """What the window sweeper does with a channel's accepted attempt."""

    window_s: int
    success: Success

    @property
    def falls_back(self) -> bool:
        """Whether an expired window moves the recipient to the next channel (if any)."""
        return self.success is Success.DELIVERED


def decide(steps: Sequence[FallbackStep], channel: Channel, default_window_s: int) -> StepDecision:
    for step in steps:
        if step.channel is channel:
            window_s = default_window_s if step.after_s is None else step.after_s
            return StepDecision(window_s=window_s, success=step.success)
    return StepDecision(window_s=default_window_s, success=Success.DELIVERED)


def parse_steps(
    raw: object, channels: Sequence[Channel], *, max_after_s: int, field: str = "fallback"
) -> tuple[FallbackStep, ...]:
    """The `fallback` list of an event or request, checked against the chain's channels."""
    if raw is None:
        return ()
    if not isinstance(raw, list) or len(raw) > len(channels):
        raise PolicyError(field, f"must be a list of at most {len(channels)} objects")
    allowed = ", ".join(c.value for c in channels)
    steps: list[FallbackStep] = []
    for i, item in enumerate(raw):
        path = f"{field}.{i}"
        if not isinstance(item, Mapping):
            raise PolicyError(path, "must be an object")
        unknown = sorted(set(item) - {"channel", "after_s", "success"})
        if unknown:
            raise PolicyError(f"{path}.{unknown[0]}", "unknown field")
        name = item.get("channel")
        channel = next((c for c in channels if c.value == name), None)
        if channel is None:
            raise PolicyError(f"{path}.channel", f"must be a channel of the chain: {allowed}")
        if any(s.channel is channel for s in steps):
            raise PolicyError(f"{path}.channel", f"{channel.value} has a step already")
        after_s = item.get("after_s")
        if after_s is not None and (type(after_s) is not int or not 1 <= after_s <= max_after_s):
            raise PolicyError(f"{path}.after_s", f"must be an integer from 1 to {max_after_s}")
        success = item.get("success", Success.DELIVERED.value)
        if success == "read":
            raise PolicyError(f"{path}.success", READ_REFUSED)
        if success not in {s.value for s in Success}:
            raise PolicyError(
                f"{path}.success", "must be one of " + ", ".join(s.value for s in Success)
            )
        steps.append(FallbackStep(channel=channel, after_s=after_s, success=Success(success)))
    return tuple(steps)


def steps_to_wire(steps: Sequence[FallbackStep]) -> list[dict[str, object]]:
    wire: list[dict[str, object]] = []
    for step in steps:
        item: dict[str, object] = {"channel": step.channel.value, "success": step.success.value}
        if step.after_s is not None:
            item["after_s"] = step.after_s
        wire.append(item)
    return wire
