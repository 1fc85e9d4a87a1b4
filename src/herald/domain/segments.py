"""Segment rules compiled to a parameterised SQL condition over `contacts` (alias c).

Rules are JSON: `{"country_code": "US", "tags": {"$contains": "vip"}}` holds when every
key holds. Operators: $eq $ne $in $nin $gt $gte $lt $lte $contains $exists, and $and $or
$not to combine. Fields are contact columns or custom attributes as `metadata.<key>`
(dots reach nested keys). Values only ever travel as $n parameters; the only text the
compiler writes is fixed: column names from a whitelist, operators, casts and $n.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import Any

ATTRIBUTE_PREFIX = "metadata."
MAX_DEPTH = 8
MAX_CONDITIONS = 100
MAX_LIST_VALUES = 1000
MAX_TEXT_LENGTH = 1000
MAX_PATH_PARTS = 8
_KEY_PART = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")


class Kind(Enum):
    TEXT = "text"
    TIME = "time"
    TAGS = "tags"


COLUMNS: Mapping[str, Kind] = {
    "phone": Kind.TEXT,
    "email": Kind.TEXT,
    "first_name": Kind.TEXT,
    "last_name": Kind.TEXT,
    "country_code": Kind.TEXT,
    "lifecycle_stage": Kind.TEXT,
    "created_at": Kind.TIME,
    "updated_at": Kind.TIME,
    "tags": Kind.TAGS,
}

_COMPARE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", "$contains", "$exists", *_COMPARE})


class RuleError(ValueError):
    """Rules that cannot be compiled; `path` is a dotted path into the rules object."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message


@dataclass(frozen=True, kw_only=True)
class Compiled:
    sql: str
    params: tuple[Any, ...]


def compile_rules(rules: object, *, first_param: int = 1, alias: str = "c") -> Compiled:
    """The condition `rules` describe, with placeholders numbered from `first_param`."""
    if not alias.isidentifier():
        raise ValueError("alias must be an identifier")
    builder = _Builder(first_param=first_param, alias=alias)
    text = builder.node(rules, "rules", depth=0)
    return Compiled(sql=text, params=tuple(builder.params))


def validate_rules(rules: object) -> None:
    """Raises RuleError when rules do not compile."""
    compile_rules(rules)


class _Builder:
    def __init__(self, *, first_param: int, alias: str) -> None:
        self.first = first_param
        self.alias = alias
        self.params: list[Any] = []
        self.conditions = 0

    def param(self, value: Any, cast: str) -> str:
        self.params.append(value)
        return f"${self.first + len(self.params) - 1}::{cast}"

    def node(self, rules: object, path: str, depth: int) -> str:
        if depth > MAX_DEPTH:
            raise RuleError(path, f"rules nest deeper than {MAX_DEPTH} levels")
        if not isinstance(rules, Mapping):
            raise RuleError(path, "must be an object")
        if not rules:
            return "TRUE"
        parts = []
        for key, value in rules.items():
            if not isinstance(key, str):
                raise RuleError(path, "keys must be strings")
            sub = f"{path}.{key}"
            if key in ("$and", "$or"):
                parts.append(self.combine(key, value, sub, depth))
            elif key == "$not":
                parts.append(f"NOT ({self.node(value, sub, depth + 1)})")
            elif key.startswith("$"):
                raise RuleError(sub, "unknown combinator; use $and, $or or $not")
            else:
                parts.append(self.field(key, value, sub))
        return parts[0] if len(parts) == 1 else "(" + " AND ".join(parts) + ")"

    def combine(self, key: str, value: object, path: str, depth: int) -> str:
        if not isinstance(value, list) or not value:
            raise RuleError(path, "must be a non-empty list of rule objects")
        joiner = " AND " if key == "$and" else " OR "
        inner = [self.node(item, f"{path}.{i}", depth + 1) for i, item in enumerate(value)]
        return "(" + joiner.join(inner) + ")"

    def field(self, name: str, value: object, path: str) -> str:
        self.conditions += 1
        if self.conditions > MAX_CONDITIONS:
            raise RuleError(path, f"more than {MAX_CONDITIONS} conditions")
        if name.startswith(ATTRIBUTE_PREFIX):
            condition: Callable[[str, object, str], str] = self._attribute(name, path)
        elif name in COLUMNS:
            condition = self._column(name)
        else:
            raise RuleError(
                path, "unknown field; use a contact field or metadata.<key> for custom data"
            )
        if isinstance(value, Mapping) and value and all(str(k).startswith("$") for k in value):
            ops = []
            for op, operand in value.items():
                if op not in OPERATORS:
                    raise RuleError(f"{path}.{op}", "unknown operator")
                ops.append(condition(op, operand, f"{path}.{op}"))
            return ops[0] if len(ops) == 1 else "(" + " AND ".join(ops) + ")"
        if isinstance(value, Mapping):
            raise RuleError(path, "an object here must hold only $operators")
        return condition("$eq", value, path)

    # Contact columns -----------------------------------------------------------------

    def _column(self, name: str) -> Callable[[str, object, str], str]:
        column = f"{self.alias}.{name}"
        kind = COLUMNS[name]

        def text(op: str, operand: object, path: str) -> str:
            if op == "$exists":
                return f"{column} IS {'NOT ' if _flag(operand, path) else ''}NULL"
            if op in ("$eq", "$ne") and operand is None:
                return f"{column} IS {'NOT ' if op == '$ne' else ''}NULL"
            if op == "$eq":
                return f"{column} = {self.param(_text(operand, path), 'text')}"
            if op == "$ne":
                return f"{column} IS DISTINCT FROM {self.param(_text(operand, path), 'text')}"
            if op in ("$in", "$nin"):
                values = [_text(v, f"{path}.{i}") for i, v in enumerate(_list(operand, path))]
                test = f"{column} = ANY ({self.param(values, 'text[]')})"
                return test if op == "$in" else f"NOT coalesce({test}, false)"
            if op == "$contains":
                pattern = _like(_text(operand, path))
                return f"{column} ILIKE {self.param(pattern, 'text')}"
            raise RuleError(path, f"{op} compares numbers and dates, not text")

        def time(op: str, operand: object, path: str) -> str:
            if op in _COMPARE:
                return f"{column} {_COMPARE[op]} {self.param(_when(operand, path), 'timestamptz')}"
            raise RuleError(path, f"{name} takes $gt, $gte, $lt or $lte with a date")

        def tags(op: str, operand: object, path: str) -> str:
            if op in ("$eq", "$contains"):
                wanted = _list(operand, path) if isinstance(operand, list) else [operand]
                values = [_text(v, path) for v in wanted]
                return f"{column} @> {self.param(values, 'text[]')}"
            if op == "$ne":
                return f"NOT ({column} @> {self.param([_text(operand, path)], 'text[]')})"
            if op in ("$in", "$nin"):
                values = [_text(v, f"{path}.{i}") for i, v in enumerate(_list(operand, path))]
                test = f"{column} && {self.param(values, 'text[]')}"
                return test if op == "$in" else f"NOT ({test})"
            if op == "$exists":
                return f"cardinality({column}) {'>' if _flag(operand, path) else '='} 0"
            raise RuleError(path, "tags take $contains, $in, $nin, $ne or $exists")

        return {Kind.TEXT: text, Kind.TIME: time, Kind.TAGS: tags}[kind]

    # Custom attributes ---------------------------------------------------------------

    def _attribute(self, name: str, path: str) -> Callable[[str, object, str], str]:
        parts = name[len(ATTRIBUTE_PREFIX) :].split(".")
        if len(parts) > MAX_PATH_PARTS or not all(_KEY_PART.match(p) for p in parts):
            raise RuleError(path, "metadata keys are letters, digits, _ and -, dot-separated")
        key_path = self.param(parts, "text[]")
        json_value = f"({self.alias}.attributes #> {key_path})"
        text_value = f"({self.alias}.attributes #>> {key_path})"

        def attribute(op: str, operand: object, path: str) -> str:
            if op == "$exists":
                return f"{json_value} IS {'NOT ' if _flag(operand, path) else ''}NULL"
            if op in ("$eq", "$ne") and operand is None:
                test = f"coalesce(jsonb_typeof({json_value}), 'null') = 'null'"
                return test if op == "$eq" else f"NOT ({test})"
            if op == "$eq":
                return f"{json_value} = {self.param(_json(operand, path), 'jsonb')}"
            if op == "$ne":
                return f"{json_value} IS DISTINCT FROM {self.param(_json(operand, path), 'jsonb')}"
            if op in ("$in", "$nin"):
                values = [_json(v, f"{path}.{i}") for i, v in enumerate(_list(operand, path))]
                test = f"{json_value} = ANY ({self.param(values, 'jsonb[]')})"
                return test if op == "$in" else f"NOT coalesce({test}, false)"
            if op == "$contains":
                item = _json(operand, path)
                element = self.param([item], "jsonb")
                if not isinstance(item, str):
                    return f"coalesce({json_value} @> {element}, false)"
                pattern = self.param(_like(item), "text")
                return (
                    f"(CASE jsonb_typeof({json_value}) WHEN 'array' THEN {json_value} @> "
                    f"{element} WHEN 'string' THEN {text_value} ILIKE {pattern} ELSE false END)"
                )
            # Ordering: numbers compare as numbers, anything else must be a date.
            if _is_number(operand):
                bound = self.param(Decimal(str(operand)), "numeric")
                return f"herald_try_numeric({text_value}) {_COMPARE[op]} {bound}"
            bound = self.param(_when(operand, path), "timestamptz")
            return f"herald_try_timestamptz({text_value}) {_COMPARE[op]} {bound}"

        return attribute


def _flag(value: object, path: str) -> bool:
    if not isinstance(value, bool):
        raise RuleError(path, "must be true or false")
    return value


def _text(value: object, path: str) -> str:
    if isinstance(value, bool) or not isinstance(value, str | int | float):
        raise RuleError(path, "must be a string")
    text = str(value)
    if len(text) > MAX_TEXT_LENGTH:
        raise RuleError(path, f"longer than {MAX_TEXT_LENGTH} characters")
    return text


def _list(value: object, path: str) -> list[Any]:
    if not isinstance(value, list) or not value:
        raise RuleError(path, "must be a non-empty list")
    if len(value) > MAX_LIST_VALUES:
        raise RuleError(path, f"more than {MAX_LIST_VALUES} values")
    return value


def _json(value: object, path: str) -> Any:
    if value is None or isinstance(value, bool | int | float):
        return value
    return _text(value, path)


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _when(value: object, path: str) -> datetime:
    if not isinstance(value, str):
        raise RuleError(path, "must be an ISO 8601 date or date-time")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        try:
            day = date.fromisoformat(value)
        except ValueError:
            raise RuleError(path, "must be an ISO 8601 date or date-time") from None
        parsed = datetime(day.year, day.month, day.day)
    parsed = parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    try:
        # A date whose UTC form falls outside datetime's range cannot reach PostgreSQL.
        parsed.astimezone(UTC)
    except OverflowError:
        raise RuleError(path, "is outside the supported date range") from None
    return parsed
