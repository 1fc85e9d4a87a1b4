"""Herald's own exceptions under one root, so a caller can tell herald's refusals from bugs.

Driver errors (asyncpg, aiokafka) are translated once, where herald meets the driver: the
store in store/db.py, the broker in bus/.
"""

from __future__ import annotations


class HeraldError(Exception):
    """The root of every exception herald raises on purpose."""


class Unreachable(HeraldError, ConnectionError):
    """A dependency (PostgreSQL, Kafka) did not answer within the time herald waits for it.

    A ConnectionError too, so the CLI reports it as one line like any other connection
    failure instead of a traceback.
    """

    def __init__(self, dependency: str, message: str) -> None:
        super().__init__(message)
        self.dependency = dependency

    def __str__(self) -> str:
        # OSError's __str__ would show the args tuple.
        return str(self.args[0])
