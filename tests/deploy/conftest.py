from __future__ import annotations

import pytest

from tests.deploy.base_install import BaseInstall, install


@pytest.fixture(scope="session")
def base_install(tmp_path_factory: pytest.TempPathFactory) -> BaseInstall:
    return install(tmp_path_factory.mktemp("base") / "venv")
