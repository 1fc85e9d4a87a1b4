"""The segment rule compiler: rules in, a parameterised condition and its values out."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from herald.domain.segments import RuleError, compile_rules

WHEN = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("rules", "sql", "params"),
    [
        ({}, "TRUE", ()),
        ({"country_code": "US"}, "c.country_code = $1::text", ("US",)),
        ({"email": None}, "c.email IS NULL", ()),
        ({"email": {"$ne": None}}, "c.email IS NOT NULL", ()),
        ({"phone": {"$exists": False}}, "c.phone IS NULL", ()),
        (
            {"country_code": "US", "lifecycle_stage": "lead"},
            "(c.country_code = $1::text AND c.lifecycle_stage = $2::text)",
            ("US", "lead"),
        ),
        (
            {"lifecycle_stage": {"$in": ["a", "b"]}},
            "c.lifecycle_stage = ANY ($1::text[])",
            (["a", "b"],),
        ),
        (
            {"lifecycle_stage": {"$nin": ["a"]}},
            "NOT coalesce(c.lifecycle_stage = ANY ($1::text[]), false)",
            (["a"],),
        ),
        ({"first_name": {"$contains": "an_"}}, "c.first_name ILIKE $1::text", ("%an\\_%",)),
        ({"tags": {"$contains": "vip"}}, "c.tags @> $1::text[]", (["vip"],)),
        ({"tags": "vip"}, "c.tags @> $1::text[]", (["vip"],)),
        ({"tags": {"$contains": ["a", "b"]}}, "c.tags @> $1::text[]", (["a", "b"],)),
        ({"tags": {"$in": ["a", "b"]}}, "c.tags && $1::text[]", (["a", "b"],)),
        ({"tags": {"$exists": True}}, "cardinality(c.tags) > 0", ()),
        ({"created_at": {"$gte": "2026-01-01"}}, "c.created_at >= $1::timestamptz", (WHEN,)),
        (
            {"created_at": {"$lt": "2026-01-01T00:00:00Z"}},
            "c.created_at < $1::timestamptz",
            (WHEN,),
        ),
        (
            {"metadata.plan": "gold"},
            "(c.attributes #> $1::text[]) = $2::jsonb",
            (["plan"], "gold"),
        ),
        (
            {"metadata.address.city": "Oslo"},
            "(c.attributes #> $1::text[]) = $2::jsonb",
            (["address", "city"], "Oslo"),
        ),
        (
            {"metadata.seats": {"$gt": 10}},
            "herald_try_numeric((c.attributes #>> $1::text[])) > $2::numeric",
            (["seats"], Decimal("10")),
        ),
        (
            {"metadata.renews": {"$lte": "2026-01-01"}},
            "herald_try_timestamptz((c.attributes #>> $1::text[])) <= $2::timestamptz",
            (["renews"], WHEN),
        ),
        (
            {"metadata.plan": {"$in": ["gold", 3, True]}},
            "(c.attributes #> $1::text[]) = ANY ($2::jsonb[])",
            (["plan"], ["gold", 3, True]),
        ),
        (
            {"$or": [{"country_code": "US"}, {"$not": {"tags": {"$contains": "x"}}}]},
            "(c.country_code = $1::text OR NOT (c.tags @> $2::text[]))",
            ("US", ["x"]),
        ),
        (
            {"$and": [{"country_code": "US"}, {"$or": [{"email": None}, {"phone": None}]}]},
            "(c.country_code = $1::text AND (c.email IS NULL OR c.phone IS NULL))",
            ("US",),
        ),
    ],
)
def test_compiles(rules: dict[str, Any], sql: str, params: tuple[Any, ...]) -> None:
    compiled = compile_rules(rules)
    assert compiled.sql == sql
    assert compiled.params == params


def test_placeholders_start_where_asked() -> None:
    compiled = compile_rules({"country_code": "US", "tags": "vip"}, first_param=5)
    assert compiled.sql == "(c.country_code = $5::text AND c.tags @> $6::text[])"


@pytest.mark.parametrize(
    "hostile",
    [
        "x' OR '1'='1",
        "'); DROP TABLE contacts; --",
        "$$ OR TRUE",
        "\\",
    ],
)
def test_values_never_reach_the_sql_text(hostile: str) -> None:
    compiled = compile_rules(
        {"first_name": hostile, "metadata.k": {"$in": [hostile]}, "tags": {"$contains": hostile}}
    )
    assert hostile not in compiled.sql
    assert compiled.sql.count("$") == len(compiled.params)


@pytest.mark.parametrize(
    ("rules", "path"),
    [
        ([], "rules"),
        ({"shoe_size": 9}, "rules.shoe_size"),
        ({"first_name; DROP TABLE x": "a"}, "rules.first_name; DROP TABLE x"),
        ({"metadata.a'b": 1}, "rules.metadata.a'b"),
        ({"metadata.": 1}, "rules.metadata."),
        ({"tags": {"$regex": "x"}}, "rules.tags.$regex"),
        ({"$xor": []}, "rules.$xor"),
        ({"$or": []}, "rules.$or"),
        ({"$and": "x"}, "rules.$and"),
        ({"country_code": {"$gt": "A"}}, "rules.country_code.$gt"),
        ({"created_at": "2026-01-01"}, "rules.created_at"),
        ({"created_at": {"$gt": "yesterday"}}, "rules.created_at.$gt"),
        ({"metadata.n": {"$gt": "soon"}}, "rules.metadata.n.$gt"),
        ({"country_code": {"nested": "x"}}, "rules.country_code"),
        ({"country_code": ["US"]}, "rules.country_code"),
        ({"phone": {"$exists": "yes"}}, "rules.phone.$exists"),
        ({"lifecycle_stage": {"$in": []}}, "rules.lifecycle_stage.$in"),
        ({"lifecycle_stage": {"$in": [{"a": 1}]}}, "rules.lifecycle_stage.$in.0"),
    ],
)
def test_refuses(rules: Any, path: str) -> None:
    with pytest.raises(RuleError) as caught:
        compile_rules(rules)
    assert caught.value.path == path


def test_depth_and_size_are_bounded() -> None:
    deep: dict[str, Any] = {"country_code": "US"}
    for _ in range(12):
        deep = {"$not": deep}
    with pytest.raises(RuleError, match="deeper"):
        compile_rules(deep)
    wide = {"$or": [{"country_code": str(i)} for i in range(101)]}
    with pytest.raises(RuleError, match="more than 100 conditions"):
        compile_rules(wide)
