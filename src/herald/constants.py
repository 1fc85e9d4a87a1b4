"""Every name herald puts on the wire: topics, consumer groups, HTTP paths.

Metric names live in metrics.py next to their definitions; label keys are listed here.
"""

from typing import Final

# Topic names (without the deployment's HERALD_TOPIC_PREFIX).
TOPIC_CAMPAIGN_EVENTS: Final = "campaign-events"
TOPIC_DISPATCH_BATCHES: Final = "dispatch-batches"
TOPIC_STATUS_EVENTS: Final = "status-events"
TOPIC_DEAD_LETTER: Final = "dead-letter"

ALL_TOPICS: Final = (
    TOPIC_CAMPAIGN_EVENTS,
    TOPIC_DISPATCH_BATCHES,
    TOPIC_STATUS_EVENTS,
    TOPIC_DEAD_LETTER,
)

# Consumer group ids (also prefixed).
GROUP_SCHEDULER: Final = "herald-scheduler"
GROUP_WORKER: Final = "herald-worker"
GROUP_STATUS: Final = "herald-status"

# Event types and versions on campaign-events.
EVENT_CAMPAIGN_CONFIRMED: Final = "campaign.confirmed"
CAMPAIGN_CONFIRMED_VERSIONS: Final = frozenset({1})

# Ingress paths.
PATH_CALLBACK_TWILIO: Final = "/callbacks/twilio"
PATH_CALLBACK_WHATSAPP: Final = "/callbacks/whatsapp"
PATH_CALLBACK_RBM: Final = "/callbacks/rbm"
PATH_CALLBACK_VIBER: Final = "/callbacks/viber"
PATH_CALLBACK_EMAIL: Final = "/callbacks/email"

# Kafka header carrying the dead-letter reason.
HEADER_DLQ_REASON: Final = "herald-dlq-reason"

# Prometheus label keys (bounded values only).
LABEL_ACCOUNT: Final = "account"
LABEL_CHANNEL: Final = "channel"
LABEL_PROVIDER: Final = "provider"
LABEL_OUTCOME: Final = "outcome"
LABEL_STATUS: Final = "status"
LABEL_TOPIC: Final = "topic"
LABEL_REASON: Final = "reason"
LABEL_ROLE: Final = "role"
