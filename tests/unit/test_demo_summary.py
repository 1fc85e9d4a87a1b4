"""`herald demo`'s output: a progress bar, then aligned tables, and --json's last line."""

from __future__ import annotations

import io
from typing import Any

import orjson
import pytest

from herald import demo
from herald.store.campaigns import Counters

SUMMARY: dict[str, Any] = {
    "campaign_id": "c-1",
    "status": "completed",
    "sending_mode": "WHATSAPP_RCS_SMS",
    "recipients": 2000,
    "sent": 1998,
    "delivered": 1913,
    "read": 790,
    "failed": 80,
    "skipped": 7,
    "cancelled": 0,
    "by_channel": {
        "sms": {"sent": 362, "delivered": 282, "failed": 80},
        "whatsapp": {"sent": 1998, "delivered": 1196, "failed": 802},
        "rcs": {"sent": 802, "delivered": 435, "failed": 367},
    },
    "elapsed_s": 9.87,
    "messages_per_s": 202.6,
    "ok": True,
    "counters_match_recount": True,
}


def test_summary_is_tables_in_the_chains_order_not_dict_reprs() -> None:
    text = demo.format_summary(SUMMARY)
    assert "{" not in text and "'" not in text
    lines = text.splitlines()
    assert lines[0] == (
        "campaign c-1 (WHATSAPP_RCS_SMS): completed, 2,000 recipients in 9.9 s (203/s)"
    )
    channels = lines[2:6]
    assert channels == [
        "channel    sent  delivered  failed",
        "whatsapp  1,998      1,196     802",
        "rcs         802        435     367",
        "sms         362        282      80",
    ]
    states = lines[7:14]
    assert states[0] == "final state      recipients"
    assert states[1] == "delivered             1,913"
    assert states[2] == "  of which read         790"
    assert states[-1] == "total                 2,000"
    assert lines[-2:] == ["counters equal a recount of recipient rows: yes", "result: ok"]


def test_every_column_lines_up() -> None:
    for block in demo.format_summary(SUMMARY).split("\n\n")[1:3]:
        rows = block.splitlines()
        # Right-aligned numbers: every row of a table ends at the same column.
        assert len({len(row) for row in rows}) == 1, rows


def test_a_failed_run_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    demo._print_summary({**SUMMARY, "ok": False, "counters_match_recount": False}, False)
    out = capsys.readouterr().out
    assert "counters equal a recount of recipient rows: NO" in out
    assert out.rstrip().endswith("result: FAILED")


def test_json_ends_with_one_json_line(capsys: pytest.CaptureFixture[str]) -> None:
    demo._print_summary(dict(SUMMARY), True)
    captured = capsys.readouterr()
    last = captured.out.splitlines()[-1]
    assert captured.out.count("\n") == 1
    parsed = orjson.loads(last)
    assert parsed["by_channel"]["sms"]["sent"] == 362
    assert "ok" not in parsed and parsed["status"] == "completed"
    assert "result: ok" in captured.err  # the tables go to stderr then


def _counters(final: int) -> Counters:
    return Counters(
        campaign_id="c-1",
        status="sending",
        total=100,
        sent=final,
        delivered=final,
        read=0,
        failed=0,
        skipped=0,
        cancelled=0,
        final=final,
    )


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_bar_redraws_one_line_on_a_terminal() -> None:
    stream = _Terminal()
    bar = demo.ProgressBar(expected=100, stream=stream)
    bar.draw(_counters(0), 0.0)
    bar.draw(_counters(50), 1.0)
    bar.close()
    text = stream.getvalue()
    assert text.count("\n") == 1 and text.endswith("\n")
    assert "[###############...............] 50/100 final" in text


def test_the_bar_writes_a_line_every_few_seconds_elsewhere() -> None:
    stream = io.StringIO()
    bar = demo.ProgressBar(expected=100, stream=stream)
    for second in range(12):
        bar.draw(_counters(second * 8), float(second))
    bar.close()
    lines = stream.getvalue().splitlines()
    assert "\r" not in stream.getvalue()
    # At 0, 5 and 10 s, and the last state once more.
    assert [line.split("]")[1].split()[0] for line in lines] == [
        "0/100",
        "40/100",
        "80/100",
        "88/100",
    ]
