"""Per-channel fallback steps: parsing and checks (event and API), and the window decision."""

from __future__ import annotations

from typing import Any

import pytest

from herald.api.campaign_spec import parse_spec
from herald.api.errors import ApiError
from herald.demo import campaign_event
from herald.domain.channels import Channel, SendingMode
from herald.domain.events import MAX_FALLBACK_WINDOW_S, EventError, parse_campaign_confirmed
from herald.domain.fallback import (
    FallbackStep,
    PolicyError,
    StepDecision,
    Success,
    decide,
    parse_steps,
    steps_to_wire,
)

W, R, S = Channel.WHATSAPP, Channel.RCS, Channel.SMS
CHAIN = (W, R, S)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, ()),
        ([], ()),
        (
            [{"channel": "whatsapp", "after_s": 30, "success": "delivered"}],
            (FallbackStep(channel=W, after_s=30, success=Success.DELIVERED),),
        ),
        ([{"channel": "sms"}], (FallbackStep(channel=S),)),
        (
            [{"channel": "rcs", "success": "accepted"}, {"channel": "sms", "success": "sent"}],
            (
                FallbackStep(channel=R, success=Success.ACCEPTED),
                FallbackStep(channel=S, success=Success.SENT),
            ),
        ),
        (
            [{"channel": "whatsapp", "after_s": MAX_FALLBACK_WINDOW_S}],
            (FallbackStep(channel=W, after_s=MAX_FALLBACK_WINDOW_S),),
        ),
    ],
)
def test_parse_steps(raw: object, expected: tuple[FallbackStep, ...]) -> None:
    steps = parse_steps(raw, CHAIN, max_after_s=MAX_FALLBACK_WINDOW_S)
    assert steps == expected
    assert parse_steps(steps_to_wire(steps), CHAIN, max_after_s=MAX_FALLBACK_WINDOW_S) == steps


@pytest.mark.parametrize(
    ("raw", "field", "words"),
    [
        ({"channel": "sms"}, "fallback", "list"),
        ([{"channel": "sms"}] * 4, "fallback", "at most 3"),
        (["sms"], "fallback.0", "object"),
        ([{"channel": "viber"}], "fallback.0.channel", "channel of the chain"),
        ([{"after_s": 5}], "fallback.0.channel", "channel of the chain"),
        (
            [{"channel": "sms"}, {"channel": "sms", "after_s": 5}],
            "fallback.1.channel",
            "has a step already",
        ),
        ([{"channel": "sms", "after_s": -1}], "fallback.0.after_s", "from 1 to"),
        ([{"channel": "sms", "after_s": 0}], "fallback.0.after_s", "from 1 to"),
        ([{"channel": "sms", "after_s": 10**9}], "fallback.0.after_s", "from 1 to"),
        ([{"channel": "sms", "after_s": "30"}], "fallback.0.after_s", "integer"),
        ([{"channel": "sms", "after_s": 1.5}], "fallback.0.after_s", "integer"),
        ([{"channel": "sms", "after_s": True}], "fallback.0.after_s", "integer"),
        ([{"channel": "sms", "success": "read"}], "fallback.0.success", "read cannot be"),
        ([{"channel": "sms", "success": "opened"}], "fallback.0.success", "one of"),
        ([{"channel": "sms", "retries": 2}], "fallback.0.retries", "unknown field"),
    ],
)
def test_bad_steps_name_the_field(raw: object, field: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        parse_steps(raw, CHAIN, max_after_s=MAX_FALLBACK_WINDOW_S)
    assert caught.value.field == field
    assert words in caught.value.message


STEPS = (
    FallbackStep(channel=W, after_s=30),
    FallbackStep(channel=R, success=Success.ACCEPTED),
    FallbackStep(channel=S, after_s=600, success=Success.SENT),
)


@pytest.mark.parametrize(
    ("steps", "channel", "window_s", "success", "falls_back"),
    [
        ((), W, 900, Success.DELIVERED, True),  # no policy: as before
        (STEPS, W, 30, Success.DELIVERED, True),
        (STEPS, R, 900, Success.ACCEPTED, False),  # no after_s: the campaign's window
        (STEPS, S, 600, Success.SENT, False),
        (STEPS[1:], W, 900, Success.DELIVERED, True),  # a channel without a step
    ],
)
def test_decide(
    steps: tuple[FallbackStep, ...],
    channel: Channel,
    window_s: int,
    success: Success,
    falls_back: bool,
) -> None:
    decision = decide(steps, channel, 900)
    assert decision == StepDecision(window_s=window_s, success=success)
    assert decision.falls_back is falls_back


def _event(fallback: object) -> dict[str, Any]:
    raw = campaign_event(
        campaign_id="c1", account_id="a", mode=SendingMode.WHATSAPP_SMS, tags=["vip"]
    )
    raw["fallback"] = fallback
    return raw


def test_event_carries_the_steps() -> None:
    event = parse_campaign_confirmed(_event([{"channel": "whatsapp", "after_s": 30}]))
    assert event.fallback == (FallbackStep(channel=W, after_s=30),)
    assert parse_campaign_confirmed(_event(None)).fallback == ()


@pytest.mark.parametrize(
    ("fallback", "field"),
    [
        ([{"channel": "rcs"}], "fallback.0.channel"),  # not in WHATSAPP_SMS
        ([{"channel": "sms"}, {"channel": "sms"}], "fallback.1.channel"),
        ([{"channel": "sms", "after_s": -5}], "fallback.0.after_s"),
        ([{"channel": "whatsapp", "success": "read"}], "fallback.0.success"),
    ],
)
def test_event_refuses_bad_steps(fallback: object, field: str) -> None:
    with pytest.raises(EventError) as caught:
        parse_campaign_confirmed(_event(fallback))
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("fallback", "field"),
    [
        ([{"channel": "rcs"}], "fallback.0.channel"),
        ([{"channel": "sms"}, {"channel": "sms"}], "fallback.1.channel"),
        ([{"channel": "sms", "after_s": -5}], "fallback.0.after_s"),
        ([{"channel": "sms", "after_s": MAX_FALLBACK_WINDOW_S + 1}], "fallback.0.after_s"),
        ([{"channel": "whatsapp", "success": "read"}], "fallback.0.success"),
        ([{"channel": "whatsapp", "success": "maybe"}], "fallback.0.success"),
    ],
)
def test_spec_refuses_bad_steps(fallback: object, field: str) -> None:
    with pytest.raises(ApiError) as caught:
        parse_spec({"name": "n", "sending_mode": "WHATSAPP_SMS", "fallback": fallback})
    assert caught.value.field == field


def test_spec_keeps_the_steps() -> None:
    spec = parse_spec(
        {
            "name": "n",
            "sending_mode": "WHATSAPP_SMS",
            "fallback": [{"channel": "sms", "success": "sent"}, {"channel": "whatsapp"}],
        }
    )
    assert spec.fallback_wire() == [
        {"channel": "sms", "success": "sent"},
        {"channel": "whatsapp", "success": "delivered"},
    ]
