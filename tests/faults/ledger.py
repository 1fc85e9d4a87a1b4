"""What a fault scenario found: one row per invariant, kept on the test item for the report.

Every invariant of a scenario is evaluated and recorded, even after one fails, so the report
shows them all; verify() then fails the test with every broken invariant and its evidence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest


@dataclass(frozen=True, kw_only=True)
class Check:
    invariant: str
    ok: bool
    detail: str = ""


@dataclass(kw_only=True)
class Ledger:
    scenario: str
    checks: list[Check] = field(default_factory=list)

    def record(self, invariant: str, ok: bool, detail: str = "") -> bool:
        self.checks.append(Check(invariant=invariant, ok=ok, detail=detail))
        return ok

    @property
    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def verify(self) -> None:
        import os

        if os.environ.get("LEDGER_DEBUG"):
            for c in self.checks:
                print("LEDGER", self.scenario, "|", c.invariant, "|", c.ok, "|", c.detail)
        broken = self.failures
        if broken:
            lines = [f"{c.invariant}: {c.detail}" for c in broken]
            raise AssertionError(f"{self.scenario}: invariants broken:\n  " + "\n  ".join(lines))


LEDGER_KEY = pytest.StashKey[Ledger]()
