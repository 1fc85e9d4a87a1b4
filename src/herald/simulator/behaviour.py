"""Injected provider misbehaviour, decided by hashing herald's message id so runs repeat.

Every decision is a pure function of the Behaviour, the message id and (for send faults) how
many requests for that id came before: a retry draws again, so with a 10 % error ratio a
retried message fails again 10 % of the time, and a ratio of 1.0 always fails.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import TypeVar

T = TypeVar("T")

_SCALE = float(1 << 64)


class Fault(StrEnum):
    SERVER_ERROR = "server_error"  # a 5xx: nothing was taken
    RATE_LIMITED = "rate_limited"  # a 429 with Retry-After: nothing was taken
    TIMEOUT = "timeout"  # taken, then no answer: the client times out (ambiguous)


@dataclass(frozen=True, kw_only=True)
class Behaviour:
    latency_ms: float = 0.0  # mean added answer latency (uniform over 0..2x)
    error_5xx_ratio: float = 0.0  # share of send requests answered 5xx
    rate_429_ratio: float = 0.0  # share answered 429 with Retry-After
    timeout_ratio: float = 0.0  # share accepted and never answered
    duplicate_callback_ratio: float = 0.0  # share of messages whose last callback comes twice
    out_of_order_ratio: float = 0.0  # share whose final callback comes before `sent`
    slow_delivery_ms: int = 3000  # delay of the delivered callback for "slow" numbers
    retry_after_s: int = 1  # Retry-After on injected 429s

    def __post_init__(self) -> None:
        ratios = {
            "error_5xx_ratio": self.error_5xx_ratio,
            "rate_429_ratio": self.rate_429_ratio,
            "timeout_ratio": self.timeout_ratio,
            "duplicate_callback_ratio": self.duplicate_callback_ratio,
            "out_of_order_ratio": self.out_of_order_ratio,
        }
        for name, value in ratios.items():
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be between 0 and 1")
        # The three send faults split one draw, so each ratio is exactly its share.
        if self.error_5xx_ratio + self.rate_429_ratio + self.timeout_ratio > 1.0 + 1e-9:
            raise ValueError("error_5xx_ratio + rate_429_ratio + timeout_ratio must be <= 1")
        if self.latency_ms < 0 or self.slow_delivery_ms < 0 or self.retry_after_s < 0:
            raise ValueError("latency_ms, slow_delivery_ms and retry_after_s must be >= 0")

    @property
    def faults_sends(self) -> bool:
        return (self.error_5xx_ratio + self.rate_429_ratio + self.timeout_ratio) > 0


@dataclass(frozen=True, kw_only=True)
class CallbackPlan:
    duplicate: bool = False
    out_of_order: bool = False


def draw(key: str, salt: str) -> float:
    """A number in [0, 1) fixed by key and salt (different salts are independent draws)."""
    digest = hashlib.blake2b(f"{salt}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / _SCALE


def latency_s(behaviour: Behaviour, key: str, request_no: int = 0) -> float:
    if behaviour.latency_ms <= 0:
        return 0.0
    return behaviour.latency_ms * 2 * draw(f"{key}#{request_no}", "latency") / 1000


def send_fault(behaviour: Behaviour, key: str, request_no: int = 0) -> Fault | None:
    """The fault for the request_no-th (0-based) send request of message `key`, if any."""
    if not behaviour.faults_sends:
        return None
    value = draw(f"{key}#{request_no}", "send")
    bound = behaviour.error_5xx_ratio
    if value < bound:
        return Fault.SERVER_ERROR
    bound += behaviour.rate_429_ratio
    if value < bound:
        return Fault.RATE_LIMITED
    bound += behaviour.timeout_ratio
    if value < bound:
        return Fault.TIMEOUT
    return None


def callback_plan(behaviour: Behaviour, key: str) -> CallbackPlan:
    return CallbackPlan(
        duplicate=draw(key, "duplicate") < behaviour.duplicate_callback_ratio,
        out_of_order=draw(key, "order") < behaviour.out_of_order_ratio,
    )


def arrange(steps: Sequence[T], plan: CallbackPlan) -> list[T]:
    """Callbacks in posting order: the first one last when out of order, the last one twice."""
    ordered = list(steps)
    if plan.out_of_order and len(ordered) > 1:
        ordered.append(ordered.pop(0))
    if plan.duplicate and ordered:
        ordered.append(ordered[-1])
    return ordered
