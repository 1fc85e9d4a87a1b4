"""Fixtures of the fault suite: the scale it runs at and the ledger each scenario fills."""

from __future__ import annotations

import pytest

from herald.settings import Settings
from tests.faults import sizes
from tests.faults.ledger import LEDGER_KEY, Ledger


@pytest.fixture(scope="session")
def scale() -> sizes.Scale:
    return sizes.current()


@pytest.fixture
def ledger(request: pytest.FixtureRequest) -> Ledger:
    """The scenario is the test's docstring's first line (with its parameters, if any)."""
    node = request.node
    doc = (getattr(node, "function", None) and node.function.__doc__) or node.name
    scenario = doc.strip().splitlines()[0].rstrip(".")
    callspec = getattr(node, "callspec", None)
    if callspec is not None:
        scenario = f"{scenario} [{callspec.id}]"
    found = Ledger(scenario=scenario)
    node.stash[LEDGER_KEY] = found
    return found


@pytest.fixture
def fault_settings(settings: Settings) -> Settings:
    # A killed member's partitions move after the session timeout: keep it short here.
    return settings.with_overrides(kafka_session_timeout_ms=3_000)
