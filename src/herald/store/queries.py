"""Named SQL blocks from queries/<aggregate>.sql (`-- name: <block>` headers)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cache
from importlib import resources

import orjson

_HEADER = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


@cache
def load(aggregate: str) -> dict[str, str]:
    text = (resources.files("herald.store") / "queries" / f"{aggregate}.sql").read_text()
    parts = _HEADER.split(text)
    blocks: dict[str, str] = {}
    # parts = [preamble, name1, body1, name2, body2, ...]
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        if name in blocks:
            raise RuntimeError(f"{aggregate}.sql names {name!r} twice")
        blocks[name] = body.strip()
    return blocks


def sql(aggregate: str, name: str) -> str:
    return load(aggregate)[name]


def json_rows(rows: Sequence[Sequence[object]]) -> str:
    """Many rows as one parameter: a JSON array of arrays, read in SQL with
    jsonb_array_elements. asyncpg encodes array parameters element by element in Python,
    which cost the status fold more than the fold itself."""
    return orjson.dumps(rows).decode()


def int_array(values: Iterable[int]) -> str:
    """Integers as one PostgreSQL array literal, for a text parameter cast to int[] in SQL
    (`$1::text::int[]`, or an element of a text[] parameter): a string join in C instead of
    asyncpg encoding the array element by element."""
    return "{" + ",".join(map(str, values)) + "}"
