"""CPU time for the benchmarks (load-tests/cputime.py): /proc parsing, attribution of process
trees to the roots a benchmark started, and the per-recipient and busy-ratio arithmetic."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import pytest

TICKS = 100


@pytest.fixture(scope="module")
def cputime() -> ModuleType:
    # load-tests is a folder of scripts, not a package.
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "load-tests"))
    try:
        return importlib.import_module("cputime")
    finally:
        sys.path.pop(0)


def stat_line(pid: int, command: str, ppid: int, ticks: tuple[int, int, int, int]) -> str:
    """A /proc/<pid>/stat line with utime, stime, cutime, cstime in fields 14-17."""
    utime, stime, cutime, cstime = ticks
    return (
        f"{pid} ({command}) S {ppid} {pid} {pid} 0 -1 4194304 99 0 0 0 "
        f"{utime} {stime} {cutime} {cstime} 20 0 1 0 1278641 3133440 413 18446744073709551615\n"
    )


def proc(cputime: ModuleType, pid: int, ppid: int, own_s: float, reaped_s: float = 0.0) -> object:
    return cputime.ProcCpu(pid=pid, command="p", ppid=ppid, cpu_s=own_s, reaped_s=reaped_s)


def test_parse_proc_stat(cputime: ModuleType) -> None:
    found = cputime.parse_proc_stat(stat_line(6921, "cat", 6917, (150, 50, 7, 3)), TICKS)
    assert found == cputime.ProcCpu(pid=6921, command="cat", ppid=6917, cpu_s=2.0, reaped_s=0.1)


def test_parse_proc_stat_command_with_spaces_and_parentheses(cputime: ModuleType) -> None:
    line = stat_line(42, "postgres: bench (x) idle", 7, (10, 20, 0, 0))
    found = cputime.parse_proc_stat(line, TICKS)
    assert (found.command, found.ppid, found.cpu_s) == ("postgres: bench (x) idle", 7, 0.3)


MACHINE = """\
cpu  556720 0 121275 1844592 8575 0 7203 3990 0 0
cpu0 234771 0 48768 979729 2124 0 2875 2190 0 0
cpu1 321948 0 72507 864863 6451 0 4327 1799 0 0
intr 10170082 0 0 0
ctxt 123
"""


def test_parse_machine_stat(cputime: ModuleType) -> None:
    found = cputime.parse_machine_stat(MACHINE, TICKS)
    busy = 556720 + 0 + 121275 + 0 + 7203
    assert found.busy_s == pytest.approx(busy / TICKS)
    assert found.total_s == pytest.approx((busy + 1844592 + 8575 + 3990) / TICKS)
    assert found.cores == 2


def test_descendants_count_to_the_nearest_root(cputime: ModuleType) -> None:
    procs = {
        1: proc(cputime, 1, 0, 99.0),  # init: under no root
        10: proc(cputime, 10, 1, 1.0, reaped_s=0.5),  # bench
        11: proc(cputime, 11, 10, 4.0),  # worker
        12: proc(cputime, 12, 11, 0.25),  # a child of the worker
        20: proc(cputime, 20, 1, 2.0, reaped_s=3.0),  # postmaster, backends reaped
        21: proc(cputime, 21, 20, 1.5),  # a backend
        30: proc(cputime, 30, 10, 0.75),  # broker, a child of bench
        40: proc(cputime, 40, 1, 50.0),  # another job's process
    }
    roots = {10: "bench", 11: "worker#0", 20: "postgres", 30: "broker"}
    assert cputime.by_label(procs, roots) == {
        "bench": 1.5,
        "worker#0": 4.25,
        "postgres": 6.5,
        "broker": 0.75,
    }
    assert cputime.label_of(40, procs, roots) is None
    assert cputime.label_of(99, procs, roots) is None  # gone


def test_spent_between_counts_backends_that_exited(cputime: ModuleType) -> None:
    roots = {20: "postgres", 11: "worker#0"}
    before = {
        20: proc(cputime, 20, 1, 2.0, reaped_s=3.0),
        21: proc(cputime, 21, 20, 1.5),
        11: proc(cputime, 11, 1, 4.0),
    }
    # Backend 21 ran 0.5 s more and exited (into the postmaster's reaped time); 22 is new.
    after = {
        20: proc(cputime, 20, 1, 2.25, reaped_s=5.0),
        22: proc(cputime, 22, 20, 0.25),
        11: proc(cputime, 11, 1, 4.0),
    }
    assert cputime.spent_between(before, after, roots) == {"postgres": pytest.approx(1.0)}


def test_a_loop_of_parents_ends(cputime: ModuleType) -> None:
    procs = {5: proc(cputime, 5, 6, 1.0), 6: proc(cputime, 6, 5, 1.0)}
    assert cputime.label_of(5, procs, {}) is None


def test_children_of_by_command_prefix(cputime: ModuleType) -> None:
    procs = [
        cputime.ProcCpu(pid=3, command="tansu-v0.6.0-51", ppid=2, cpu_s=0, reaped_s=0),
        cputime.ProcCpu(pid=4, command="python", ppid=2, cpu_s=0, reaped_s=0),
        cputime.ProcCpu(pid=5, command="tansu-v0.6.0-51", ppid=9, cpu_s=0, reaped_s=0),
    ]
    assert cputime.children_of(procs, 2, "tansu") == [3]


def test_summary_per_recipient_and_busy_ratios(cputime: ModuleType) -> None:
    spent = {
        "worker#0": 4.0,
        "worker#1": 1.0,
        "status+ingress+scheduler#2": 3.0,
        "postgres": 2.5,
        "broker": 0.5,
        "simulator": 3.5,
        "bench": 0.5,
    }
    found = cputime.summary(spent, recipients=10_000, machine_busy_s=18.0, wall_s=10.0, cores=2)
    assert found == {
        # herald: 4 + 1 + 3 + 2.5 + 0.5 = 11 s over 10,000 recipients
        "herald_cpu_ms_per_recipient": 1.1,
        "cpu_ms_per_recipient_by_role": {
            "worker": 0.5,
            "status+ingress+scheduler": 0.3,
            "postgres": 0.25,
            "broker": 0.05,
            "simulator": 0.35,
        },
        "cpu_busy_ratio": 0.9,  # 18 / (10 × 2)
        "herald_cpu_busy_ratio": 0.55,
        "unattributed_cpu_busy_ratio": 0.15,  # 18 s - 15 s measured (bench included) = 3 s
    }


def test_ratios_without_a_span(cputime: ModuleType) -> None:
    assert cputime.busy_ratio(1.0, wall_s=0.0, cores=2) is None
    assert cputime.ms_per(1.0, 0) is None
    found = cputime.summary({}, recipients=0, machine_busy_s=0.0, wall_s=0.0, cores=0)
    assert found["herald_cpu_ms_per_recipient"] is None
    assert found["cpu_busy_ratio"] is None
