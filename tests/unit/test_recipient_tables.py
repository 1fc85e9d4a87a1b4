"""The expansion's partition threshold without settings is the setting's default."""

from __future__ import annotations

from herald.settings import Settings
from herald.store import recipient_tables


def test_partition_threshold_default_is_the_settings_default() -> None:
    assert Settings().recipients_partition_from == recipient_tables.PARTITION_FROM
    # Retention is off unless an operator sets it: archiving takes rows out of the API.
    assert Settings().recipients_retention_days == 0
