"""Which providers an account sends through, per channel, in priority order.

provider_accounts rows (the account's own, then deployment-wide ones) win; a channel without
rows uses the deployment's default provider from settings. Built providers are kept and the
lookup is cached briefly, so a send costs no query.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping

import aiohttp
import asyncpg

from herald.domain.channels import Channel
from herald.providers.base import Provider
from herald.providers.registry import KINDS, ProviderConfigError, build_one
from herald.settings import Settings
from herald.store import provider_accounts

log = logging.getLogger(__name__)

CACHE_S = 30.0


class Directory:
    def __init__(
        self,
        *,
        settings: Settings,
        pool: asyncpg.Pool,
        session: aiohttp.ClientSession | None,
        defaults: Mapping[Channel, Provider],
    ) -> None:
        self.settings = settings
        self.pool = pool
        self.session = session
        self.defaults = dict(defaults)
        self._built: dict[str, Provider] = {}
        # Send rate of a provider account (its own contract), by label, where one is set.
        self.rates: dict[str, float] = {}
        self._cache: dict[str, tuple[float, dict[Channel, list[Provider]]]] = {}

    async def for_account(self, account_id: str) -> dict[Channel, list[Provider]]:
        cached = self._cache.get(account_id)
        now = time.monotonic()
        if cached is not None and now - cached[0] < CACHE_S:
            return cached[1]
        chosen: dict[Channel, list[Provider]] = {}
        if self.session is not None:
            for row in await provider_accounts.for_account(self.pool, account_id):
                provider = self._build(row)
                if provider is not None:
                    chosen.setdefault(Channel(row.channel), []).append(provider)
        for channel, provider in self.defaults.items():
            chosen.setdefault(channel, [provider])
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[account_id] = (now, chosen)
        return chosen

    def _build(self, row: provider_accounts.ProviderAccount) -> Provider | None:
        built = self._built.get(row.id)
        if built is not None:
            return built
        try:
            if KINDS.get(row.provider) is not Channel(row.channel):
                raise ProviderConfigError(f"{row.provider} cannot send {row.channel}")
            secret = None
            if row.secret_ref:
                secret = self.settings.secrets.get(row.secret_ref)
                if secret is None:
                    raise ProviderConfigError(f"HERALD_SECRET_{row.secret_ref} is not set")
            assert self.session is not None
            provider = build_one(
                row.provider,
                settings=self.settings,
                session=self.session,
                base_url=row.base_url,
                options=row.options,
                secret=secret,
            )
        except (ProviderConfigError, ValueError) as exc:
            # A broken row must not stop sending: the next provider account takes over.
            log.error(
                "provider account %s unusable: %s", row.label, exc, extra={"event": "bad_provider"}
            )
            return None
        provider.name = row.label  # attempts and metrics name the provider account
        rate = row.options.get("rate_per_s")
        if isinstance(rate, int | float) and rate > 0:
            self.rates[row.label] = float(rate)
        self._built[row.id] = provider
        return provider

    def chosen(
        self, providers: Mapping[Channel, list[Provider]], choice: Mapping[Channel, str]
    ) -> dict[Channel, list[Provider]]:
        """The account's providers with a campaign's own choice per channel (provider account
        ids, checked at confirm to be the account's): that channel sends by it alone, so the
        sender the campaign named is the one recipients see. A choice that is no longer usable
        (disabled or broken since) leaves the channel's usual order."""
        routed = dict(providers)
        for channel, ident in choice.items():
            provider = self._built.get(ident)
            if provider is not None and provider in providers.get(channel, ()):
                routed[channel] = [provider]
        return routed

    def by_label(self, label: str, channel: Channel) -> Provider | None:
        """The provider an attempt names (its label), else the channel's default."""
        for provider in self._built.values():
            if provider.name == label:
                return provider
        return self.defaults.get(channel)

    async def close(self) -> None:
        for provider in self._built.values():
            await provider.close()
