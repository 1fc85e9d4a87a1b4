"""A local provider simulator: Twilio, WhatsApp, RBM and Viber wire formats, deterministic
outcomes per destination number, and injectable misbehaviour."""

from herald.simulator.app import Simulator
from herald.simulator.behaviour import Behaviour
from herald.simulator.outcomes import (
    ChannelOutcome,
    SmsOutcome,
    expected_accepted,
    expected_final,
    expected_path,
    rcs_outcome,
    sms_outcome,
    viber_outcome,
    whatsapp_outcome,
)
from herald.simulator.stats import SimulatorStats

__all__ = [
    "Behaviour",
    "ChannelOutcome",
    "Simulator",
    "SimulatorStats",
    "SmsOutcome",
    "expected_accepted",
    "expected_final",
    "expected_path",
    "rcs_outcome",
    "sms_outcome",
    "viber_outcome",
    "whatsapp_outcome",
]
