"""One table of attempt-log steps run against the in-memory fake (herald.fakes) and the
PostgreSQL adapter (herald.ports): every answer and the rows left must be the same, so a
delivery pass tested over the fake behaves as it does over PostgreSQL."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import asyncpg
import pytest

from herald.fakes import MemoryAttemptLog
from herald.ports import AttemptLog, PgAttemptLog
from herald.store import db
from herald.store.attempts import Result


@pytest.fixture
async def pool(pg_url: str) -> AsyncIterator[asyncpg.Pool]:
    async with db.pool(pg_url, max_size=2) as opened:
        yield opened


def _result(rid: int, attempt_no: int, outcome: str, **fields: Any) -> Result:
    values: dict[str, Any] = {
        "provider": "wa",
        "provider_message_id": None,
        "error_code": None,
        "error_description": None,
    }
    values.update(fields)
    return Result(recipient_id=rid, attempt_no=attempt_no, outcome=outcome, **values)


Step = Callable[[AttemptLog, str], Awaitable[object]]

WA = "whatsapp"
STEPS: list[tuple[str, Step]] = [
    ("first attempts", lambda log, c: log.insert_pending(c, [1, 2, 3], [1, 1, 1], WA, "wa")),
    # 2 has attempt 1 already; 3 has a row on this channel already (as attempt 1).
    ("again and new", lambda log, c: log.insert_pending(c, [2, 3, 4], [1, 2, 1], WA, "wa")),
    ("a later attempt", lambda log, c: log.insert_pending(c, [1], [2], "rcs", "rbm")),
    (
        "answers, one without a row",
        lambda log, c: log.record_results(
            c,
            [
                _result(1, 1, "unreachable", provider_message_id="w1", error_code="131026"),
                _result(2, 1, "ambiguous", error_code="timeout", error_description="lost"),
                _result(9, 1, "accepted", provider_message_id="w9"),
            ],
        ),
    ),
    ("lost answers resent", lambda log, c: log.claim_resend(c, [1, 2, 3, 4], WA)),
    ("only once", lambda log, c: log.claim_resend(c, [1, 2, 3, 4], WA)),
    (
        "the resend's answer keeps the first error",
        lambda log, c: log.record_results(
            c, [_result(2, 1, "accepted", provider="wa-2", provider_message_id="w2")]
        ),
    ),
    (
        "a known message id is kept",
        lambda log, c: log.record_results(
            c, [_result(1, 1, "accepted", provider_message_id="other")]
        ),
    ),
    ("resent rows are not forgotten", lambda log, c: log.forget_unsent(c, [3, 4], WA)),
    ("a fresh row", lambda log, c: log.insert_pending(c, [5], [1], WA, "wa")),
    ("an unsent row is forgotten", lambda log, c: log.forget_unsent(c, [5], WA)),
    ("whatsapp rows", lambda log, c: log.existing(c, [1, 2, 3, 4, 5], WA)),
    ("rcs rows", lambda log, c: log.existing(c, [1, 2], "rcs")),
    ("another campaign is apart", lambda log, c: log.existing(c + "-other", [1, 2], WA)),
    ("its own first attempt", lambda log, c: log.insert_pending(c + "-other", [1], [1], WA, "wa")),
]


def _comparable(answer: object) -> object:
    if isinstance(answer, list):
        return sorted(answer, key=lambda r: (r.recipient_id, r.attempt_no))
    return answer


async def _run(log: AttemptLog, campaign_id: str) -> list[tuple[str, object]]:
    return [(name, _comparable(await step(log, campaign_id))) for name, step in STEPS]


async def test_the_fake_answers_as_postgresql_does(pool: asyncpg.Pool) -> None:
    campaign_id = str(uuid.uuid4())
    real = await _run(PgAttemptLog(pool), campaign_id)
    fake = await _run(MemoryAttemptLog(), campaign_id)
    for (name, want), (_, got) in zip(real, fake, strict=True):
        assert got == want, name
    # The table is not vacuous: it saw created rows, claimed resends and kept ids.
    answers = dict(real)
    assert answers["again and new"] == {4}
    assert answers["lost answers resent"] == {2, 3, 4}
    assert answers["only once"] == set()
    rows = {r.recipient_id: r for r in answers["whatsapp rows"]}  # type: ignore[attr-defined]
    assert sorted(rows) == [1, 2, 3, 4]
    assert (rows[1].provider_message_id, rows[2].error_code) == ("w1", "timeout")
