"""py-spy around benchmark children, and hot spots from its raw (collapsed-stack) output.

`python load-tests/profiling.py FILE.txt [--top N]` prints the top frames of one profile by
self time (file:line) and by inclusive time (function), as percentages of all samples.
"""

from __future__ import annotations

import argparse
import contextlib
import re
import shutil
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

_FRAME = re.compile(r"^(?P<function>.*) \((?P<file>[^()]*?)(?::(?P<line>\d+))?\)$")


def py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    return str(beside) if beside.exists() else shutil.which("py-spy")


@contextlib.contextmanager
def recording(pids: dict[str, int], out_dir: Path | None, rate_hz: int = 100) -> Iterator[None]:
    """py-spy record on each named pid while the block runs; raw stacks in out_dir/<name>.txt.

    Non-blocking sampling: the target is never paused, so it runs at its normal speed (a
    sample may now and then be inconsistent, which does not move the top of the list)."""
    binary = py_spy()
    if out_dir is None or binary is None:
        if out_dir is not None:
            print("py-spy not found: pip install py-spy into the venv", file=sys.stderr)
        yield
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    spies = []
    for name, pid in pids.items():
        spies.append(
            subprocess.Popen(
                [
                    binary,
                    "record",
                    "--pid",
                    str(pid),
                    "--rate",
                    str(rate_hz),
                    "--format",
                    "raw",
                    "--nonblocking",
                    "--output",
                    str(out_dir / f"{name}.txt"),
                ],
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
        )
    try:
        yield
    finally:
        for spy in spies:
            if spy.poll() is None:
                spy.send_signal(signal.SIGINT)
        for spy in spies:
            try:
                spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                spy.kill()


@dataclass(frozen=True, kw_only=True)
class Hotspots:
    samples: int
    self_by_line: list[tuple[str, int]]
    inclusive_by_function: list[tuple[str, int]]


def _short(path: str) -> str:
    for marker in ("site-packages/", "src/", "lib/python3"):
        if marker in path:
            return path.split(marker, 1)[1]
    return path


def _frame(raw: str) -> tuple[str, str]:
    """(function at file:line, function in file) for one py-spy frame."""
    match = _FRAME.match(raw.strip())
    if match is None:
        return raw, raw
    function, file, line = match["function"], _short(match["file"]), match["line"]
    at = f"{function} ({file}:{line})" if line else f"{function} ({file})"
    return at, f"{function} ({file})"


def hotspots(text: str, top: int = 15) -> Hotspots:
    self_time: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    samples = 0
    for line in text.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_frame(f) for f in stack.split(";") if f]
        if not frames:
            continue
        self_time[frames[-1][0]] += count
        for function in {f[1] for f in frames}:
            inclusive[function] += count
    return Hotspots(
        samples=samples,
        self_by_line=self_time.most_common(top),
        inclusive_by_function=inclusive.most_common(top),
    )


def report(path: Path, top: int = 15) -> str:
    found = hotspots(path.read_text(), top)
    if not found.samples:
        return f"{path.name}: no samples"
    lines = [f"{path.name}: {found.samples} samples", "  self time (file:line):"]
    lines += [f"    {100 * n / found.samples:5.1f}%  {f}" for f, n in found.self_by_line]
    lines.append("  inclusive time (function):")
    lines += [f"    {100 * n / found.samples:5.1f}%  {f}" for f, n in found.inclusive_by_function]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("files", nargs="+", type=Path)
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    for path in args.files:
        print(report(path, args.top))


if __name__ == "__main__":
    main()
