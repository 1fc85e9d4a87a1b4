"""The API's configuration: built once from Settings plus explicit values, then passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

from herald import preflight
from herald.domain.channels import Channel
from herald.settings import Settings

# Estimated price of one message (one SMS segment) per channel, in `currency`.
DEFAULT_UNIT_PRICES: Mapping[Channel, Decimal] = MappingProxyType(
    {
        Channel.SMS: Decimal("0.0079"),
        Channel.WHATSAPP: Decimal("0.0050"),
        Channel.RCS: Decimal("0.0060"),
        Channel.VIBER: Decimal("0.0045"),
        Channel.EMAIL: Decimal("0.0005"),
    }
)


@dataclass(frozen=True, kw_only=True)
class ApiConfig:
    # A credential: kept out of repr, so a logged or printed config never shows it.
    bootstrap_api_key: str = field(default="", repr=False)
    bootstrap_account_id: str = "dev"
    max_body_bytes: int = 4 * 1024 * 1024
    # Requests per second each API key may make on average, and at once; 0 turns it off.
    rate_limit_per_s: float = 50.0
    rate_limit_burst: int = 100
    # Failed authentications per client address, and live keys per account.
    auth_failure_rate_per_s: float = 0.2
    auth_failure_burst: int = 20
    max_keys_per_account: int = 100
    import_max_rows: int = 5_000_000
    import_max_line_bytes: int = 64 * 1024
    import_batch_rows: int = 5_000
    unit_prices: Mapping[Channel, Decimal] = field(default_factory=lambda: DEFAULT_UNIT_PRICES)
    currency: str = "USD"
    # Channels this deployment can send (production disables a channel without credentials).
    channels: frozenset[Channel] = frozenset(Channel)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        bootstrap_api_key: str = "",
        bootstrap_account_id: str = "dev",
        **overrides: object,
    ) -> ApiConfig:
        """Until Settings carries the API's fields, callers pass them explicitly."""
        key = getattr(settings, "bootstrap_api_key", None)
        if not settings.is_development:
            # A key set by environment is a development convenience; production mints keys.
            key = None
            bootstrap_api_key = ""
        elif key is not None and not bootstrap_api_key:
            bootstrap_api_key = getattr(key, "value", str(key))
        account = getattr(settings, "bootstrap_account_id", None)
        if isinstance(account, str) and account and bootstrap_account_id == "dev":
            bootstrap_account_id = account
        for setting, name, kind in (
            ("api_max_body_bytes", "max_body_bytes", int),
            ("api_rate_limit_per_s", "rate_limit_per_s", (int, float)),
            ("api_rate_limit_burst", "rate_limit_burst", int),
            ("api_auth_failure_rate_per_s", "auth_failure_rate_per_s", (int, float)),
            ("api_auth_failure_burst", "auth_failure_burst", int),
            ("api_max_keys_per_account", "max_keys_per_account", int),
        ):
            value = getattr(settings, setting, None)
            if isinstance(value, kind) and name not in overrides:
                overrides[name] = value
        overrides.setdefault("channels", preflight.enabled_channels(settings))
        return cls(
            bootstrap_api_key=bootstrap_api_key,
            bootstrap_account_id=bootstrap_account_id,
            **overrides,  # type: ignore[arg-type]
        )
