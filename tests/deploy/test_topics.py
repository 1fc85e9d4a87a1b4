"""deploy/ owns the topics: Strimzi KafkaTopics (kafka.strimzi.io/v1) whose names are exactly
the ones herald uses, sized and replicated for production, and KEDA scaling each consumer on
its own group and topic."""

from __future__ import annotations

import pytest

from herald import constants
from herald.settings import Settings
from tests.deploy.render import (
    OVERLAYS,
    mounted_file,
    of_kind,
    production_env,
    render,
    role_of,
)

# Consumer role → (topic, consumer group) it reads.
CONSUMERS = {
    "scheduler": (constants.TOPIC_CAMPAIGN_EVENTS, constants.GROUP_SCHEDULER),
    "worker": (constants.TOPIC_DISPATCH_BATCHES, constants.GROUP_WORKER),
    "status": (constants.TOPIC_STATUS_EVENTS, constants.GROUP_STATUS),
}
PRODUCTION_PARTITIONS = {
    constants.TOPIC_CAMPAIGN_EVENTS: 12,
    constants.TOPIC_DISPATCH_BATCHES: 24,
    constants.TOPIC_STATUS_EVENTS: 24,
    constants.TOPIC_DEAD_LETTER: 6,
}
FAKE = {"HERALD_DATABASE_URL": "postgresql://herald@db.invalid/herald"}
# HERALD_KAFKA_SASL_MECHANISM → KEDA's Kafka scaler's `sasl`.
KEDA_SASL = {"PLAIN": "plaintext", "SCRAM-SHA-256": "scram_sha256", "SCRAM-SHA-512": "scram_sha512"}


def settings_of(overlay: str, role: str) -> Settings:
    return Settings.from_env(production_env(overlay, role, FAKE))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_topic_names_are_exactly_the_ones_herald_uses(overlay: str) -> None:
    docs = render(overlay)
    topics = of_kind(docs, "KafkaTopic")
    assert topics
    for topic in topics.values():
        assert topic["apiVersion"] == "kafka.strimzi.io/v1"
        assert topic["metadata"]["labels"]["strimzi.io/cluster"] == "herald"
    names = sorted(t["spec"]["topicName"] for t in topics.values())
    for role in ("api", "scheduler", "worker", "status", "ingress", "relay"):
        settings = settings_of(overlay, role)
        assert names == sorted(settings.topic(n) for n in constants.ALL_TOPICS), role
        # Herald uses these topics and never creates one of its own.
        assert settings.kafka_create_topics is False, role


def test_production_topics_survive_a_broker_loss() -> None:
    settings = settings_of("production", "worker")
    topics = {
        t["spec"]["topicName"]: t["spec"]
        for t in of_kind(render("production"), "KafkaTopic").values()
    }
    for name, partitions in PRODUCTION_PARTITIONS.items():
        spec = topics[settings.topic(name)]
        assert spec["partitions"] == partitions, name
        # acks=all then survives the loss of a broker without losing a write.
        assert spec["replicas"] == 3, name
        assert int(spec["config"]["min.insync.replicas"]) == 2, name
        assert int(spec["config"]["retention.ms"]) >= 86_400_000, name


def test_dev_topics_fit_one_broker() -> None:
    for topic in of_kind(render("dev"), "KafkaTopic").values():
        spec = topic["spec"]
        assert spec["replicas"] == 1 and int(spec["config"]["min.insync.replicas"]) == 1
        assert spec["partitions"] == 3


def test_keda_scales_consumers_on_their_own_group_and_topic() -> None:
    docs = render("production")
    deployments = of_kind(docs, "Deployment")
    partitions = {
        t["spec"]["topicName"]: t["spec"]["partitions"]
        for t in of_kind(docs, "KafkaTopic").values()
    }
    auths = of_kind(docs, "TriggerAuthentication")
    kafka_scaled = set()
    for name, scaler in of_kind(docs, "ScaledObject").items():
        target = deployments[scaler["spec"]["scaleTargetRef"]["name"]]
        # KEDA owns the count; a `replicas` field would reset it on every apply.
        assert "replicas" not in target["spec"], name
        for trigger in scaler["spec"]["triggers"]:
            if trigger["type"] != "kafka":
                continue
            role = role_of(target)
            settings = settings_of("production", role)
            topic, group = CONSUMERS[role]
            meta = trigger["metadata"]
            assert meta["topic"] == settings.topic(topic), name
            assert meta["consumerGroup"] == settings.topic(group), name
            assert meta["bootstrapServers"] == settings.kafka_bootstrap, name
            # Pods beyond the partition count would idle in the group.
            assert scaler["spec"]["maxReplicaCount"] <= partitions[meta["topic"]], name
            # KEDA reads the lag with the same security as herald.
            protocol = settings.kafka_security_protocol
            assert meta.get("tls", "disable") == (
                "enable" if protocol.endswith("SSL") else "disable"
            )
            if protocol.startswith("SASL"):
                assert meta["sasl"] == KEDA_SASL[settings.kafka_sasl_mechanism], name
                auth = auths[trigger["authenticationRef"]["name"]]
                refs = {
                    r["parameter"]: (r["name"], r["key"]) for r in auth["spec"]["secretTargetRef"]
                }
                assert refs["username"] == ("herald-secrets", "HERALD_KAFKA_SASL_USERNAME")
                assert refs["password"] == ("herald-secrets", "HERALD_KAFKA_SASL_PASSWORD")
            if settings.kafka_ssl_cafile:
                ca = mounted_file(target, settings.kafka_ssl_cafile)
                assert refs["ca"] == ca, name
            kafka_scaled.add(role)
    assert {"worker", "status"} <= kafka_scaled
