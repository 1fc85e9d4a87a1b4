"""herald installed the way the image installs it: `pip install .`, base dependencies only,
into a fresh virtual environment of its own (no dev, embedded or simulator extras)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class BaseInstall:
    venv: Path

    @property
    def herald(self) -> str:
        return str(self.venv / "bin" / "herald")

    @property
    def python(self) -> str:
        return str(self.venv / "bin" / "python")

    def run(
        self, *args: str, env: dict[str, str] | None = None, timeout_s: float = 60
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [self.herald, *args],
            env=clean_env(env),
            capture_output=True,
            text=True,
            timeout=timeout_s,
            check=False,
        )


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The process environment without any HERALD_* variable, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HERALD_")}
    env.pop("VIRTUAL_ENV", None)
    return {**env, **(extra or {})}


def install(target: Path) -> BaseInstall:
    # What the Dockerfile copies, built outside the checkout so the build leaves nothing in it.
    source = target.with_name(f"{target.name}-source")
    for part in ("pyproject.toml", "README.md"):
        source.mkdir(parents=True, exist_ok=True)
        shutil.copy2(ROOT / part, source / part)
    shutil.copytree(
        ROOT / "src", source / "src", ignore=shutil.ignore_patterns("__pycache__", "*.egg-info")
    )
    subprocess.run([sys.executable, "-m", "venv", str(target)], check=True)
    pip = [str(target / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run(
        [*pip, "--disable-pip-version-check", str(source)],
        check=True,
        env=clean_env(),
        timeout=900,
        # pip's notes about this machine's extra indexes are not the test's to show.
        capture_output=True,
    )
    return BaseInstall(venv=target)
