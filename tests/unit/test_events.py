"""campaign.confirmed v1 validation: every rejection names its field."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from herald.demo import campaign_event
from herald.domain.channels import Channel, SendingMode, chain
from herald.domain.events import (
    EventError,
    parse_campaign_confirmed,
    variant_of,
    variant_sizes,
    variant_starts,
)


def valid(mode: SendingMode = SendingMode.WHATSAPP_RCS_SMS) -> dict[str, Any]:
    return campaign_event(campaign_id="c-1", account_id="acct-1", mode=mode, tags=["vip"])


@pytest.mark.parametrize("mode", list(SendingMode))
def test_every_mode_parses(mode: SendingMode) -> None:
    event = parse_campaign_confirmed(valid(mode))
    assert event.sending_mode is mode
    assert event.channels == chain(mode)
    for channel in event.channels:
        assert event.content.for_channel(channel) is not None


def test_defaults() -> None:
    raw = valid(SendingMode.SMS)
    del raw["batch_size"]
    event = parse_campaign_confirmed(raw)
    assert event.batch_size == 100_000
    assert event.batch_delay_ms == 0
    assert event.scheduled_at is None


def _set(raw: dict[str, Any], path: str, value: object) -> dict[str, Any]:
    raw = copy.deepcopy(raw)
    node = raw
    parts = path.split(".")
    for part in parts[:-1]:
        node = node[part]
    if value is _DELETE:
        del node[parts[-1]]
    else:
        node[parts[-1]] = value
    return raw


_DELETE = object()


@pytest.mark.parametrize(
    ("path", "value", "field"),
    [
        ("type", "campaign.created", "type"),
        ("version", 2, "version"),
        ("version", "1", "version"),
        ("sending_mode", "PIGEON", "sending_mode"),
        ("campaign_id", _DELETE, "campaign_id"),
        ("campaign_id", "has space", "campaign_id"),
        ("account_id", "", "account_id"),
        ("content.sms", _DELETE, "content.sms"),
        ("content.sms.body", "", "content.sms.body"),
        ("content.whatsapp.template_name", _DELETE, "content.whatsapp.template_name"),
        ("content.whatsapp.components", "x", "content.whatsapp.components"),
        ("audience", {}, "audience"),
        ("audience", [], "audience"),
        ("audience.tags", "vip", "audience.tags"),
        ("batch_size", 0, "batch_size"),
        ("batch_size", 100_001, "batch_size"),
        ("batch_delay_ms", -1, "batch_delay_ms"),
        ("fallback_window_s", 1.5, "fallback_window_s"),
        ("scheduled_at", "tomorrow", "scheduled_at"),
        ("scheduled_at", "2026-12-01T10:00:00", "scheduled_at"),
        ("variable_mappings", {"1": 2}, "variable_mappings"),
        ("recipient_variables", {"c": "x"}, "recipient_variables.c"),
    ],
)
def test_rejections_name_the_field(path: str, value: object, field: str) -> None:
    with pytest.raises(EventError) as caught:
        parse_campaign_confirmed(_set(valid(), path, value))
    assert caught.value.field == field


@pytest.mark.parametrize("raw", [None, [], "event", 42])
def test_not_an_object(raw: object) -> None:
    with pytest.raises(EventError):
        parse_campaign_confirmed(raw)


def test_scheduled_at_with_zone() -> None:
    event = parse_campaign_confirmed(_set(valid(), "scheduled_at", "2026-12-01T10:00:00Z"))
    assert event.scheduled_at is not None
    assert event.scheduled_at.utcoffset() is not None


def test_channel_content_lookup() -> None:
    event = parse_campaign_confirmed(valid(SendingMode.SMS))
    assert event.content.for_channel(Channel.WHATSAPP) is None


def _variants(*weights: int) -> list[dict[str, Any]]:
    sms = valid(SendingMode.SMS)["content"]["sms"]
    return [
        {"name": f"v{i}", "weight": w, "content": {"sms": {**sms, "body": f"body {i}"}}}
        for i, w in enumerate(weights)
    ]


def test_variants_parse_with_their_own_content() -> None:
    event = parse_campaign_confirmed({**valid(SendingMode.SMS), "variants": _variants(60, 40)})
    assert [(v.name, v.weight) for v in event.variants] == [("v0", 60), ("v1", 40)]
    assert event.content_for(1).sms is not None and event.content_for(1).sms.body == "body 1"
    # No variant (or one the event lacks): the campaign's own content.
    assert event.content_for(None) is event.content
    assert event.content_for(7) is event.content
    assert variant_starts(event.variants) == [0, 60]
    assert variant_starts(()) is None


@pytest.mark.parametrize("total", [0, 1, 37, 99, 100, 101, 250, 1_234])
@pytest.mark.parametrize("starts", [[0, 60], [0, 50, 80], [0, 1, 2, 3, 99]])
def test_variant_sizes_are_the_assignment_counted(total: int, starts: list[int]) -> None:
    counted = [0] * len(starts)
    for recipient_id in range(1, total + 1):
        counted[variant_of(recipient_id, starts)] += 1
    assert variant_sizes(total, starts) == counted


@pytest.mark.parametrize(
    ("variants", "field"),
    [
        (_variants(100), "variants"),
        (_variants(20, 20, 20, 20, 10, 10), "variants"),
        (_variants(50, 40), "variants"),
        (_variants(0, 100), "variants.0.weight"),
        ([*_variants(50), {**_variants(50)[0]}], "variants.1.name"),
        ([{**_variants(50)[0], "weight": 50.0}, _variants(50)[0]], "variants.0.weight"),
        ([_variants(50)[0], {"name": "x", "weight": 50, "content": {}}], "variants.1.content.sms"),
        (
            [_variants(50)[0], {"name": "x", "weight": 50, "content": {"sms": {"body": ""}}}],
            "variants.1.content.sms.body",
        ),
        ([_variants(50)[0], "B"], "variants.1"),
        ({"A": 50}, "variants"),
    ],
)
def test_variant_rejections_name_the_field(variants: object, field: str) -> None:
    with pytest.raises(EventError) as caught:
        parse_campaign_confirmed({**valid(SendingMode.SMS), "variants": variants})
    assert caught.value.field == field


@pytest.mark.parametrize(
    ("weights", "per_100"),
    [((50, 50), [50, 50]), ((50, 30, 20), [50, 30, 20]), ((1, 98, 1), [1, 98, 1])],
)
def test_every_hundred_consecutive_recipients_split_exactly(
    weights: tuple[int, ...], per_100: list[int]
) -> None:
    starts = variant_starts(
        parse_campaign_confirmed(
            {**valid(SendingMode.SMS), "variants": _variants(*weights)}
        ).variants
    )
    assert starts is not None
    for first in (1, 101, 4_242):
        got = [variant_of(rid, starts) for rid in range(first, first + 100)]
        assert [got.count(i) for i in range(len(weights))] == per_100
    if min(weights) >= 20:
        # Interleaved, not in blocks: the first ten recipients are not all one variant.
        assert len({variant_of(rid, starts) for rid in range(1, 11)}) > 1
