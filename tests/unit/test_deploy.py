"""deploy/ and the Dockerfile: YAML that loads, schemas that validate, and manifests that agree
with the code (roles, settings, topics, groups, ports, drain time).

Schema checks of each resource file run everywhere; checks of the rendered overlays need
`kubectl kustomize` and are skipped where kubectl is absent.
"""

from __future__ import annotations

import functools
import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from herald import constants, runner
from herald.settings import Settings, env_name

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "production")
# The oldest Kubernetes herald's manifests support, and the newest schema bundled.
K8S_VERSIONS = ("1.30.0", "1.37.0")
CRD_SCHEMAS = {
    "ScaledObject": "scaledobject.schema.json",
    "KafkaTopic": "kafkatopic.schema.json",
    "PodMonitor": "podmonitor.schema.json",
}
KUBECTL = shutil.which("kubectl")
needs_kubectl = pytest.mark.skipif(KUBECTL is None, reason="kubectl is not installed")
# Consumer role → (topic, consumer group) it reads.
CONSUMERS = {
    "scheduler": (constants.TOPIC_CAMPAIGN_EVENTS, constants.GROUP_SCHEDULER),
    "worker": (constants.TOPIC_DISPATCH_BATCHES, constants.GROUP_WORKER),
    "status": (constants.TOPIC_STATUS_EVENTS, constants.GROUP_STATUS),
}

Doc = dict[str, Any]


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


def _validate(doc: Doc) -> None:
    kind = doc["kind"]
    if kind in CRD_SCHEMAS:
        schema = json.loads((DEPLOY / "schemas" / CRD_SCHEMAS[kind]).read_text())
        jsonschema.validate(doc, schema)
        return
    for version in K8S_VERSIONS:
        kubernetes_validate.validate(doc, version, strict=True)


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
        _validate(doc)


def _generator_literals() -> dict[str, str]:
    found: dict[str, str] = {}
    for kustomization in _kustomizations():
        spec = yaml.safe_load(kustomization.read_text())
        for generator in spec.get("configMapGenerator", []) + spec.get("secretGenerator", []):
            for literal in generator.get("literals", []):
                key, _, value = literal.partition("=")
                found[key] = value
    return found


def test_every_herald_variable_is_a_setting_with_a_readable_value() -> None:
    known = {env_name(name) for name in Settings.__dataclass_fields__}
    literals = {k: v for k, v in _generator_literals().items() if k.startswith("HERALD_")}
    assert literals
    unknown = sorted(set(literals) - known)
    assert not unknown, f"not herald settings: {unknown}"
    Settings.from_env(literals)  # every value casts to its field's type


def test_dockerfile_builds_a_non_root_production_image() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^USER 10001(:10001)?$", dockerfile, re.MULTILINE)
    assert 'ENTRYPOINT ["herald"]' in dockerfile
    # Embedded services and test tools stay out of the production image.
    assert "[embedded]" not in dockerfile and "[dev]" not in dockerfile
    for image in re.findall(r"^ARG PYTHON_IMAGE=(\S+)", dockerfile, re.MULTILINE):
        assert ":" in image and not image.endswith(":latest")
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    # Ignore everything, then let in what the build copies: no .venv, .git or data dirs.
    assert rules[0] == "*" and "!src/" in rules


# Rendered overlays (kubectl kustomize).


@functools.cache
def render(overlay: str) -> tuple[Doc, ...]:
    assert KUBECTL is not None
    built = subprocess.run(
        [KUBECTL, "kustomize", str(DEPLOY / "overlays" / overlay)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert built.returncode == 0, built.stderr
    return tuple(d for d in yaml.safe_load_all(built.stdout) if d)


def _of(docs: tuple[Doc, ...], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _config(docs: tuple[Doc, ...]) -> Settings:
    (config,) = [d for d in docs if d["kind"] == "ConfigMap"]
    return Settings.from_env(config["data"])


def _container(deployment: Doc) -> Doc:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return container  # type: ignore[no-any-return]


def _role(deployment: Doc) -> str:
    args = _container(deployment)["args"]
    assert args[0] == "run" and len(args) == 2, args
    return str(args[1])


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_rendered_overlay_validates(overlay: str) -> None:
    docs = render(overlay)
    for doc in docs:
        try:
            _validate(doc)
        except (kubernetes_validate.ValidationError, jsonschema.ValidationError) as exc:
            pytest.fail(f"{overlay}: {doc['kind']}/{doc['metadata']['name']}: {exc}")


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_role_runs_as_a_probed_drained_budgeted_deployment(overlay: str) -> None:
    docs = render(overlay)
    settings = _config(docs)
    deployments = _of(docs, "Deployment")
    roles = {_role(d): d for d in deployments.values()}
    assert set(roles) <= set(runner.ROLES), "a Deployment runs a role herald does not have"
    assert set(runner.ROLES) - {"simulator"} <= set(roles), "a herald role has no Deployment"
    budgets = _of(docs, "PodDisruptionBudget")
    config_names = {n for n in _of(docs, "ConfigMap")}
    for role, deployment in roles.items():
        where = f"{overlay}/{role}"
        pod = deployment["spec"]["template"]["spec"]
        container = _container(deployment)
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), where
        assert "memory" in resources["limits"], where
        ports = {p["name"]: p["containerPort"] for p in container["ports"]}
        assert ports["metrics"] == settings.metrics_port, where
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(settings.metrics_port), where
        for probe, path in (
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/readyz"),
        ):
            assert container[probe]["httpGet"] == {"path": path, "port": "metrics"}, where
        # A consumer's startup allowance covers its group join (at least two minutes).
        startup = container["startupProbe"]
        if role in CONSUMERS:
            assert startup["periodSeconds"] * startup["failureThreshold"] >= 120, where
        pre_stop_s = 0
        if "lifecycle" in container:
            command = container["lifecycle"]["preStop"]["exec"]["command"]
            pre_stop_s = int(command[-1]) if command[0] == "sleep" else 0
        grace_s = pod["terminationGracePeriodSeconds"]
        assert grace_s >= settings.drain_timeout_s + pre_stop_s + 10, where
        if role == "ingress":
            assert ports["http"] == settings.ingress_port, where
        env_from = container["envFrom"]
        assert env_from[0]["configMapRef"]["name"] in config_names, where
        assert env_from[1]["secretRef"]["name"].startswith("herald-secrets"), where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert container["securityContext"]["readOnlyRootFilesystem"] is True, where
        labels = deployment["spec"]["selector"]["matchLabels"]
        covering = [
            b
            for b in budgets.values()
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        # The development simulator is one pod with nothing to protect.
        assert covering or role == "simulator", f"{where} has no PodDisruptionBudget"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topics_match_the_code(overlay: str) -> None:
    docs = render(overlay)
    settings = _config(docs)
    topics = {t["spec"]["topicName"]: t["spec"] for t in _of(docs, "KafkaTopic").values()}
    assert set(topics) == {settings.topic(name) for name in constants.ALL_TOPICS}
    batches = topics[settings.topic(constants.TOPIC_DISPATCH_BATCHES)]
    assert batches["partitions"] == settings.topic_partitions
    for name, spec in topics.items():
        assert int(spec["config"]["retention.ms"]) >= 86_400_000, name
        assert int(spec["config"]["min.insync.replicas"]) <= spec["replicas"], name
        if overlay == "production":
            # acks=all then survives the loss of a broker without losing a write.
            assert spec["replicas"] >= 3, name
            assert 2 <= int(spec["config"]["min.insync.replicas"]) < spec["replicas"], name


@needs_kubectl
def test_keda_scales_consumers_on_their_own_group_and_topic() -> None:
    docs = render("production")
    settings = _config(docs)
    deployments = _of(docs, "Deployment")
    partitions = {
        t["spec"]["topicName"]: t["spec"]["partitions"] for t in docs if t["kind"] == "KafkaTopic"
    }
    scaled = _of(docs, "ScaledObject")
    kafka_scaled = set()
    for name, scaler in scaled.items():
        target = deployments[scaler["spec"]["scaleTargetRef"]["name"]]
        # KEDA owns the count; a `replicas` field would reset it on every apply.
        assert "replicas" not in target["spec"], name
        for trigger in scaler["spec"]["triggers"]:
            if trigger["type"] != "kafka":
                continue
            role = _role(target)
            topic, group = CONSUMERS[role]
            meta = trigger["metadata"]
            assert meta["topic"] == settings.topic(topic), name
            assert meta["consumerGroup"] == settings.topic(group), name
            assert meta["bootstrapServers"] == settings.kafka_bootstrap, name
            # Pods beyond the partition count would idle in the group.
            assert scaler["spec"]["maxReplicaCount"] <= partitions[meta["topic"]], name
            kafka_scaled.add(role)
    assert {"worker", "status"} <= kafka_scaled


@needs_kubectl
def test_production_scrapes_pods_and_pins_the_image() -> None:
    docs = render("production")
    (monitor,) = _of(docs, "PodMonitor").values()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    for deployment in _of(docs, "Deployment").values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        ports = {p["name"] for p in _container(deployment)["ports"]}
        assert endpoint["port"] in ports
        image = _container(deployment)["image"]
        assert re.search(r":[0-9][\w.-]*$|@sha256:", image), image
    (namespace,) = _of(docs, "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"


@needs_kubectl
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_migration_job_runs_herald_migrate(overlay: str) -> None:
    (job,) = _of(render(overlay), "Job").values()
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    (container,) = pod["containers"]
    assert container["args"] == ["migrate"]


@needs_kubectl
def test_dev_is_self_contained() -> None:
    docs = render("dev")
    deployments = _of(docs, "Deployment")
    assert "simulator" in {_role(d) for d in deployments.values()}
    secrets = {name.rsplit("-", 1)[0] for name in _of(docs, "Secret")}
    assert "herald-secrets" in secrets  # generated for dev; external in production
    settings = Settings.from_env(
        {
            **next(iter(_of(docs, "ConfigMap").values()))["data"],
            **_generator_literals_of("dev"),
        }
    )
    assert settings.database_url and "herald-postgres" in settings.database_url
    assert settings.twilio_base_url.startswith("http://herald-simulator")


def _generator_literals_of(overlay: str) -> dict[str, str]:
    spec = yaml.safe_load((DEPLOY / "overlays" / overlay / "kustomization.yaml").read_text())
    found = {}
    for generator in spec.get("secretGenerator", []):
        for literal in generator.get("literals", []):
            key, _, value = literal.partition("=")
            if key.startswith("HERALD_"):
                found[key] = value
    return found


def _docker_engine() -> bool:
    docker = shutil.which("docker")
    if docker is None:
        return False
    probe = subprocess.run([docker, "info"], capture_output=True, timeout=20, check=False)
    return probe.returncode == 0


@pytest.mark.skipif(
    os.environ.get("TEST_DOCKER_BUILD") != "1" or not _docker_engine(),
    reason="builds the image only with TEST_DOCKER_BUILD=1 and a Docker engine",
)
def test_image_builds_and_runs_the_cli() -> None:
    tag = "herald:test-build"
    subprocess.run(["docker", "build", "-t", tag, str(ROOT)], check=True, timeout=1200)
    shown = subprocess.run(
        ["docker", "run", "--rm", tag, "settings"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "HERALD_METRICS_PORT" in shown.stdout
