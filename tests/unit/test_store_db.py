"""Where a PostgreSQL URL points, as log lines name it: never its credentials."""

from __future__ import annotations

import pytest

from herald.store import db


@pytest.mark.parametrize(
    ("url", "where"),
    [
        ("postgresql://herald:s3cret@db.internal:6432/herald", "db.internal:6432/herald"),
        ("postgres://herald:s3cret@db.internal/herald?sslmode=require", "db.internal:5432/herald"),
        ("postgresql://postgres:@/postgres?host=/tmp/pg/data", "/tmp/pg/data:5432/postgres"),
        ("postgresql://herald@[::1]:5433", "::1:5433"),
        ("postgresql:///herald", "localhost:5432/herald"),
        ("postgresql://herald:s3cret@db:notaport/herald", "(unreadable URL)"),
    ],
)
def test_where(url: str, where: str) -> None:
    assert db.where(url) == where
    assert "s3cret" not in db.where(url)
