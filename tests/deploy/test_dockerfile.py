"""The Dockerfile builds the production image: non-root, `herald` as the entrypoint, base
dependencies only. That this install runs every role is the base-install test's to show."""

from __future__ import annotations

import re

from tests.deploy.render import ROOT


def test_dockerfile_builds_a_non_root_production_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001(:10001)?$", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["herald"]' in dockerfile
    # Embedded services and test tools stay out of the production image; extras only by a
    # build argument that is empty unless given (the dev simulator's image).
    assert "[embedded]" not in dockerfile and "[dev]" not in dockerfile
    assert re.search(r'^ARG HERALD_EXTRAS=""$', dockerfile, re.MULTILINE)
    for image in re.findall(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.MULTILINE):
        assert ":" in image and not image.endswith(":latest")
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    # Ignore everything, then let in what the build copies: no .venv, .git or data dirs.
    assert rules[0] == "*" and "!src/" in rules


def test_the_manifests_run_as_the_images_user() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    (user,) = re.findall(r"^USER (\d+)", dockerfile, re.MULTILINE)
    for path in sorted((ROOT / "deploy" / "base").glob("*.yaml")):
        for uid in re.findall(r"runAsUser: (\d+)", path.read_text()):
            assert uid == user, path
