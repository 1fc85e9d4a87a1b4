"""The campaign lifecycle's transition table and its ending rule (domain/campaign.py)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from herald.domain.campaign import (
    ENDED,
    PIPELINE,
    TABLE,
    CampaignStatus,
    Command,
    Refused,
    Transition,
    allowed_from,
    apply,
    ending,
    move,
)

S = CampaignStatus
C = Command

# Every allowed (from, command) -> to, written out: the table is the lifecycle's contract.
ALLOWED = [
    (S.DRAFT, C.CONFIRM, S.SENDING),
    (S.DRAFT, C.SCHEDULE, S.SCHEDULED),
    (S.DRAFT, C.DELETE, S.DRAFT),
    (S.SCHEDULED, C.START, S.SENDING),
    (S.SCHEDULED, C.RESCHEDULE, S.SCHEDULED),
    (S.SCHEDULED, C.DELETE, S.CANCELLED),
    (S.SCHEDULED, C.CANCEL, S.CANCELLED),
    (S.SENDING, C.EXPAND, S.SENDING),
    (S.SENDING, C.PAUSE, S.PAUSED),
    (S.SENDING, C.PAUSE_FOR_BUDGET, S.PAUSED),
    (S.SENDING, C.CANCEL, S.CANCELLED),
    (S.SENDING, C.COMPLETE, S.COMPLETED),
    (S.SENDING, C.FAIL, S.FAILED),
    (S.PAUSED, C.RESUME, S.SENDING),
    (S.PAUSED, C.CANCEL, S.CANCELLED),
    (S.PAUSED, C.COMPLETE, S.COMPLETED),
    (S.PAUSED, C.FAIL, S.FAILED),
]


@pytest.mark.parametrize(("status", "command", "to"), ALLOWED)
def test_allowed_transitions(status: S, command: C, to: S) -> None:
    assert apply(status, command) == Transition(to)


REFUSED = [
    (status, command)
    for status in CampaignStatus
    for command in Command
    if (status, command) not in {(a, b) for a, b, _ in ALLOWED}
]


@pytest.mark.parametrize(("status", "command"), REFUSED)
def test_everything_else_is_refused_with_a_reason(status: S, command: C) -> None:
    decided = apply(status, command)
    assert isinstance(decided, Refused)
    assert status.value in decided.reason


def test_the_table_is_exactly_the_written_list() -> None:
    assert {(a, b): c for a, b, c in ALLOWED} == dict(TABLE)


@pytest.mark.parametrize("status", sorted(ENDED))
def test_an_ended_campaign_never_moves(status: S) -> None:
    assert status.final
    assert all(isinstance(apply(status, c), Refused) for c in Command)


def test_messages_name_what_the_user_did() -> None:
    assert apply(S.SCHEDULED, C.PAUSE) == Refused("cannot pause a campaign that is scheduled")
    assert apply(S.COMPLETED, C.PAUSE_FOR_BUDGET) == Refused(
        "cannot pause a campaign that is completed"
    )
    assert apply(S.SENDING, C.CONFIRM) == Refused("cannot send a campaign that is sending")


@pytest.mark.parametrize(
    ("command", "sources", "to"),
    [
        (C.START, (S.SCHEDULED,), S.SENDING),
        (C.PAUSE, (S.SENDING,), S.PAUSED),
        (C.RESUME, (S.PAUSED,), S.SENDING),
        (C.CANCEL, (S.SCHEDULED, S.SENDING, S.PAUSED), S.CANCELLED),
        (C.DELETE, (S.SCHEDULED,), S.CANCELLED),  # the draft row is deleted, not moved
        (C.COMPLETE, (S.SENDING, S.PAUSED), S.COMPLETED),
        (C.FAIL, (S.SENDING, S.PAUSED), S.FAILED),
        (C.RESCHEDULE, (S.SCHEDULED,), S.SCHEDULED),
        (C.EXPAND, (S.SENDING,), S.SENDING),
    ],
)
def test_what_a_command_does_to_a_pipeline_row(command: C, sources: tuple[S, ...], to: S) -> None:
    assert move(command) == (sources, to)
    assert set(sources) <= set(allowed_from(command))


@pytest.mark.parametrize("command", [C.CONFIRM, C.SCHEDULE])
def test_commands_on_drafts_write_no_pipeline_row(command: C) -> None:
    with pytest.raises(ValueError):
        move(command)


def test_pipeline_statuses_are_every_status_but_draft() -> None:
    assert set(PIPELINE) == set(CampaignStatus) - {S.DRAFT}


@pytest.mark.parametrize(
    ("total", "final", "accepted", "failed", "expected"),
    [
        (150, 149, 0, 149, None),  # one recipient still open
        (150, 150, 0, 150, C.FAIL),  # every send refused
        (150, 150, 0, 20, C.FAIL),  # the rest skipped, none taken
        (150, 150, 1, 149, C.COMPLETE),  # one taken by a provider is enough
        (150, 150, 150, 0, C.COMPLETE),
        (10, 10, 0, 0, C.COMPLETE),  # all skipped: nothing failed
        (0, 0, 0, 0, C.COMPLETE),  # nobody in the audience
    ],
)
def test_ending(total: int, final: int, accepted: int, failed: int, expected: C | None) -> None:
    assert ending(total=total, final=final, accepted=accepted, failed=failed) is expected


def test_docs_api_lists_every_transition() -> None:
    """docs/api.md's lifecycle table and diagram say what the table does, no more, no less."""
    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()
    section = text[text.index("#### Lifecycle") :]
    documented: set[tuple[S, C]] = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 4 or not cells[0].startswith("`"):
            continue
        command = C(cells[1].replace(" ", "_"))
        for status in re.findall(r"`(\w+)`", cells[0]):
            documented.add((S(status), command))
    assert documented == set(TABLE)
    diagram = section[
        section.index("```mermaid") : section.index("```", section.index("stateDiagram"))
    ]
    arrows = {(S(a), S(b)) for a, b in re.findall(r"^\s*(\w+) --> (\w+):", diagram, re.MULTILINE)}
    assert arrows == {
        (a, to) for (a, _), to in TABLE.items() if a is not S.DRAFT or to is not S.DRAFT
    }


def test_only_the_campaigns_store_writes_a_campaign_row() -> None:
    """Every write of `campaigns` (and so of its status) is in queries/campaigns.sql, owned
    by store/campaigns.py, whose one status UPDATE is the `transition` block."""
    queries = Path(__file__).resolve().parents[2] / "src" / "herald" / "store" / "queries"
    writes = re.compile(r"\b(UPDATE|INSERT INTO)\s+campaigns\b(?!_)", re.IGNORECASE)
    for path in queries.glob("*.sql"):
        if path.name != "campaigns.sql":
            assert not writes.search(path.read_text()), path.name
    blocks = (queries / "campaigns.sql").read_text().split("-- name: ")
    sets_status = re.compile(r"UPDATE campaigns\b(?!_)[^;]*?\bSET\s+status\b", re.DOTALL)
    setting_status = [b.split()[0] for b in blocks if sets_status.search(b)]
    assert setting_status == ["transition"]
