"""Every role runs as a probed, drained, budgeted Deployment whose windows agree with the
settings it runs with: startup within the startupProbe, drain and final flush within the grace
period after preStop."""

from __future__ import annotations

import pytest

from herald import runner
from herald.settings import Settings
from tests.deploy.render import (
    OVERLAYS,
    Doc,
    container,
    of_kind,
    pod_spec,
    production_env,
    render,
    roles,
    workload_for,
)

FAKE = {"HERALD_DATABASE_URL": "postgresql://herald@db.invalid/herald"}


def settings_of(overlay: str, role: str) -> Settings:
    return Settings.from_env(production_env(overlay, role, FAKE))


def pre_stop_s(spec: Doc) -> float:
    """Seconds the preStop hook holds SIGTERM back: `sleep N` or the kubelet's sleep action."""
    hook = spec.get("lifecycle", {}).get("preStop")
    if hook is None:
        return 0.0
    if "sleep" in hook:
        return float(hook["sleep"]["seconds"])
    command = hook["exec"]["command"]
    assert command[0] == "sleep" and len(command) == 2, command
    return float(command[1])


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_role_has_a_deployment(overlay: str) -> None:
    found = roles(render(overlay))
    assert set(found) <= set(runner.ROLES), "a Deployment runs a role herald does not have"
    assert set(runner.ROLES) - {"simulator"} <= set(found), "a herald role has no Deployment"
    assert ("simulator" in found) == (overlay == "dev")


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_shutdown_fits_in_the_grace_period_and_startup_in_the_probe(overlay: str) -> None:
    for role, deployment in roles(render(overlay)).items():
        where = f"{overlay}/{role}"
        settings = settings_of(overlay, role)
        spec = container(deployment)
        grace_s = pod_spec(deployment)["terminationGracePeriodSeconds"]
        # SIGTERM comes when preStop ends; the drain and the final flush (with a hung broker
        # each runs to its timeout) must end before the kill.
        shutdown_s = settings.drain_timeout_s + settings.shutdown_flush_timeout_s
        assert shutdown_s < grace_s - pre_stop_s(spec), where
        # A role that waits for PostgreSQL and Kafka gives up, and says why, before the
        # kubelet restarts it.
        startup = spec["startupProbe"]
        window_s = startup["periodSeconds"] * startup["failureThreshold"]
        assert window_s >= settings.startup_timeout_s, where


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_role_is_probed_sized_budgeted_and_locked_down(overlay: str) -> None:
    docs = render(overlay)
    budgets = of_kind(docs, "PodDisruptionBudget")
    services = of_kind(docs, "Service")
    for role, deployment in roles(docs).items():
        where = f"{overlay}/{role}"
        settings = settings_of(overlay, role)
        pod = pod_spec(deployment)
        spec = container(deployment)
        resources = spec["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"]), where
        assert "memory" in resources["limits"], where
        ports = {p["name"]: p["containerPort"] for p in spec["ports"]}
        assert ports["metrics"] == settings.metrics_port, where
        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        assert annotations["prometheus.io/port"] == str(settings.metrics_port), where
        for probe, path in (
            ("livenessProbe", "/livez"),
            ("readinessProbe", "/readyz"),
            ("startupProbe", "/readyz"),
        ):
            assert spec[probe]["httpGet"] == {"path": path, "port": "metrics"}, where
        served = {"api": settings.api_port, "ingress": settings.ingress_port}
        if role in served:
            assert ports["http"] == served[role], where
            service = services[deployment["metadata"]["name"]]
            (port,) = service["spec"]["ports"]
            assert port["targetPort"] == "http", where
            # Endpoints go before the listener stops taking requests.
            assert pre_stop_s(spec) > 0, where
        assert pod["securityContext"]["runAsNonRoot"] is True, where
        assert pod["automountServiceAccountToken"] is False, where
        assert spec["securityContext"]["readOnlyRootFilesystem"] is True, where
        assert spec["securityContext"]["allowPrivilegeEscalation"] is False, where
        labels = deployment["spec"]["selector"]["matchLabels"]
        covering = [
            b
            for b in budgets.values()
            if b["spec"]["selector"]["matchLabels"].items() <= labels.items()
        ]
        # The development simulator is one pod with nothing to protect.
        assert covering or role == "simulator", f"{where} has no PodDisruptionBudget"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_migration_job_runs_herald_migrate(overlay: str) -> None:
    job = workload_for(render(overlay), "migrate")
    pod = pod_spec(job)
    assert pod["restartPolicy"] in {"Never", "OnFailure"}
    assert container(job)["args"] == ["migrate"]
    # Room for herald's own wait for PostgreSQL, then the migrations.
    assert job["spec"]["activeDeadlineSeconds"] > settings_of(overlay, "migrate").startup_timeout_s


def test_production_scrapes_every_pod_in_a_restricted_namespace() -> None:
    docs = render("production")
    (monitor,) = of_kind(docs, "PodMonitor").values()
    (endpoint,) = monitor["spec"]["podMetricsEndpoints"]
    selector = monitor["spec"]["selector"]["matchLabels"]
    for deployment in of_kind(docs, "Deployment").values():
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert selector.items() <= labels.items()
        assert endpoint["port"] in {p["name"] for p in container(deployment)["ports"]}
    (namespace,) = of_kind(docs, "Namespace").values()
    assert namespace["metadata"]["labels"]["pod-security.kubernetes.io/enforce"] == "restricted"
