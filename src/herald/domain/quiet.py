"""Quiet hours: no sends between an account's local hours in the recipient's time zone,
which comes from the phone number's country (and region, where it has several zones)."""

from __future__ import annotations

from datetime import datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as number_timezone


@lru_cache(maxsize=4096)
def timezone_for(phone: str) -> str | None:
    """The IANA zone of a number; None when unknown (then quiet hours cannot apply)."""
    try:
        parsed = phonenumbers.parse(phone, None)
    except phonenumbers.NumberParseException:
        return None
    zones = [
        z for z in number_timezone.time_zones_for_number(parsed) if "/" in z and z != "Etc/Unknown"
    ]
    return zones[0] if zones else None


def quiet_until(
    now: datetime, zone: str | None, start_hour: int | None, end_hour: int | None
) -> datetime | None:
    """When sending may resume (aware, in UTC's instant), or None when it may go now.

    The window [start_hour, end_hour) is local; it may wrap midnight (21 → 8).
    """
    if zone is None or start_hour is None or end_hour is None or start_hour == end_hour:
        return None
    try:
        tz = ZoneInfo(zone)
    except ZoneInfoNotFoundError:
        return None
    local = now.astimezone(tz)
    hour = local.hour
    wraps = start_hour > end_hour
    inside = (start_hour <= hour or hour < end_hour) if wraps else start_hour <= hour < end_hour
    if not inside:
        return None
    opens = local.replace(hour=end_hour, minute=0, second=0, microsecond=0)
    if opens <= local:
        opens += timedelta(days=1)
    return opens
