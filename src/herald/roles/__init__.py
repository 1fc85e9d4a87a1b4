"""The processes herald runs, as a registry of roles imported lazily.

A role names what it needs (PostgreSQL, Kafka, a channel's send or verify credentials) and,
given what the process has opened, returns the parts it runs: consumers, loops and servers.
`herald run worker` imports only herald.roles.worker and what it needs, never the simulator,
so the production install (no extras) runs every production role.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Coroutine, Iterable
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio

from herald import preflight
from herald.errors import HeraldError
from herald.preflight import Use
from herald.settings import Settings

if TYPE_CHECKING:
    import asyncpg
    from aiokafka import AIOKafkaProducer

    from herald.bus.consumer import DeadLetter, Handler


class RoleError(HeraldError, ValueError):
    """An unknown role name, or a role whose module cannot be imported in this install."""


@dataclass(frozen=True, kw_only=True)
class RoleSpec:
    name: str
    module: str
    database: bool = False
    kafka: bool = False
    uses: frozenset[Use] = frozenset()
    # The extra that provides what the role imports beyond the base install.
    extra: str = ""


SPECS: Final = (
    RoleSpec(name="api", module="herald.roles.api", database=True),
    RoleSpec(name="scheduler", module="herald.roles.scheduler", database=True, kafka=True),
    RoleSpec(
        name="worker",
        module="herald.roles.worker",
        database=True,
        kafka=True,
        uses=frozenset({Use.SEND}),
    ),
    RoleSpec(name="status", module="herald.roles.status", database=True, kafka=True),
    RoleSpec(
        name="ingress", module="herald.roles.ingress", kafka=True, uses=frozenset({Use.VERIFY})
    ),
    RoleSpec(name="relay", module="herald.roles.relay", database=True, kafka=True),
    RoleSpec(name="simulator", module="herald.roles.simulator", extra="simulator"),
)
REGISTRY: Final = {spec.name: spec for spec in SPECS}
NAMES: Final = tuple(REGISTRY)


def parse(names: Iterable[str]) -> frozenset[str]:
    given = list(names)
    if "all" in given:
        return frozenset(NAMES)
    unknown = set(given) - set(NAMES)
    if unknown:
        raise RoleError(f"unknown role {sorted(unknown)[0]!r}; one of {', '.join(NAMES)}, all")
    return frozenset(given)


@dataclass(frozen=True, kw_only=True)
class Needs:
    database: bool
    kafka: bool
    uses: frozenset[Use]


def needs(roles: Iterable[str]) -> Needs:
    specs = [REGISTRY[name] for name in roles]
    return Needs(
        database=any(s.database for s in specs),
        kafka=any(s.kafka for s in specs),
        uses=frozenset().union(*(s.uses for s in specs)),
    )


def refusal(settings: Settings, roles: Iterable[str]) -> str | None:
    """One line naming, per role, every variable it needs and lacks; None when all can start."""
    problems = []
    for name in sorted(roles):
        spec = REGISTRY[name]
        checked = preflight.check(
            settings, uses=spec.uses, database=spec.database, kafka=spec.kafka
        )
        if checked.missing:
            problems.append(f"{name} needs {', '.join(checked.missing)}")
    if not problems:
        return None
    return (
        "cannot start in production: "
        + "; ".join(problems)
        + " (HERALD_PROFILE=development runs locally with the simulator)"
    )


@dataclass(kw_only=True)
class Context:
    """What the process opened for its roles; one pool, one producer, one stop event."""

    settings: Settings
    stop: anyio.Event
    stack: AsyncExitStack
    pool: asyncpg.Pool | None = None
    producer: AIOKafkaProducer | None = None
    dead_letter: DeadLetter | None = None

    def need_pool(self) -> asyncpg.Pool:
        assert self.pool is not None, "a role that declares database=True gets a pool"
        return self.pool

    def need_producer(self) -> AIOKafkaProducer:
        assert self.producer is not None, "a role that declares kafka=True gets a producer"
        return self.producer

    def need_dead_letter(self) -> DeadLetter:
        assert self.dead_letter is not None, "a role that declares kafka=True gets one"
        return self.dead_letter


@dataclass(frozen=True, kw_only=True)
class ConsumerPart:
    topic: str
    group: str
    handler: Handler
    max_records: int
    # Records of a partition are held until this many came or linger_s passed since the first:
    # a handler whose cost is per call more than per record (one transaction per fold) runs
    # fewer, fuller calls. 0 hands every poll's records over at once.
    min_records: int = 0
    linger_s: float = 0.0


Loop = Callable[[], Coroutine[Any, Any, None]]
# Runs until the stop event; sets the event it is given once it serves.
Service = Callable[[anyio.Event], Coroutine[Any, Any, None]]


@dataclass(kw_only=True)
class Parts:
    consumers: list[ConsumerPart] = field(default_factory=list)
    loops: list[Loop] = field(default_factory=list)
    services: list[Service] = field(default_factory=list)


class Role(Protocol):
    async def __call__(self, ctx: Context) -> Parts: ...


def load(name: str) -> Role:
    """The role's setup function, importing its module only now."""
    spec = REGISTRY[name]
    try:
        module = importlib.import_module(spec.module)
    except ModuleNotFoundError as exc:
        if not spec.extra or (exc.name or "").startswith("herald"):
            raise
        raise RoleError(
            f"role {name} needs the {spec.extra} extra ({exc.name} is not installed): "
            f"pip install 'herald[{spec.extra}]'"
        ) from exc
    setup: Role = module.setup
    return setup
