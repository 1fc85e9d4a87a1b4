"""How big each fault scenario runs: FAULT_SCALE=small (the default, inside `make test`) or
FAULT_SCALE=large (`make faults`).

The variable is not named HERALD_*: tests/conftest.py strips every HERALD_* variable when it
is imported, which happens before any module here is.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Final

ENV_VAR: Final = "FAULT_SCALE"


@dataclass(frozen=True, kw_only=True)
class Scale:
    name: str
    recipients: int  # audience of an ordinary fault campaign
    storm_recipients: int  # audience under a provider storm (sends slow down a lot)
    expansion_audience: int  # audience the scheduler is killed while expanding
    outbox_rows: int  # campaign.confirmed rows the relay is killed while publishing
    outbox_campaigns: int  # distinct campaigns those rows name
    outage_s: float  # how long the broker stays cut off and PostgreSQL stays down
    poison_per_kind: int  # copies of each kind of poison record
    settle_timeout_s: float  # how long invariants wait for the pipeline to come to rest


SMALL: Final = Scale(
    name="small",
    recipients=300,
    storm_recipients=40,
    expansion_audience=6_000,
    outbox_rows=1_500,
    outbox_campaigns=12,
    outage_s=4.0,
    poison_per_kind=1,
    settle_timeout_s=120.0,
)
LARGE: Final = Scale(
    name="large",
    recipients=3_000,
    storm_recipients=500,
    expansion_audience=100_000,
    outbox_rows=15_000,
    outbox_campaigns=60,
    outage_s=15.0,
    poison_per_kind=5,
    settle_timeout_s=400.0,
)
SCALES: Final = {s.name: s for s in (SMALL, LARGE)}


def current() -> Scale:
    name = os.environ.get(ENV_VAR, SMALL.name).strip().lower() or SMALL.name
    try:
        return SCALES[name]
    except KeyError:
        raise ValueError(f"{ENV_VAR}={name!r}: one of {', '.join(SCALES)}") from None
