"""Log lines: one JSON object per line in production, text in development, libraries quiet."""

from __future__ import annotations

import contextvars
import io
import logging
import re
import sys
import threading
from collections.abc import Iterator
from typing import Any

import anyio
import anyio.lowlevel
import orjson
import pytest

from herald import logs
from herald.settings import Secret, Settings

RFC3339_UTC = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z")


@pytest.fixture(autouse=True)
def restore_logging(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """configure() changes process-wide state: put every piece of it back."""
    root = logging.getLogger()
    handlers = list(root.handlers)
    levels = {name: logging.getLogger(name).level for name in ("", "herald", *logs.LIBRARIES)}
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    yield
    root.handlers[:] = handlers
    for name, level in levels.items():
        logging.getLogger(name).setLevel(level)


def _configure(**settings: Any) -> io.StringIO:
    stream = io.StringIO()
    logs.configure(Settings(**settings), stream=stream)
    return stream


def _lines(stream: io.StringIO) -> list[dict[str, Any]]:
    text = stream.getvalue()
    assert text.endswith("\n")
    return [orjson.loads(line) for line in text.splitlines()]


def test_json_line_carries_the_fields_and_the_extra() -> None:
    stream = _configure(log_format="json")
    logging.getLogger("herald.scheduler").info(
        "campaign %s expanded",
        "c-1",
        extra={"event": "campaign_expanded", "campaign_id": "c-1", "account_id": "acme"},
    )
    (line,) = _lines(stream)
    assert RFC3339_UTC.fullmatch(line.pop("ts"))
    assert line == {
        "level": "info",
        "logger": "herald.scheduler",
        "message": "campaign c-1 expanded",
        "event": "campaign_expanded",
        "campaign_id": "c-1",
        "account_id": "acme",
    }


def test_a_traceback_and_a_multi_line_message_stay_on_one_line() -> None:
    stream = _configure(log_format="json")
    log = logging.getLogger("herald.bus.consumer")
    try:
        raise ValueError("bad record\nsecond line")
    except ValueError:
        log.exception("handler failed", extra={"event": "handler_failed"})
    log.warning("first\nsecond")
    assert stream.getvalue().count("\n") == 2
    failed, multi = _lines(stream)
    assert failed["event"] == "handler_failed" and failed["level"] == "error"
    assert failed["exc"].startswith("Traceback (most recent call last):")
    assert "ValueError: bad record\nsecond line" in failed["exc"]
    assert multi["message"] == "first\nsecond"


def test_an_uncaught_exception_is_one_line_too() -> None:
    stream = _configure(log_format="json")
    try:
        raise RuntimeError("boom")
    except RuntimeError as exc:
        sys.excepthook(type(exc), exc, exc.__traceback__)
    (line,) = _lines(stream)
    assert line["event"] == "crashed" and line["level"] == "critical"
    assert "RuntimeError: boom" in line["exc"]


def test_role_and_bound_fields_follow_the_task_that_set_them() -> None:
    stream = _configure(log_format="json")
    log = logging.getLogger("herald.worker")

    async def role(name: str) -> None:
        logs.set_role(name)
        with logs.bound(campaign_id=f"{name}-campaign"):
            await anyio.lowlevel.checkpoint()
            log.info("working", extra={"event": "working"})
        log.info("idle", extra={"event": "idle"})

    async def both() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(role, "worker")
            tg.start_soon(role, "status")
        log.info("done", extra={"event": "done"})

    anyio.run(both)
    lines = _lines(stream)
    seen = {(line.get("role"), line.get("campaign_id"), line["event"]) for line in lines}
    assert seen == {
        ("worker", "worker-campaign", "working"),
        ("status", "status-campaign", "working"),
        ("worker", None, "idle"),
        ("status", None, "idle"),
        (None, None, "done"),  # the parent never took either role
    }


def test_as_role_names_the_role_of_a_task_started_beside_others() -> None:
    stream = _configure(log_format="json")
    log = logging.getLogger("herald.relay")

    async def loop(n: int) -> None:
        log.info("round %d", n, extra={"event": "round"})

    async def run_all() -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(logs.as_role("relay", loop), 1)
            tg.start_soon(logs.as_role("scheduler", loop), 2)

    anyio.run(run_all)
    assert {(line["role"], line["message"]) for line in _lines(stream)} == {
        ("relay", "round 1"),
        ("scheduler", "round 2"),
    }


def test_values_json_cannot_hold_are_shown_as_text_and_secrets_masked() -> None:
    stream = _configure(log_format="json")

    class Thing:
        def __str__(self) -> str:
            return "a thing"

    logging.getLogger("herald").warning(
        "odd values",
        extra={"event": "odd", "thing": Thing(), "token": Secret("s3cr3t"), "big": 2**70},
    )
    (line,) = _lines(stream)
    assert line["thing"] == "a thing"
    assert line["big"] == str(2**70)
    assert "s3cr3t" not in stream.getvalue()


def test_libraries_are_quiet_and_herald_speaks_at_its_level() -> None:
    stream = _configure(log_format="json", log_level="INFO")
    logging.getLogger("aiokafka.consumer.group_coordinator").info("joined group")
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("somelib").info("chatter")
    logging.getLogger("aiokafka").warning("broker gone")
    logging.getLogger("herald.demo").info("progress")
    logging.getLogger("herald.demo").debug("detail")
    assert [line["message"] for line in _lines(stream)] == ["broker gone", "progress"]


def test_debug_opens_the_libraries_too() -> None:
    stream = _configure(log_format="json", log_level="debug")
    logging.getLogger("aiokafka.conn").debug("sent request")
    logging.getLogger("herald.worker").debug("detail")
    assert [line["message"] for line in _lines(stream)] == ["sent request", "detail"]


def test_development_writes_text_with_the_event() -> None:
    settings = Settings.development()
    assert settings.log_format == "text"
    stream = io.StringIO()
    logs.configure(settings, stream=stream)

    def scheduler() -> None:
        logs.set_role("scheduler")
        logging.getLogger("herald.scheduler").info("tick", extra={"event": "tick"})
        logging.getLogger("aiokafka").info("group join")

    contextvars.copy_context().run(scheduler)  # the role stays out of the other tests
    (line,) = stream.getvalue().splitlines()
    assert line.endswith("INFO herald.scheduler: tick [role=scheduler event=tick]")


def test_configure_twice_keeps_one_handler() -> None:
    first = _configure(log_format="json")
    second = _configure(log_format="json")
    logging.getLogger("herald").info("once")
    assert first.getvalue() == ""
    assert len(_lines(second)) == 1


def test_an_unknown_level_falls_back_to_info_and_says_so() -> None:
    stream = _configure(log_format="json", log_level="LOUD")
    logging.getLogger("herald").info("still here")
    warned, kept = _lines(stream)
    assert warned["event"] == "log_level_unknown"
    assert kept["message"] == "still here"
