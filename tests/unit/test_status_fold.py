"""The monotonic fold and the counter deltas, as tables."""

from __future__ import annotations

import itertools

import pytest

from herald.domain.status import (
    RANK,
    CounterDelta,
    RecipientState,
    RecipientStatus,
    StatusEvent,
    delta,
    fold,
    for_recipient,
    from_wire,
    message_id,
    parse_message_id,
    to_wire,
)
from herald.status import _fold_recipients

Q, S, D, R, F, K = (
    RecipientStatus.QUEUED,
    RecipientStatus.SENT,
    RecipientStatus.DELIVERED,
    RecipientStatus.READ,
    RecipientStatus.FAILED,
    RecipientStatus.SKIPPED,
)


def ev(status: RecipientStatus, *, accepted: bool = False, code: str | None = None) -> StatusEvent:
    return StatusEvent(
        campaign_id="c1",
        recipient_id=1,
        attempt=1,
        channel="sms",
        status=status,
        occurred_at_ms=0,
        source="test",
        accepted=accepted,
        error_code=code,
    )


QUEUED = RecipientState(status=Q, accepted=False)


@pytest.mark.parametrize(
    ("events", "status", "accepted"),
    [
        ([], Q, False),
        ([ev(S)], S, True),
        ([ev(S), ev(D)], D, True),
        ([ev(D), ev(S)], D, True),  # a late sent never overwrites delivered
        ([ev(D), ev(R), ev(S)], R, True),
        ([ev(F, code="21211")], F, False),  # rejected at send: never accepted
        ([ev(S), ev(F, accepted=True, code="30003")], F, True),
        ([ev(F, accepted=True), ev(D)], D, True),  # a late delivery wins over failure
        ([ev(K, code="invalid_phone")], K, False),
        ([ev(K), ev(F)], K, False),  # failed and skipped share a rank: first wins
        ([ev(D), ev(D), ev(D)], D, True),  # duplicates change nothing
    ],
)
def test_fold(events: list[StatusEvent], status: RecipientStatus, accepted: bool) -> None:
    after = fold(QUEUED, events)
    assert after.status is status
    assert after.accepted is accepted


def test_fold_is_order_independent() -> None:
    events = [ev(S), ev(D), ev(R), ev(F, accepted=True, code="30003")]
    results = {fold(QUEUED, list(p)) for p in itertools.permutations(events)}
    assert {r.status for r in results} == {R}


def test_fold_is_idempotent() -> None:
    once = fold(QUEUED, [ev(S), ev(F, accepted=True, code="30006")])
    assert fold(once, [ev(S), ev(F, accepted=True, code="30006")]) == once
    assert once.error_code == "30006"


def test_delivery_after_failure_clears_the_error() -> None:
    failed = fold(QUEUED, [ev(F, accepted=True, code="30003")])
    assert fold(failed, [ev(D)]).error_code is None


def st(status: RecipientStatus, accepted: bool) -> RecipientState:
    return RecipientState(status=status, accepted=accepted)


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        (st(Q, False), st(S, True), CounterDelta(sent=1)),
        (st(S, True), st(D, True), CounterDelta(delivered=1, final=1)),
        (st(Q, False), st(D, True), CounterDelta(sent=1, delivered=1, final=1)),
        (st(D, True), st(R, True), CounterDelta(read=1)),
        (st(S, True), st(F, True), CounterDelta(failed=1, final=1)),
        (st(Q, False), st(F, False), CounterDelta(failed=1, final=1)),
        (st(F, True), st(D, True), CounterDelta(failed=-1, delivered=1)),
        (st(Q, False), st(K, False), CounterDelta(skipped=1, final=1)),
        (st(D, True), st(D, True), CounterDelta()),
    ],
)
def test_delta(before: RecipientState, after: RecipientState, expected: CounterDelta) -> None:
    assert delta(before, after) == expected


def test_counters_stay_consistent_over_every_path() -> None:
    """Summing deltas along any event order gives counters that match the final state."""
    events = [ev(S), ev(D), ev(R), ev(F, accepted=True), ev(S)]
    for order in itertools.permutations(events):
        state, total = QUEUED, CounterDelta()
        for event in order:
            after = fold(state, [event])
            total += delta(state, after)
            state = after
        assert total == delta(QUEUED, state)
        assert total.final == 1
        assert total.delivered + total.failed + total.skipped == total.final


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("camp-1.7.1", True),
        ("a.b.c.12.3", True),
        ("camp.0.1", False),
        ("camp.1.0", False),
        ("camp.x.1", False),
        (".1.1", False),
        ("nothing", False),
    ],
)
def test_parse_message_id(value: str, ok: bool) -> None:
    if ok:
        campaign_id, recipient, attempt = parse_message_id(value)
        assert message_id(campaign_id, recipient, attempt) == value
    else:
        with pytest.raises(ValueError):
            parse_message_id(value)


def test_wire_round_trip() -> None:
    event = ev(F, accepted=True, code="30003")
    assert from_wire(to_wire(event)) == event


@pytest.mark.parametrize(
    "raw",
    [
        None,
        [],
        {"r": 1, "a": 1, "s": "sent"},
        {"c": "x", "r": 0, "a": 1, "s": "sent"},
        {"c": "x", "r": 1, "a": 1, "s": "exploded"},
        {"c": "x", "r": "1", "a": 1, "s": "sent"},
        {"c": "x", "r": 1, "a": 99, "s": "sent"},
        {"c": "x", "r": 1, "a": 1, "s": ["sent"]},
        {"c": "x", "r": 1, "a": 1, "s": 3},
        {"c": "x", "r": 1, "a": 1, "s": "SENT"},
    ],
)
def test_from_wire_rejects(raw: object) -> None:
    with pytest.raises(ValueError):
        from_wire(raw)


def chained(
    status: RecipientStatus, attempt: int, *, fallback: bool, accepted: bool = True
) -> StatusEvent:
    return ev(status, accepted=accepted, code="131026")._replace(
        attempt=attempt, fallback=fallback, channel=f"ch{attempt}"
    )


# A chain of three channels: a hand-over failure on attempts 1 and 2 leaves the recipient
# open (only its acceptance counts); on the last channel, or without fallback, it fails.
@pytest.mark.parametrize(
    ("events", "status", "accepted"),
    [
        ([chained(F, 1, fallback=True)], Q, True),
        ([chained(F, 1, fallback=True, accepted=False)], Q, False),
        ([chained(F, 2, fallback=True)], Q, True),
        ([chained(F, 3, fallback=True)], F, True),
        ([chained(F, 1, fallback=False)], F, True),
        ([chained(F, 1, fallback=True), chained(D, 2, fallback=False)], D, True),
        ([chained(S, 1, fallback=False), chained(F, 1, fallback=True)], S, True),
    ],
)
def test_fold_with_chain_length(
    events: list[StatusEvent], status: RecipientStatus, accepted: bool
) -> None:
    after = fold(QUEUED, events, 3)
    assert (after.status, after.accepted) == (status, accepted)
    assert after == fold(QUEUED, [for_recipient(e, 3) for e in events])


def test_fold_with_chain_length_is_for_recipient_on_every_permutation() -> None:
    events = [
        chained(S, 1, fallback=False),
        chained(F, 1, fallback=True),
        chained(F, 2, fallback=True),
        chained(D, 3, fallback=False),
        chained(F, 3, fallback=True),
        chained(K, 1, fallback=False),
    ]
    for length in (0, 1, 2, 3):
        for order in itertools.permutations(events, 4):
            mapped = [for_recipient(e, length) for e in order]
            assert fold(QUEUED, order, length) == fold(QUEUED, mapped)
            assert RANK[fold(QUEUED, order, length).status] >= RANK[Q]


def test_recipient_fold_sums_counters_per_campaign_and_per_variant() -> None:
    """Recipients 1 and 2 are variant 0, 3 is variant 1, 4 has none: the variant sums add up
    to the campaign's over the recipients that have a variant; duplicates count once."""
    by_recipient = {
        ("c1", rid): [e._replace(recipient_id=rid) for e in events]
        for rid, events in {
            1: [ev(S), ev(D), ev(D)],
            2: [ev(F, code="21211")],
            3: [ev(S), ev(S)],
            4: [ev(S), ev(R)],
        }.items()
    }
    current = dict.fromkeys(by_recipient, QUEUED)
    folded = _fold_recipients(
        by_recipient, current, {"c1": 1}, {("c1", 1): 0, ("c1", 2): 0, ("c1", 3): 1}
    )
    # sent, delivered, read, failed, skipped, cancelled, final
    assert folded.totals == {"c1": [3, 2, 1, 1, 0, 0, 3]}
    assert folded.variant_totals == {
        ("c1", 0): [1, 1, 0, 1, 0, 0, 2],
        ("c1", 1): [1, 0, 0, 0, 0, 0, 0],
    }
    assert _fold_recipients(by_recipient, current, {"c1": 1}, {}).variant_totals == {}
