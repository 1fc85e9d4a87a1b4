"""The API's configuration: built once from Settings plus explicit values, then passed down."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from types import MappingProxyType

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
    bootstrap_api_key: str = ""
    bootstrap_account_id: str = "dev"
    max_body_bytes: int = 4 * 1024 * 1024
    import_max_rows: int = 5_000_000
    import_max_line_bytes: int = 64 * 1024
    import_batch_rows: int = 5_000
    unit_prices: Mapping[Channel, Decimal] = field(default_factory=lambda: DEFAULT_UNIT_PRICES)
    currency: str = "USD"

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
        if key is not None and not bootstrap_api_key:
            bootstrap_api_key = getattr(key, "value", str(key))
        account = getattr(settings, "bootstrap_account_id", None)
        if isinstance(account, str) and account and bootstrap_account_id == "dev":
            bootstrap_account_id = account
        max_body = getattr(settings, "api_max_body_bytes", None)
        if isinstance(max_body, int) and "max_body_bytes" not in overrides:
            overrides["max_body_bytes"] = max_body
        return cls(
            bootstrap_api_key=bootstrap_api_key,
            bootstrap_account_id=bootstrap_account_id,
            **overrides,  # type: ignore[arg-type]
        )
