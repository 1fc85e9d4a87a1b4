"""deploy/ against current schemas: core kinds with kubernetes-validate (the oldest Kubernetes
herald supports and the newest the package ships), custom resources with the JSON Schemas in
deploy/schemas, extracted from the operators' own CRDs (Strimzi KafkaTopic v1, KEDA
ScaledObject and TriggerAuthentication v1alpha1, prometheus-operator PodMonitor,
ServiceMonitor and PrometheusRule v1)."""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from kubernetes_validate.utils import latest_version

from tests.deploy.render import DEPLOY, OVERLAYS, Doc, of_kind, render

SCHEMAS = DEPLOY / "schemas"
# The oldest Kubernetes herald's manifests support (deploy/README.md), and the newest schemas.
K8S_VERSIONS = ("1.30.0", latest_version())
# kind → (apiVersion the operator serves, schema file).
CRD_SCHEMAS = {
    "KafkaTopic": ("kafka.strimzi.io/v1", "kafkatopic.schema.json"),
    "ScaledObject": ("keda.sh/v1alpha1", "scaledobject.schema.json"),
    "TriggerAuthentication": ("keda.sh/v1alpha1", "triggerauthentication.schema.json"),
    "PodMonitor": ("monitoring.coreos.com/v1", "podmonitor.schema.json"),
    "ServiceMonitor": ("monitoring.coreos.com/v1", "servicemonitor.schema.json"),
    "PrometheusRule": ("monitoring.coreos.com/v1", "prometheusrule.schema.json"),
}


@functools.cache
def schema(kind: str) -> dict[str, Any]:
    return json.loads((SCHEMAS / CRD_SCHEMAS[kind][1]).read_text())  # type: ignore[no-any-return]


def validate(doc: Doc) -> None:
    kind = doc["kind"]
    if kind in CRD_SCHEMAS:
        jsonschema.Draft7Validator(schema(kind)).validate(doc)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


def _kustomizations() -> list[Path]:
    return sorted(DEPLOY.rglob("kustomization.yaml"))


def _listed(kustomization: Path, key: str) -> list[Path]:
    spec = yaml.safe_load(kustomization.read_text())
    entries = spec.get(key, [])
    paths = [e if isinstance(e, str) else e.get("path") for e in entries]
    return [kustomization.parent / p for p in paths if p]


def _resource_files() -> Iterator[Path]:
    """Files listed as whole resources (not patches) by any kustomization."""
    for kustomization in _kustomizations():
        for path in _listed(kustomization, "resources"):
            if path.is_file():
                yield path


def test_every_yaml_file_loads() -> None:
    files = sorted(DEPLOY.rglob("*.yaml"))
    assert len(files) >= 10
    for path in files:
        docs = [d for d in yaml.safe_load_all(path.read_text()) if d is not None]
        assert docs, f"{path} is empty"


def test_every_kustomization_names_files_that_exist() -> None:
    for kustomization in _kustomizations():
        for key in ("resources", "components", "patches"):
            for path in _listed(kustomization, key):
                assert path.exists(), f"{kustomization}: {key} names missing {path}"


@pytest.mark.parametrize("path", sorted(set(_resource_files())), ids=lambda p: str(p))
def test_resource_files_validate(path: Path) -> None:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc is not None:
            validate(doc)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_validates(overlay: str) -> None:
    for doc in render(overlay):
        try:
            validate(doc)
        except (jsonschema.ValidationError, kubernetes_validate.ValidationError) as exc:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {exc}")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_custom_resources_use_the_served_api_versions(overlay: str) -> None:
    for doc in render(overlay):
        if doc["kind"] in CRD_SCHEMAS:
            assert doc["apiVersion"] == CRD_SCHEMAS[doc["kind"]][0], doc["metadata"]["name"]


@pytest.mark.parametrize("kind", sorted(CRD_SCHEMAS))
def test_schemas_come_from_the_crds_named_in_the_readme(kind: str) -> None:
    api_version, file = CRD_SCHEMAS[kind]
    loaded = schema(kind)
    jsonschema.Draft7Validator.check_schema(loaded)
    assert loaded["properties"]["apiVersion"] == {"const": api_version}
    assert loaded["properties"]["kind"] == {"const": kind}
    source = loaded["$comment"]
    assert "made by deploy/schemas/extract.py" in source
    readme = (SCHEMAS / "README.md").read_text()
    assert f"`{file}`" in readme, f"deploy/schemas/README.md does not list {file}"


def test_the_schemas_refuse_what_the_operators_would_refuse() -> None:
    topic = next(iter(of_kind(render("production"), "KafkaTopic").values()))
    validate(topic)
    for broken in (
        {"apiVersion": "kafka.strimzi.io/v1beta2"},  # no longer served by Strimzi 1.x
        {"spec": {**topic["spec"], "replica": 3}},  # a misspelt field
        {"spec": {**topic["spec"], "partitions": 0}},
    ):
        with pytest.raises(jsonschema.ValidationError):
            validate({**copy.deepcopy(topic), **broken})
    rule: Doc = {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "herald"},
        "spec": {
            "groups": [
                {
                    "name": "herald",
                    "rules": [
                        {
                            "alert": "HeraldDeadLetters",
                            "expr": "increase(herald_dead_letters_total[10m]) > 0",
                            "for": "5m",
                            "labels": {"severity": "warning"},
                            "annotations": {"summary": "records were dead-lettered"},
                        }
                    ],
                }
            ]
        },
    }
    validate(rule)
    misspelt = copy.deepcopy(rule)
    misspelt["spec"]["groups"][0]["rules"][0]["expresion"] = "1"
    with pytest.raises(jsonschema.ValidationError):
        validate(misspelt)
