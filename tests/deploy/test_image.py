"""Overlays decide the image: every herald container runs exactly the image the overlay
names, and changing the overlay's tag (or pinning a digest) changes every one of them."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.deploy.render import (
    DEPLOY,
    OVERLAYS,
    Doc,
    containers,
    herald_workloads,
    render,
    render_path,
)


def _herald_image_entry(kustomization: Path) -> dict[str, Any]:
    spec = yaml.safe_load(kustomization.read_text())
    (entry,) = [i for i in spec.get("images", []) if i["name"] == "herald"]
    return entry  # type: ignore[no-any-return]


def _image(entry: dict[str, Any]) -> str:
    name = entry.get("newName", entry["name"])
    if "digest" in entry:
        return f"{name}@{entry['digest']}"
    return f"{name}:{entry['newTag']}"


def _herald_images(docs: tuple[Doc, ...]) -> dict[str, set[str]]:
    """Image → the workloads/containers that run it, for every herald workload."""
    found: dict[str, set[str]] = {}
    for workload in herald_workloads(docs):
        for spec in containers(workload):
            where = f"{workload['kind']}/{workload['metadata']['name']}/{spec['name']}"
            found.setdefault(spec["image"], set()).add(where)
    return found


def test_the_base_leaves_the_image_to_the_overlays() -> None:
    base = yaml.safe_load((DEPLOY / "base" / "kustomization.yaml").read_text())
    assert "images" not in base, "an image set in the base would hide every overlay's"
    images = _herald_images(render_path(DEPLOY / "base"))
    assert set(images) == {"herald"}, images


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_herald_container_runs_the_overlays_image(overlay: str) -> None:
    docs = render(overlay)
    expected = _image(_herald_image_entry(DEPLOY / "overlays" / overlay / "kustomization.yaml"))
    images = _herald_images(docs)
    assert set(images) == {expected}, images
    # Six roles and the migration Job at least (dev adds the simulator).
    assert len(images[expected]) >= 7
    # No other container is left with the placeholder name.
    for doc in docs:
        if doc["kind"] in {"Deployment", "StatefulSet", "Job"}:
            for spec in containers(doc):
                assert not spec["image"].startswith("herald"), doc["metadata"]["name"]


@pytest.mark.parametrize("overlay", OVERLAYS)
@pytest.mark.parametrize(
    "change",
    [{"newTag": "9.9.9-pin-test"}, {"digest": "sha256:" + "ab" * 32}],
    ids=["tag", "digest"],
)
def test_changing_the_overlays_image_changes_every_container(
    overlay: str, change: dict[str, str], tmp_path: Path
) -> None:
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    kustomization = copy / "overlays" / overlay / "kustomization.yaml"
    spec = yaml.safe_load(kustomization.read_text())
    for entry in spec["images"]:
        if entry["name"] == "herald":
            entry.pop("newTag", None)
            entry.update(change)
    kustomization.write_text(yaml.safe_dump(spec, sort_keys=False))
    expected = _image(_herald_image_entry(kustomization))
    assert expected != _image(
        _herald_image_entry(DEPLOY / "overlays" / overlay / "kustomization.yaml")
    )
    images = _herald_images(render_path(copy / "overlays" / overlay))
    assert set(images) == {expected}, images


def test_an_overlay_on_top_of_production_sets_the_tag(tmp_path: Path) -> None:
    """The procedure deploy/README.md gives for an operator's own overlay: match the image by
    the name production gave it."""
    name = _herald_image_entry(DEPLOY / "overlays" / "production" / "kustomization.yaml")["newName"]
    copy = tmp_path / "deploy"
    shutil.copytree(DEPLOY, copy)
    mine = copy / "overlays" / "mine"
    mine.mkdir()
    (mine / "kustomization.yaml").write_text(
        yaml.safe_dump(
            {
                "apiVersion": "kustomize.config.k8s.io/v1beta1",
                "kind": "Kustomization",
                "resources": ["../production"],
                "images": [{"name": name, "newTag": "1.2.3-downstream"}],
            }
        )
    )
    images = _herald_images(render_path(mine))
    assert set(images) == {f"{name}:1.2.3-downstream"}, images
