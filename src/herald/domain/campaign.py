"""The campaign lifecycle: its statuses, the commands that move it, and the table that decides.

    draft --confirm--> sending            (no scheduled_at, or one already past)
    draft --schedule--> scheduled --start--> sending   (its time came, or "send now")
    scheduled --reschedule--> scheduled   (changed before it started)
    scheduled --delete--> cancelled       (hidden; a draft is deleted outright)
    sending --pause / pause_for_budget--> paused --resume--> sending
    sending --expand--> sending           (recipient rows written; none: it ends at once)
    scheduled, sending, paused --cancel--> cancelled
    sending, paused --complete--> completed, --fail--> failed   (every recipient final)

`apply` is the only place that says which command may move which status; the store writes
a status only through `move` of this table (store/campaigns.transition), and the
column's CHECK constraint (migration 0016) holds the same set of values. How a campaign
ends once every recipient is final is `ending`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Final


class CampaignStatus(StrEnum):
    DRAFT = "draft"
    SCHEDULED = "scheduled"
    SENDING = "sending"
    PAUSED = "paused"
    COMPLETED = "completed"
    CANCELLED = "cancelled"
    FAILED = "failed"

    @property
    def final(self) -> bool:
        return self in ENDED


class Command(StrEnum):
    CONFIRM = "confirm"  # a draft sent now
    SCHEDULE = "schedule"  # a draft confirmed for later
    START = "start"  # a scheduled campaign's time came, or it was sent now
    RESCHEDULE = "reschedule"
    EXPAND = "expand"
    PAUSE = "pause"  # by an operator
    PAUSE_FOR_BUDGET = "pause_for_budget"  # by the error budget
    RESUME = "resume"
    CANCEL = "cancel"
    COMPLETE = "complete"
    FAIL = "fail"
    DELETE = "delete"


S = CampaignStatus
ENDED: Final = frozenset({S.COMPLETED, S.CANCELLED, S.FAILED})
# Statuses in which something may still happen: counted as active, swept, reconciled.
LIVE: Final = (S.SCHEDULED, S.SENDING, S.PAUSED)
# The statuses of the pipeline's `campaigns` row (a draft lives only in campaign_drafts).
PIPELINE: Final = (S.SCHEDULED, S.SENDING, S.PAUSED, S.COMPLETED, S.CANCELLED, S.FAILED)

# (from, command) -> to. Anything absent is refused.
TABLE: Final[Mapping[tuple[CampaignStatus, Command], CampaignStatus]] = {
    (S.DRAFT, Command.CONFIRM): S.SENDING,
    (S.DRAFT, Command.SCHEDULE): S.SCHEDULED,
    (S.DRAFT, Command.DELETE): S.DRAFT,  # the draft row goes; no campaign is left
    (S.SCHEDULED, Command.START): S.SENDING,
    (S.SCHEDULED, Command.RESCHEDULE): S.SCHEDULED,
    (S.SCHEDULED, Command.DELETE): S.CANCELLED,
    (S.SCHEDULED, Command.CANCEL): S.CANCELLED,
    (S.SENDING, Command.EXPAND): S.SENDING,
    (S.SENDING, Command.PAUSE): S.PAUSED,
    (S.SENDING, Command.PAUSE_FOR_BUDGET): S.PAUSED,
    (S.SENDING, Command.CANCEL): S.CANCELLED,
    (S.SENDING, Command.COMPLETE): S.COMPLETED,
    (S.SENDING, Command.FAIL): S.FAILED,
    (S.PAUSED, Command.RESUME): S.SENDING,
    (S.PAUSED, Command.CANCEL): S.CANCELLED,
    # A paused campaign whose recipients are all final (the error budget tripped on the last
    # sends, or the last callbacks came in meanwhile) has nothing left to hold: it ends.
    (S.PAUSED, Command.COMPLETE): S.COMPLETED,
    (S.PAUSED, Command.FAIL): S.FAILED,
}


@dataclass(frozen=True)
class Transition:
    to: CampaignStatus


@dataclass(frozen=True)
class Refused:
    reason: str


def apply(status: CampaignStatus, command: Command) -> Transition | Refused:
    to = TABLE.get((status, command))
    if to is None:
        return Refused(f"cannot {_verb(command)} a campaign that is {status.value}")
    return Transition(to)


def allowed_from(command: Command) -> tuple[CampaignStatus, ...]:
    """The statuses `command` moves a campaign from: the transition query's guard."""
    return tuple(s for s in CampaignStatus if (s, command) in TABLE)


def move(command: Command) -> tuple[tuple[CampaignStatus, ...], CampaignStatus]:
    """What `command` does to a pipeline `campaigns` row: the statuses it moves one from and
    the status it leads to (the same from each of them). A draft is no pipeline row."""
    sources = tuple(s for s in allowed_from(command) if s in PIPELINE)
    targets = {TABLE[(s, command)] for s in sources}
    if len(targets) != 1:
        raise ValueError(f"{command.value} moves no pipeline campaign to one status")
    return sources, targets.pop()


def ending(*, total: int, final: int, accepted: int, failed: int) -> Command | None:
    """How a started campaign ends once every recipient is final (None: not yet): FAIL when no
    recipient was ever taken by a provider and some failed (every send refused, for a
    provider's or the account's reason), else COMPLETE. A campaign whose recipients were all
    skipped (opted out, no address) completes: nothing failed, each skip has its reason."""
    if final < total:
        return None
    if accepted == 0 and failed > 0:
        return Command.FAIL
    return Command.COMPLETE


def _verb(command: Command) -> str:
    return {
        Command.PAUSE_FOR_BUDGET: "pause",
        Command.CONFIRM: "send",
        Command.SCHEDULE: "send",
        Command.START: "send",
    }.get(command, command.value)
