"""pytest plugin for `make faults`: ends the run with a table of scenario, invariant and result,
the evidence behind every failure and every injected fault, then a last line
`N passed, N failed` counting the table's rows.

Load it with `python -m pytest -p tests.faults.report` (`-m` puts the project root on
sys.path, which `-p` needs). A scenario that keeps a ledger (tests/faults/ledger.py) gives one
row per invariant; any other test gives one row for its assertions. A broken invariant of a
test marked xfail (a known herald bug) shows as `FAIL (xfail)` and counts as failed: the
invariant does not hold, whatever pytest's exit status says.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import pytest

from tests.faults.ledger import LEDGER_KEY

PASS = "pass"
FAIL = "FAIL"
FAIL_XFAIL = "FAIL (xfail)"


# Tests that keep no ledger and have no docstring.
_NAMES = {
    "test_sigkill_mid_campaign": "SIGKILL of a worker mid-campaign",
    "test_sigterm_drains_and_commits": "SIGTERM of a worker mid-batch",
}
_ASSERTIONS = "final once, counters == recount, repeats <= allowance (its asserts)"


@dataclass(frozen=True, kw_only=True)
class Row:
    scenario: str
    invariant: str
    result: str
    detail: str = ""


_rows: list[Row] = []


def _scenario(item: pytest.Item) -> str:
    ledger = item.stash.get(LEDGER_KEY, None)
    if ledger is not None:
        return ledger.scenario
    doc = getattr(getattr(item, "function", None), "__doc__", None)
    if doc:
        return str(doc).strip().splitlines()[0].rstrip(".")
    return _NAMES.get(item.name, item.name)


def _rows_for(item: pytest.Item, report: pytest.TestReport) -> list[Row]:
    scenario = _scenario(item)
    xfailed = hasattr(report, "wasxfail") and report.skipped
    broken = FAIL_XFAIL if xfailed else FAIL
    failed = report.failed or xfailed
    ledger = item.stash.get(LEDGER_KEY, None)
    checks = ledger.checks if ledger is not None else []
    rows = [
        Row(
            scenario=scenario,
            invariant=c.invariant,
            result=PASS if c.ok else broken,
            detail=c.detail,
        )
        for c in checks
    ]
    if not checks:
        rows.append(
            Row(
                scenario=scenario,
                invariant=_ASSERTIONS if ledger is None else "scenario ran to its end",
                result=broken if failed else PASS,
                detail=_first_line(report) if failed else "",
            )
        )
    elif failed and all(c.ok for c in checks):
        # It broke before or after its invariants: say so rather than show all passing.
        rows.append(
            Row(
                scenario=scenario,
                invariant="scenario ran to its end",
                result=broken,
                detail=_first_line(report),
            )
        )
    if report.failed and str(report.longrepr).startswith("[XPASS(strict)]"):
        rows.append(
            Row(scenario=scenario, invariant="known bug still reproduces (xfail)", result=FAIL)
        )
    return rows


def _first_line(report: pytest.TestReport) -> str:
    crash = getattr(report.longrepr, "reprcrash", None)
    text = crash.message if crash is not None else str(report.longrepr)
    return text.strip().splitlines()[0][:300] if text.strip() else ""


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call" or (report.when == "setup" and not report.passed):
        _rows.extend(_rows_for(item, report))
    elif report.when == "teardown" and report.failed:
        _rows.append(
            Row(
                scenario=_scenario(item),
                invariant="clean teardown",
                result=FAIL,
                detail=_first_line(report),
            )
        )
    return report


def table(rows: list[Row]) -> list[str]:
    headers = Row(scenario="scenario", invariant="invariant", result="result")
    columns = ("scenario", "invariant", "result")
    widths = [max(len(getattr(r, f)) for r in [headers, *rows]) for f in columns]

    def line(r: Row) -> str:
        cells = [r.scenario, r.invariant, r.result]
        return " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)).rstrip()

    rule = "-+-".join("-" * w for w in widths)
    return [line(headers), rule, *[line(r) for r in rows]]


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> Generator[None, None, None]:
    # Outermost wrapper: runs after the terminal reporter has printed its own summary.
    result = yield
    terminal = session.config.pluginmanager.get_plugin("terminalreporter")
    if terminal is None:
        return result
    passed = sum(r.result == PASS for r in _rows)
    terminal.write_line("")
    for text in table(_rows):
        terminal.write_line(text)
    evidence = [
        r for r in _rows if r.detail and (r.result != PASS or "fault landed" in r.invariant)
    ]
    if evidence:
        terminal.write_line("")
        for r in evidence:
            terminal.write_line(f"{r.scenario} / {r.invariant} [{r.result}]: {r.detail}")
    terminal.write_line(f"{passed} passed, {len(_rows) - passed} failed")
    return result
