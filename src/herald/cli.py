"""The `herald` command: migrate, run <role>..., demo, settings, bench."""

from __future__ import annotations

import argparse
import logging
import signal
import subprocess
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import anyio

from herald import embedded, health, logs, preflight, runner
from herald.bus.client import connection_kwargs
from herald.domain.channels import SendingMode
from herald.errors import HeraldError
from herald.settings import DEVELOPMENT_PROFILE, PRODUCTION, Settings, SettingsError, describe

log = logging.getLogger("herald")


def _parser() -> argparse.ArgumentParser:
    epilog = "settings (environment):\n" + "\n".join(
        f"  {name:<28} {doc} [default: {default}]" for name, default, doc in describe()
    )
    parser = argparse.ArgumentParser(
        prog="herald",
        description="Campaign dispatch with channel fallback and exact counters.",
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply database migrations and exit")
    run = sub.add_parser("run", help="run one or more roles until SIGTERM")
    run.add_argument("roles", nargs="+", help=f"{', '.join(runner.ROLES)}, or all")
    demo = sub.add_parser("demo", help="a real campaign on embedded services, end to end")
    demo.add_argument("--recipients", type=int, default=2_000)
    demo.add_argument(
        "--sending-mode",
        default="WHATSAPP_RCS_SMS",
        choices=[m.value for m in SendingMode],
        type=str.upper,
    )
    demo.add_argument("--json", action="store_true", help="last stdout line is a JSON summary")
    sub.add_parser("settings", help="print every HERALD_* setting with its default")
    # Only listed here: main() hands `bench` and everything after it to the script.
    sub.add_parser(
        "bench",
        help="load-tests/bench_e2e.py with the same arguments (a source checkout only); "
        "`herald bench --help` shows them",
    )
    keys = sub.add_parser("keys", help="API keys").add_subparsers(dest="keys", required=True)
    create = keys.add_parser("create", help="create an account if needed and print a new key")
    create.add_argument("--account", required=True, help="account id")
    create.add_argument("--name", default="", help="a label for the key")
    return parser


def main(argv: list[str] | None = None) -> None:
    given = sys.argv[1:] if argv is None else argv
    if given[:1] == ["bench"]:
        sys.exit(bench(given[1:]))
    args = _parser().parse_args(argv)
    try:
        settings = Settings.from_env(profile=default_profile(args.command, args))
    except SettingsError as exc:
        sys.exit(f"herald: {exc}")
    logs.configure(settings)
    if args.command == "settings":
        for name, default, doc in describe():
            print(f"{name}\t{default}\t{doc}")
        return
    if args.command == "keys":
        from herald.api.admin import keys_create

        sys.exit(_run(keys_create, settings, args.account, args.name))
    if args.command == "migrate":
        code = _run(_migrate, settings)
    elif args.command == "run":
        try:
            roles = runner.parse_roles(args.roles)
            # Every role module imported now, so a role this install lacks is one clear line.
            for name in sorted(roles):
                runner.load_role(name)
        except runner.RoleError as exc:
            print(f"herald: {exc}", file=sys.stderr)
            sys.exit(2)
        code = _run(_serve, settings, roles)
    else:
        from herald.demo import demo

        if args.recipients < 1:
            sys.exit("herald: --recipients must be at least 1")
        code = _run(demo, settings, args.recipients, SendingMode(args.sending_mode), args.json)
    sys.exit(code)


def default_profile(command: str, args: argparse.Namespace) -> str:
    """`herald demo` and `herald run all` are development; every other command is production
    unless HERALD_PROFILE says otherwise."""
    if command == "demo" or (command == "run" and "all" in args.roles):
        return DEVELOPMENT_PROFILE
    return PRODUCTION


BENCH_SCRIPT = Path("load-tests") / "bench_e2e.py"


def bench_script(root: Path | None = None) -> Path:
    """load-tests/bench_e2e.py of the checkout herald runs from (src/herald/cli.py is two
    levels below its root). An installed wheel has no load-tests: BenchUnavailable."""
    root = Path(__file__).resolve().parents[2] if root is None else root
    script = root / BENCH_SCRIPT
    if not script.is_file():
        raise BenchUnavailable(
            f"herald bench needs a source checkout: {script} does not exist (load-tests/ is "
            "not part of the installed package; clone herald and pip install -e '.[dev]')"
        )
    return script


class BenchUnavailable(RuntimeError):
    pass


def bench(args: Sequence[str], root: Path | None = None) -> int:
    """Runs the benchmark script with this interpreter (load-tests is not a package); its
    exit status is ours."""
    try:
        script = bench_script(root)
    except BenchUnavailable as exc:
        print(f"herald: {exc}", file=sys.stderr)
        return 2
    try:
        return subprocess.call([sys.executable, str(script), *args])
    except KeyboardInterrupt:
        return 130


def _run(fn: Callable[..., Awaitable[int]], *args: Any) -> int:
    try:
        return anyio.run(fn, *args, backend_options={"use_uvloop": True})
    except KeyboardInterrupt:
        return 130
    except (HeraldError, OSError) as exc:
        print(f"herald: {exc}", file=sys.stderr)
        return 2
    except BaseExceptionGroup as group:
        # Typically a port another process holds: say which, without a traceback.
        wanted, rest = group.split((HeraldError, OSError))
        if wanted is None or rest is not None:
            raise
        for inner in _leaves(wanted):
            print(f"herald: {inner}", file=sys.stderr)
        return 2


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    """The exceptions of a group, nested groups flattened (task groups nest them)."""
    found: list[BaseException] = []
    for inner in group.exceptions:
        if isinstance(inner, BaseExceptionGroup):
            found.extend(_leaves(inner))
        else:
            found.append(inner)
    return found


async def _migrate(settings: Settings) -> int:
    async with embedded.running(settings, broker=False) as resolved:
        applied = await runner.migrate(resolved)
    print("applied: " + (", ".join(applied) if applied else "nothing, schema is current"))
    return 0


async def _serve(settings: Settings, roles: frozenset[str]) -> int:
    logs.set_role(",".join(sorted(roles)))
    needs = runner.needs(roles)
    refused = runner.refusal(settings, roles)
    if refused is not None:
        print(f"herald: {refused}", file=sys.stderr)
        return 2
    if needs.kafka and settings.kafka_bootstrap:
        connection_kwargs(settings)  # a TLS/SASL combination that cannot work: one line
    for warning in preflight.check(settings).warnings():
        log.warning(warning, extra={"event": "channel_disabled"})
    if not settings.kafka_bootstrap and needs.kafka and roles != frozenset(runner.ROLES):
        print(
            "herald: set HERALD_KAFKA_BOOTSTRAP; only `run all` starts an embedded broker",
            file=sys.stderr,
        )
        return 2
    async with embedded.running(settings, database=needs.database, broker=needs.kafka) as resolved:
        stop, ready = anyio.Event(), anyio.Event()
        async with (
            health.serving(resolved, ready=ready, stop=stop) as probes,
            anyio.create_task_group() as tg,
        ):
            tg.start_soon(_stop_on_signal, stop)
            await runner.run_roles(resolved, roles, stop, ready, health=probes)
            tg.cancel_scope.cancel()
    return 0


async def _stop_on_signal(stop: anyio.Event) -> None:
    with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
        async for _ in signals:
            stop.set()
            return
