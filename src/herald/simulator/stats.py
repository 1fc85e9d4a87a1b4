"""The simulator's counters: per channel, with totals, as served on GET /_simulator/stats."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Final

from herald.domain.channels import Channel

SIMULATED: Final = (Channel.SMS, Channel.WHATSAPP, Channel.RCS, Channel.VIBER)


@dataclass(kw_only=True)
class ChannelStats:
    requests: int = 0  # send requests received (revocations are counted apart)
    accepted: int = 0  # sends the provider took (a timed-out send counts: it was taken)
    rejected: int = 0  # sends answered with an error, injected faults included
    duplicates: int = 0  # sends naming a herald message id already accepted on the channel
    timeouts: int = 0  # accepted sends left without an answer
    callbacks_sent: int = 0  # status callbacks a receiver answered 2xx (per status)
    callbacks_failed: int = 0  # status callbacks dropped after the last attempt


class SimulatorStats:
    """Counters per channel; the totals are sums over the channels."""

    def __init__(self) -> None:
        self.channels: dict[str, ChannelStats] = {c.value: ChannelStats() for c in SIMULATED}
        self.revoked = 0  # RBM revocations answered 200
        self.revoke_too_late = 0  # RBM revocations answered 404 (delivered or unknown)

    def channel(self, channel: str) -> ChannelStats:
        return self.channels.setdefault(channel, ChannelStats())

    def _total(self, name: str) -> int:
        return sum(int(getattr(stats, name)) for stats in self.channels.values())

    @property
    def requests(self) -> int:
        return self._total("requests")

    @property
    def accepted(self) -> int:
        return self._total("accepted")

    @property
    def rejected(self) -> int:
        return self._total("rejected")

    @property
    def duplicates(self) -> int:
        return self._total("duplicates")

    @property
    def timeouts(self) -> int:
        return self._total("timeouts")

    @property
    def callbacks_sent(self) -> int:
        return self._total("callbacks_sent")

    @property
    def callbacks_failed(self) -> int:
        return self._total("callbacks_failed")

    def as_json(self) -> dict[str, Any]:
        """{counter: {channel: n}} for every per-channel counter, then the other totals."""
        per_channel = {c: asdict(s) for c, s in self.channels.items()}
        body: dict[str, Any] = {
            f.name: {c: counts[f.name] for c, counts in per_channel.items()}
            for f in fields(ChannelStats)
        }
        body["callbacks"] = {"sent": self.callbacks_sent, "failed": self.callbacks_failed}
        body["revocations"] = {"revoked": self.revoked, "too_late": self.revoke_too_late}
        return body

    def __repr__(self) -> str:
        return (
            f"SimulatorStats(requests={self.requests}, accepted={self.accepted}, "
            f"rejected={self.rejected}, duplicates={self.duplicates}, "
            f"callbacks_sent={self.callbacks_sent}, callbacks_failed={self.callbacks_failed})"
        )
