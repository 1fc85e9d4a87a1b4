"""CPU time from the kernel's own counters, attributed to the processes a benchmark started.

Pure arithmetic over the text of `/proc/<pid>/stat` and `/proc/stat` (Linux); harness.py reads
the files. No I/O here, so it is unit tested (tests/unit/test_bench_cpu.py).

A process's CPU time is what the kernel charged to it (user + system, every thread). Its
descendants count to it: each process is labelled by its nearest ancestor that is a root
(a role process, the postmaster, the broker...), so PostgreSQL's backends count to the
postmaster whoever connected to them. Children that exited and were waited for are in their
parent's cutime/cstime, so a backend that closed during the campaign is still counted: a
subtree's time is the sum over its live processes of their own and their reaped children's
time. Processes under no root (other jobs on a shared machine) are not attributed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# Fields after the command's closing parenthesis, 0-based: state is 0 (field 3 of proc(5)).
_PPID = 1
_UTIME, _STIME, _CUTIME, _CSTIME = 11, 12, 13, 14
# The walk up from a process to its root stops after this many parents (pid reuse can make
# a loop in a snapshot taken while processes come and go).
_MAX_DEPTH = 64
# Labels that are not herald's own (shown for information only).
NOT_HERALD = frozenset({"simulator", "bench"})


@dataclass(frozen=True, kw_only=True)
class ProcCpu:
    """One process from `/proc/<pid>/stat`: its own CPU seconds and its reaped children's."""

    pid: int
    command: str
    ppid: int
    cpu_s: float  # utime + stime
    reaped_s: float  # cutime + cstime: children that exited and were waited for


@dataclass(frozen=True, kw_only=True)
class MachineCpu:
    """The `cpu` line of `/proc/stat`: seconds summed over every core since boot."""

    busy_s: float  # user + nice + system + irq + softirq (guest time is inside user)
    total_s: float  # busy + idle + iowait + steal
    cores: int  # the `cpuN` lines


def parse_proc_stat(text: str, clock_ticks: int) -> ProcCpu:
    """One `/proc/<pid>/stat` line. The command may hold spaces and parentheses: it runs from
    the first '(' to the last ')'."""
    open_at, close_at = text.index("("), text.rindex(")")
    fields = text[close_at + 2 :].split()
    return ProcCpu(
        pid=int(text[:open_at]),
        command=text[open_at + 1 : close_at],
        ppid=int(fields[_PPID]),
        cpu_s=(int(fields[_UTIME]) + int(fields[_STIME])) / clock_ticks,
        reaped_s=(int(fields[_CUTIME]) + int(fields[_CSTIME])) / clock_ticks,
    )


def parse_machine_stat(text: str, clock_ticks: int) -> MachineCpu:
    """The aggregate `cpu` line of `/proc/stat` and the number of `cpuN` lines."""
    busy = total = 0
    cores = 0
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        if name == "cpu":
            ticks = [int(v) for v in rest.split()]
            user, nice, system, idle, iowait, irq, softirq = ticks[:7]
            steal = ticks[7] if len(ticks) > 7 else 0
            busy = user + nice + system + irq + softirq
            total = busy + idle + iowait + steal
        elif name.startswith("cpu") and name[3:].isdigit():
            cores += 1
    return MachineCpu(busy_s=busy / clock_ticks, total_s=total / clock_ticks, cores=cores)


def label_of(pid: int, procs: Mapping[int, ProcCpu], roots: Mapping[int, str]) -> str | None:
    """The label of the nearest root at or above `pid`; None when no root is an ancestor."""
    for _ in range(_MAX_DEPTH):
        if pid in roots:
            return roots[pid]
        proc = procs.get(pid)
        if proc is None or proc.ppid == pid:
            return None
        pid = proc.ppid
    return None


def by_label(procs: Mapping[int, ProcCpu], roots: Mapping[int, str]) -> dict[str, float]:
    """CPU seconds of each labelled subtree now: live processes' own and reaped time."""
    spent: dict[str, float] = {}
    for pid, proc in procs.items():
        label = label_of(pid, procs, roots)
        if label is not None:
            spent[label] = spent.get(label, 0.0) + proc.cpu_s + proc.reaped_s
    return spent


def spent_between(
    before: Mapping[int, ProcCpu], after: Mapping[int, ProcCpu], roots: Mapping[int, str]
) -> dict[str, float]:
    """CPU seconds each label spent between two snapshots, most first (labels that spent
    nothing are left out). Roots must be alive in both: a root that exits takes its time
    into a parent outside the tree."""
    then, now = by_label(before, roots), by_label(after, roots)
    spent = {label: now[label] - then.get(label, 0.0) for label in now}
    return dict(sorted(((k, v) for k, v in spent.items() if v > 0), key=lambda kv: -kv[1]))


def group(spent: Mapping[str, float]) -> dict[str, float]:
    """Per-process labels ("worker#0", "worker#2") summed by what precedes '#'."""
    out: dict[str, float] = {}
    for label, seconds in spent.items():
        name = label.partition("#")[0]
        out[name] = out.get(name, 0.0) + seconds
    return out


def herald_s(spent: Mapping[str, float]) -> float:
    """Herald's CPU seconds: every label but the simulator and the benchmark itself (roles,
    PostgreSQL and the broker)."""
    return sum(s for label, s in spent.items() if label.partition("#")[0] not in NOT_HERALD)


def ms_per(seconds: float, count: int) -> float | None:
    """Milliseconds of CPU per unit (recipient); None for no units."""
    return seconds * 1000 / count if count > 0 else None


def busy_ratio(cpu_s: float, *, wall_s: float, cores: int) -> float | None:
    """Share of the machine's capacity over a span: CPU seconds / (wall seconds × cores)."""
    return cpu_s / (wall_s * cores) if wall_s > 0 and cores > 0 else None


def machine_busy_s(before: MachineCpu, after: MachineCpu) -> float:
    """CPU seconds every process on the machine spent between two `/proc/stat` readings."""
    return after.busy_s - before.busy_s


def children_of(procs: Iterable[ProcCpu], ppid: int, prefix: str) -> list[int]:
    """Pids of `ppid`'s children whose command starts with `prefix` (the kernel truncates
    commands to 15 characters)."""
    return [p.pid for p in procs if p.ppid == ppid and p.command.startswith(prefix)]


def _round(value: float | None, digits: int = 3) -> float | None:
    return None if value is None else round(value, digits)


def summary(
    spent: Mapping[str, float],
    *,
    recipients: int,
    machine_busy_s: float,
    wall_s: float,
    cores: int,
) -> dict[str, object]:
    """The benchmark's CPU figures for one span: herald's CPU per recipient (all of it and
    by role, the simulator beside it for information), and how busy the machine was: all of
    it, herald's share, and the part no measured process was charged for (other jobs on a
    shared machine, the kernel's interrupt work)."""
    herald = herald_s(spent)
    by_role = {
        role: _round(ms_per(seconds, recipients))
        for role, seconds in group(spent).items()
        if role != "bench"
    }
    unattributed = max(0.0, machine_busy_s - sum(spent.values()))
    return {
        "herald_cpu_ms_per_recipient": _round(ms_per(herald, recipients)),
        "cpu_ms_per_recipient_by_role": by_role,
        "cpu_busy_ratio": _round(busy_ratio(machine_busy_s, wall_s=wall_s, cores=cores)),
        "herald_cpu_busy_ratio": _round(busy_ratio(herald, wall_s=wall_s, cores=cores)),
        "unattributed_cpu_busy_ratio": _round(busy_ratio(unattributed, wall_s=wall_s, cores=cores)),
    }
