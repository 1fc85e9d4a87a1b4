"""Walks every migration guide's examples (docs/migration/*.md) against the API, in order, with
a fresh account and key per guide, so a guide cannot say what herald does not do.

An example is a fenced ```http block followed by its expected answer:

    ```http
    # as contact
    POST /v1/contacts
    Idempotency-Key: guide-1
    {"phone": "+14155550100", "first_name": "Ada"}
    ```
    → 201 {"data": {"first_name": "Ada"}}

- Inside the block, `# as NAME` keeps the answer's `data` as NAME; other `#` lines are
  comments. Then the request line (METHOD and path with any query), optional `Name: value`
  header lines, and an optional JSON body (the rest of the block).
- The first non-blank line after the block is `→ STATUS`, optionally followed by JSON that
  the whole answer must match: objects by the keys given (more keys may be present), lists
  element by element with the same length, anything else equal.
- `{NAME.path}` anywhere in a block or its expectation is a kept value: `{contact.id}`,
  `{page.0.id}` (a dotted path through objects and lists). `{today}` is the UTC date
  (2026-03-08) and `{next_week}` a UTC time seven days ahead (2026-03-15T09:00:00Z).
  Double braces (`{{first_name}}`, `{{1}}`) are message placeholders and stay as written.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from tests.integration.api_support import new_caller

GUIDES = Path(__file__).resolve().parents[2] / "docs" / "migration"
_BLOCK = re.compile(r"^```http\n(?P<request>.*?)^```\n(?P<after>.*?)(?=^```|\Z)", re.M | re.S)
_EXPECT = re.compile(r"^→ (?P<status>\d{3})(?:[ \t]+(?P<body>.+))?$")
_PLACEHOLDER = re.compile(r"(?<!\{)\{(?P<name>[a-z_]\w*)(?P<path>(?:\.\w+)*)\}(?!\})")
_HEADER = re.compile(r"^(?P<name>[A-Za-z][A-Za-z0-9-]*): (?P<value>.*)$")


@dataclass(frozen=True)
class Example:
    line: int
    keep_as: str | None
    method: str
    target: str
    headers: dict[str, str]
    body: str | None
    status: int
    expected: str | None


def parse(text: str) -> list[Example]:
    examples = []
    for match in _BLOCK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        keep_as, rest = None, []
        for raw in match["request"].splitlines():
            if raw.startswith("# as "):
                keep_as = raw.removeprefix("# as ").strip()
            elif not raw.startswith("#"):
                rest.append(raw)
        while rest and not rest[0].strip():
            rest.pop(0)
        assert rest, f"line {line}: an http block without a request line"
        method, target = rest.pop(0).split(maxsplit=1)
        headers = {}
        while rest and (header := _HEADER.match(rest[0])):
            headers[header["name"]] = header["value"]
            rest.pop(0)
        body = "\n".join(rest).strip() or None
        answer = next((s.strip() for s in match["after"].splitlines() if s.strip()), "")
        expect = _EXPECT.match(answer)
        assert expect, f"line {line}: the block must be followed by `→ STATUS`, not {answer!r}"
        examples.append(
            Example(
                line=line,
                keep_as=keep_as,
                method=method,
                target=target,
                headers=headers,
                body=body,
                status=int(expect["status"]),
                expected=expect["body"],
            )
        )
    return examples


def _substitute(text: str, kept: dict[str, Any]) -> str:
    now = datetime.now(UTC)
    builtins = {
        "today": now.date().isoformat(),
        "next_week": (now + timedelta(days=7)).strftime("%Y-%m-%dT09:00:00Z"),
    }

    def one(m: re.Match[str]) -> str:
        name, path = m["name"], m["path"]
        if not path and name in builtins:
            return builtins[name]
        assert name in kept, f"{{{name}{path}}} names no earlier `# as {name}`"
        value: Any = kept[name]
        for step in path.split(".")[1:]:
            value = value[int(step)] if isinstance(value, list) else value[step]
        return str(value)

    return _PLACEHOLDER.sub(one, text)


def _matches(expected: Any, actual: Any, where: str = "") -> list[str]:
    if isinstance(expected, dict):
        if not isinstance(actual, dict):
            return [f"{where or 'answer'}: expected an object, got {actual!r}"]
        problems = []
        for key, value in expected.items():
            if key not in actual:
                problems.append(f"{where}{key}: missing")
            else:
                problems += _matches(value, actual[key], f"{where}{key}.")
        return problems
    if isinstance(expected, list):
        if not isinstance(actual, list) or len(actual) != len(expected):
            return [f"{where or 'answer'}: expected {len(expected)} items, got {actual!r}"]
        return [p for i, e in enumerate(expected) for p in _matches(e, actual[i], f"{where}{i}.")]
    return [] if expected == actual else [f"{where.rstrip('.')}: {actual!r} != {expected!r}"]


def _guides() -> list[Path]:
    return sorted(GUIDES.glob("*.md"))


def test_every_guide_has_examples() -> None:
    assert {p.name for p in _guides()} >= {"orbit.md", "seed002.md", "dexatel.md", "vobiz.md"}
    for guide in _guides():
        assert parse(guide.read_text()), f"{guide.name} has no ```http example"


@pytest.mark.parametrize(
    ("name", "text"), [pytest.param(p.name, p.read_text(), id=p.stem) for p in _guides()]
)
async def test_guide_examples_run(
    name: str, text: str, http: httpx.AsyncClient, api_pool: asyncpg.Pool
) -> None:
    caller = await new_caller(http, api_pool)
    kept: dict[str, Any] = {}
    for ex in parse(text):
        where = f"{name}:{ex.line} {ex.method} {ex.target}"
        body = None if ex.body is None else json.loads(_substitute(ex.body, kept))
        headers = {"X-API-Key": caller.key}
        headers.update({k: _substitute(v, kept) for k, v in ex.headers.items()})
        response = await http.request(
            ex.method, _substitute(ex.target, kept), json=body, headers=headers
        )
        assert response.status_code == ex.status, f"{where}: {response.text}"
        answer = response.json() if response.content else None
        if ex.expected is not None:
            problems = _matches(json.loads(_substitute(ex.expected, kept)), answer)
            assert not problems, f"{where}: {problems} in {answer}"
        if ex.keep_as is not None:
            assert answer is not None, f"{where}: nothing to keep"
            kept[ex.keep_as] = answer["data"]
