"""Wire encoding: JSON via orjson. Keys are UTF-8 strings."""

from __future__ import annotations

from typing import Any

import orjson


class DecodeError(ValueError):
    pass


def encode(value: Any) -> bytes:
    return orjson.dumps(value)


def decode(raw: bytes | None) -> Any:
    if raw is None:
        raise DecodeError("empty record")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise DecodeError(f"not JSON: {exc}") from None


def key(value: str) -> bytes:
    return value.encode()
