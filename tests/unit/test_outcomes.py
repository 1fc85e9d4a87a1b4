"""Simulator outcomes are a pure function of the last two digits of the number; injected
misbehaviour is a pure function of the message id."""

from __future__ import annotations

import collections
from typing import Any

import pytest

from herald.domain.channels import Channel
from herald.simulator.behaviour import (
    Behaviour,
    CallbackPlan,
    Fault,
    arrange,
    callback_plan,
    draw,
    latency_s,
    send_fault,
)
from herald.simulator.outcomes import (
    ChannelOutcome,
    SmsOutcome,
    expected_accepted,
    expected_final,
    expected_path,
    is_slow,
    last_two_digits,
    rcs_outcome,
    reads,
    sms_outcome,
    viber_outcome,
    whatsapp_outcome,
)

DELIVERED = (("sent", None), ("delivered", None))
UNREACHABLE = (("sent", None), ("undelivered", "30003"))
LANDLINE = (("sent", None), ("undelivered", "30006"))


@pytest.mark.parametrize(
    ("suffix", "http_status", "error_code", "callbacks", "final"),
    [
        ("00", 201, None, DELIVERED, "delivered"),
        ("84", 201, None, DELIVERED, "delivered"),
        ("85", 201, None, UNREACHABLE, "failed"),
        ("89", 201, None, UNREACHABLE, "failed"),
        ("90", 201, None, LANDLINE, "failed"),
        ("94", 201, None, LANDLINE, "failed"),
        ("95", 400, 21211, (), "failed"),
        ("97", 400, 21211, (), "failed"),
        ("98", 400, 21610, (), "failed"),
        ("99", 400, 21610, (), "failed"),
    ],
)
def test_boundaries(
    suffix: str,
    http_status: int,
    error_code: int | None,
    callbacks: tuple[tuple[str, str | None], ...],
    final: str,
) -> None:
    phone = f"+155512345{suffix}"
    outcome = sms_outcome(phone)
    assert outcome == SmsOutcome(
        http_status=http_status, error_code=error_code, callbacks=callbacks
    )
    assert expected_final(phone) == final
    assert expected_accepted(phone) is (http_status == 201)
    assert outcome.accepted is (http_status == 201)


@pytest.mark.parametrize(
    ("phone", "expected"),
    [
        ("+15005550100", 0),
        ("+1 (500) 555-0198", 98),
        ("+4915112345607", 7),
        ("+1", 1),
        ("", 0),
    ],
)
def test_last_two_digits_ignores_punctuation(phone: str, expected: int) -> None:
    assert last_two_digits(phone) == expected


def test_every_suffix_has_one_outcome() -> None:
    finals = [expected_final(f"+1555000{n:04d}") for n in range(100)]
    assert finals.count("delivered") == 85
    assert finals.count("failed") == 15
    assert sum(expected_accepted(f"+1555000{n:04d}") for n in range(100)) == 95


# -- WhatsApp, RCS, Viber -----------------------------------------------------------------


def phone(suffix: int) -> str:
    return f"+15551234{suffix:02d}"


WA_READ = (("sent", None), ("delivered", None), ("read", None))
WA_DELIVERED = (("sent", None), ("delivered", None))
WA_NOT_USER = (("failed", "131026"),)


@pytest.mark.parametrize(
    ("suffix", "callbacks"),
    [
        (0, WA_READ),
        (5, WA_READ),
        (6, WA_NOT_USER),
        (9, WA_NOT_USER),
        (10, WA_DELIVERED),
        (15, WA_DELIVERED),
        (16, WA_NOT_USER),
        (24, WA_READ),
        (73, WA_DELIVERED),
        (98, WA_NOT_USER),
    ],
)
def test_whatsapp_outcome(suffix: int, callbacks: tuple[tuple[str, str | None], ...]) -> None:
    outcome = whatsapp_outcome(phone(suffix))
    # Meta takes every number; a non-user fails later.
    assert outcome == ChannelOutcome(
        accepted=True, http_status=200, error_code=None, callbacks=callbacks
    )


@pytest.mark.parametrize(
    ("suffix", "accepted", "callbacks"),
    [
        (0, True, (("DELIVERED", None), ("READ", None))),
        (3, True, (("DELIVERED", None), ("READ", None))),
        (4, False, ()),
        (5, False, ()),
        (6, True, (("DELIVERED", None), ("READ", None))),
        (17, True, (("DELIVERED", None),)),
        (18, False, ()),
        (99, False, ()),
    ],
)
def test_rcs_outcome(
    suffix: int, accepted: bool, callbacks: tuple[tuple[str, str | None], ...]
) -> None:
    outcome = rcs_outcome(phone(suffix))
    assert outcome.accepted is accepted
    assert outcome.callbacks == callbacks
    assert outcome.http_status == (200 if accepted else 404)
    assert outcome.error_code == (None if accepted else "NOT_FOUND")


@pytest.mark.parametrize(
    ("suffix", "accepted", "callbacks"),
    [
        (0, True, (("delivered", None), ("seen", None))),
        (4, True, (("delivered", None), ("seen", None))),
        (5, False, ()),
        (9, False, ()),
        (31, True, (("delivered", None),)),
        (77, False, ()),
    ],
)
def test_viber_outcome(
    suffix: int, accepted: bool, callbacks: tuple[tuple[str, str | None], ...]
) -> None:
    outcome = viber_outcome(phone(suffix))
    assert outcome.accepted is accepted
    assert outcome.callbacks == callbacks
    # Viber refuses inside an HTTP 200.
    assert outcome.http_status == 200
    assert outcome.error_code == (None if accepted else "5")


def test_unit_digit_sets() -> None:
    wa = {u for u in range(10) if whatsapp_outcome(phone(u)).callbacks != WA_NOT_USER}
    rcs = {u for u in range(10) if rcs_outcome(phone(u)).accepted}
    viber = {u for u in range(10) if viber_outcome(phone(u)).accepted}
    assert wa == {0, 1, 2, 3, 4, 5}
    assert rcs == {0, 1, 2, 3, 6, 7}
    assert viber == {0, 1, 2, 3, 4}


def test_reads_and_slow_follow_the_tens_digit() -> None:
    assert [t for t in range(10) if reads(phone(t * 10))] == [0, 2, 4, 6, 8]
    assert [d for d in range(100) if is_slow(phone(d))] == list(range(70, 80))


W, R, S, V = Channel.WHATSAPP, Channel.RCS, Channel.SMS, Channel.VIBER


@pytest.mark.parametrize(
    ("suffix", "channels", "path"),
    [
        (0, [W, R, S], [(W, "read")]),
        (10, [W, R, S], [(W, "delivered")]),
        (6, [W, R, S], [(W, "failed"), (R, "read")]),
        (17, [W, R, S], [(W, "failed"), (R, "delivered")]),
        (16, [W, R, S], [(W, "failed"), (R, "delivered")]),
        (8, [W, R, S], [(W, "failed"), (R, "unreachable"), (S, "delivered")]),
        (88, [W, R, S], [(W, "failed"), (R, "unreachable"), (S, "failed")]),
        (96, [W, R, S], [(W, "failed"), (R, "delivered")]),
        (98, [W, R, S], [(W, "failed"), (R, "unreachable"), (S, "rejected")]),
        (99, [R, S], [(R, "unreachable"), (S, "rejected")]),
        (95, [R, S], [(R, "unreachable"), (S, "rejected")]),
        (94, [W, S], [(W, "delivered")]),
        (93, [W, S], [(W, "delivered")]),
        (4, [R, S], [(R, "unreachable"), (S, "delivered")]),
        (5, [V], [(V, "unreachable")]),
        (4, [V, S], [(V, "read")]),
        (9, [W], [(W, "failed")]),
        (92, [S], [(S, "failed")]),
        (50, [W, R, S], [(W, "delivered")]),
        (1, [], []),
    ],
)
def test_expected_path(
    suffix: int, channels: list[Channel], path: list[tuple[Channel, str]]
) -> None:
    assert expected_path(phone(suffix), channels) == path


def test_expected_path_refuses_email() -> None:
    with pytest.raises(ValueError):
        expected_path(phone(1), [Channel.EMAIL])


def test_expected_path_over_all_suffixes() -> None:
    finals = collections.Counter(expected_path(phone(d), [W, R, S])[-1] for d in range(100))
    # WhatsApp users (u 0-5) 60, then RCS (u 6, 7) 20, then SMS (u 8, 9) 20: 88 and 89 are
    # undelivered, 98 and 99 opted out.
    assert finals[(W, "read")] + finals[(W, "delivered")] == 60
    assert finals[(R, "read")] + finals[(R, "delivered")] == 20
    assert finals[(S, "delivered")] == 16
    assert finals[(S, "failed")] == 2
    assert finals[(S, "rejected")] == 2


# -- Behaviour ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"error_5xx_ratio": -0.1},
        {"rate_429_ratio": 1.1},
        {"duplicate_callback_ratio": 2.0},
        {"out_of_order_ratio": -1.0},
        {"error_5xx_ratio": 0.6, "timeout_ratio": 0.6},
        {"latency_ms": -1},
        {"slow_delivery_ms": -1},
    ],
)
def test_behaviour_validates(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        Behaviour(**kwargs)


def test_draw_is_fixed_and_salted() -> None:
    assert draw("camp-1.1.1", "send") == draw("camp-1.1.1", "send")
    assert draw("camp-1.1.1", "send") != draw("camp-1.1.1", "order")
    assert all(0.0 <= draw(f"k{i}", "s") < 1.0 for i in range(1000))


def test_no_faults_by_default() -> None:
    quiet = Behaviour()
    assert not quiet.faults_sends
    assert all(send_fault(quiet, f"c.{i}.1") is None for i in range(1, 200))
    assert latency_s(quiet, "c.1.1") == 0.0
    assert callback_plan(quiet, "c.1.1") == CallbackPlan()


@pytest.mark.parametrize(
    ("kwargs", "fault"),
    [
        ({"error_5xx_ratio": 1.0}, Fault.SERVER_ERROR),
        ({"rate_429_ratio": 1.0}, Fault.RATE_LIMITED),
        ({"timeout_ratio": 1.0}, Fault.TIMEOUT),
    ],
)
def test_full_ratios_always_fault(kwargs: dict[str, Any], fault: Fault) -> None:
    behaviour = Behaviour(**kwargs)
    assert {send_fault(behaviour, f"c.{i}.1", n) for i in range(1, 100) for n in range(3)} == {
        fault
    }


def test_fault_ratios_are_shares_of_one_draw() -> None:
    behaviour = Behaviour(error_5xx_ratio=0.1, rate_429_ratio=0.2, timeout_ratio=0.3)
    counts = collections.Counter(send_fault(behaviour, f"c.{i}.1") for i in range(1, 20_001))
    assert abs(counts[Fault.SERVER_ERROR] / 20_000 - 0.1) < 0.01
    assert abs(counts[Fault.RATE_LIMITED] / 20_000 - 0.2) < 0.01
    assert abs(counts[Fault.TIMEOUT] / 20_000 - 0.3) < 0.01
    assert abs(counts[None] / 20_000 - 0.4) < 0.01


def test_a_retry_draws_again() -> None:
    behaviour = Behaviour(error_5xx_ratio=0.5)
    first = [send_fault(behaviour, f"c.{i}.1", 0) for i in range(1, 400)]
    second = [send_fault(behaviour, f"c.{i}.1", 1) for i in range(1, 400)]
    assert first != second
    assert first == [send_fault(behaviour, f"c.{i}.1", 0) for i in range(1, 400)]


def test_latency_has_the_configured_mean() -> None:
    behaviour = Behaviour(latency_ms=50)
    samples = [latency_s(behaviour, f"c.{i}.1") for i in range(1, 5001)]
    assert all(0 <= s < 0.1 for s in samples)
    assert abs(sum(samples) / len(samples) - 0.05) < 0.003


@pytest.mark.parametrize(
    ("plan", "expected"),
    [
        (CallbackPlan(), ["sent", "delivered", "read"]),
        (CallbackPlan(out_of_order=True), ["delivered", "read", "sent"]),
        (CallbackPlan(duplicate=True), ["sent", "delivered", "read", "read"]),
        (CallbackPlan(duplicate=True, out_of_order=True), ["delivered", "read", "sent", "sent"]),
    ],
)
def test_arrange(plan: CallbackPlan, expected: list[str]) -> None:
    assert arrange(["sent", "delivered", "read"], plan) == expected


def test_arrange_short_chains() -> None:
    full = CallbackPlan(duplicate=True, out_of_order=True)
    assert arrange(["failed"], full) == ["failed", "failed"]
    assert arrange([], full) == []


def test_callback_plan_ratios() -> None:
    behaviour = Behaviour(duplicate_callback_ratio=1.0, out_of_order_ratio=0.0)
    assert callback_plan(behaviour, "c.1.1") == CallbackPlan(duplicate=True, out_of_order=False)
    half = Behaviour(out_of_order_ratio=0.5)
    share = sum(callback_plan(half, f"c.{i}.1").out_of_order for i in range(1, 4001)) / 4000
    assert abs(share - 0.5) < 0.03
