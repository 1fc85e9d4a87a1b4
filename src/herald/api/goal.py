"""A campaign's goal: the recipients its audience resolves to now, without those every channel
of the chain would skip, and their cost per channel (calculate-goal, and seed 002's confirm,
which recomputes it to see that the price has not changed)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from herald.api.campaign_spec import CampaignIn, estimate_cost, message_units
from herald.api.config import ApiConfig
from herald.domain.channels import Channel, chain
from herald.domain.segments import compile_rules
from herald.store import drafts


@dataclass(frozen=True, kw_only=True)
class ChannelCost:
    channel: Channel
    first: int  # recipients whose first sendable channel this is
    reachable: int  # recipients this channel can reach, first or as a fallback
    units_per_message: int
    unit_price: Decimal
    cost: Decimal  # first × units × price
    cost_max: Decimal  # reachable × units × price


@dataclass(frozen=True, kw_only=True)
class Estimate:
    goal: drafts.Goal
    cost: Decimal  # every recipient sent once, on its first sendable channel
    cost_max: Decimal  # every recipient also falls back to every later channel it can reach
    channels: tuple[ChannelCost, ...]

    @property
    def skipped(self) -> int:
        return self.goal.audience - self.goal.recipients


def sendable(spec: CampaignIn, config: ApiConfig) -> list[Channel]:
    """The chain's channels this deployment sends (all of it when none: the send refuses it)."""
    channels = chain(spec.mode)
    return [c for c in channels if c in config.channels] or list(channels)


def _maybe_uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


async def estimate(
    conn: Any,
    account: str,
    spec: CampaignIn,
    templates: Mapping[str, Mapping[str, Any]],
    config: ApiConfig,
) -> Estimate:
    """The goal of a spec whose audience the caller has checked (campaigns.check_audience)."""
    segment = None
    if spec.segment_id:
        rules = await drafts.segment_rules(conn, account, uuid.UUID(spec.segment_id))
        segment = compile_rules(rules, first_param=8)
    channels = sendable(spec, config)
    goal = await drafts.goal(
        conn,
        account,
        contact_ids=[u for u in (_maybe_uuid(v) for v in spec.contact_ids) if u],
        list_ids=[uuid.UUID(v) for v in spec.audience_list_ids()],
        tags=spec.tags,
        destinations=spec.destinations,
        channels=[c.value for c in channels],
        address_channels=[c.value for c in chain(spec.mode)],
        failed_of=spec.failed_of,
        segment=segment,
    )
    costs = []
    for channel in channels:
        units = message_units(spec, templates, channel)
        price = config.unit_prices[channel]
        first, reachable = goal.first[channel.value], goal.reachable[channel.value]
        costs.append(
            ChannelCost(
                channel=channel,
                first=first,
                reachable=reachable,
                units_per_message=units,
                unit_price=price,
                cost=estimate_cost(first, units, price),
                cost_max=estimate_cost(reachable, units, price),
            )
        )
    return Estimate(
        goal=goal,
        cost=sum((c.cost for c in costs), Decimal(0)),
        cost_max=sum((c.cost_max for c in costs), Decimal(0)),
        channels=tuple(costs),
    )
