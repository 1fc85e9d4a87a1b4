"""A local provider simulator speaking Twilio's wire format, with deterministic outcomes."""

from herald.simulator.app import Simulator, SimulatorStats
from herald.simulator.outcomes import SmsOutcome, expected_accepted, expected_final, sms_outcome

__all__ = [
    "Simulator",
    "SimulatorStats",
    "SmsOutcome",
    "expected_accepted",
    "expected_final",
    "sms_outcome",
]
