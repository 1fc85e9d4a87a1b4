"""`herald bench`: load-tests/bench_e2e.py with the same arguments, or a clear refusal."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from herald import cli


def test_bench_help_is_the_scripts() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "herald", "bench", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "--fold-only" in done.stdout
    assert "--recipients" in done.stdout


def test_bench_is_listed_in_help() -> None:
    assert "bench" in cli._parser().format_help()


def test_bench_without_load_tests_says_why(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.bench(["--fold-only"], root=tmp_path) == 2
    err = capsys.readouterr().err
    assert "source checkout" in err
    assert str(tmp_path / "load-tests" / "bench_e2e.py") in err


def test_bench_passes_arguments_and_exit_status(tmp_path: Path) -> None:
    script = tmp_path / "load-tests" / "bench_e2e.py"
    script.parent.mkdir()
    script.write_text("import sys\nsys.exit(len(sys.argv[1:]))\n")
    assert cli.bench(["--a", "1", "--b"], root=tmp_path) == 3
