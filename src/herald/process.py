"""Herald roles in child processes: how the demo and the benchmark use both cores.

A child is `python -m herald run <roles>` with the parent's settings in its environment. It
stops on SIGTERM with the same graceful drain as in Kubernetes, and dies with its parent.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Iterator

from herald.embedded import _die_with_parent
from herald.settings import Settings

# A stopped child's interpreter shutting down, past its drain and final flush.
EXIT_S = 5.0


class ChildRole:
    def __init__(self, settings: Settings, roles: list[str]) -> None:
        self.settings = settings
        self.roles = roles
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        env = {**os.environ, **self.settings.to_env(), "HERALD_METRICS_PORT": "0"}
        self._process = subprocess.Popen(
            [sys.executable, "-m", "herald", "run", *self.roles],
            env=env,
            stdin=subprocess.DEVNULL,
            preexec_fn=_die_with_parent if os.name == "posix" else None,
        )

    def stop(self, timeout_s: float | None = None) -> int | None:
        """SIGTERM, then SIGKILL past timeout_s: by default the drain and the final flush the
        child promises to stay within, plus a little for the interpreter to exit."""
        if timeout_s is None:
            timeout_s = (
                self.settings.drain_timeout_s + self.settings.shutdown_flush_timeout_s + EXIT_S
            )
        process, self._process = self._process, None
        if process is None:
            return None
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        return process.returncode

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None


def wait_listening(host: str, port: int, timeout_s: float = 30.0) -> None:
    import socket

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listens on {host}:{port}")


@contextlib.contextmanager
def child(settings: Settings, roles: list[str]) -> Iterator[ChildRole]:
    role = ChildRole(settings, roles)
    role.start()
    try:
        yield role
    finally:
        role.stop()
