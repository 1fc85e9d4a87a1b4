"""/v1/account/settings: the calling account's send rate, quiet hours and confirm workflow.

Any key of the account reads them; only an admin key changes them (403 admin_required).
Workers read them at most `account_settings_ttl_s` old, so a change applies to running
campaigns within seconds, without a restart. There is no account id in the path: a key only
ever reaches its own account.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Request
from pydantic import BaseModel, Field

from herald.api.auth import Account, AdminAccount, Pool
from herald.api.envelope import Envelope, ok
from herald.api.errors import ApiError, ErrorCode
from herald.api.fields import STRICT
from herald.store import accounts

router = APIRouter(prefix="/v1/account", tags=["account"])

# Far above what one worker sends; a typo of a few zeros is still refused.
MAX_RATE_PER_S = 100_000.0
Hour = Annotated[int, Field(ge=0, le=23, strict=True)]


class SettingsIn(BaseModel):
    """Fields left out keep their value; null clears one (the deployment's default rate, no
    quiet hours)."""

    model_config = STRICT
    rate_per_s: Annotated[float, Field(gt=0, le=MAX_RATE_PER_S)] | None = None
    quiet_start_hour: Hour | None = None
    quiet_end_hour: Hour | None = None
    confirm_requires_goal: bool | None = Field(
        default=None,
        description="Seed 002's workflow: confirm needs ready_to_send, a calculated goal and "
        "the same price at confirm (null: unchanged)",
    )


class AccountSettingsOut(BaseModel):
    rate_per_s: float | None
    quiet_start_hour: int | None
    quiet_end_hour: int | None
    confirm_requires_goal: bool


def _out(stored: accounts.AccountSettings) -> dict[str, Any]:
    start, end = stored.quiet_hours if stored.quiet_hours is not None else (None, None)
    return {
        "rate_per_s": stored.rate_per_s,
        "quiet_start_hour": start,
        "quiet_end_hour": end,
        "confirm_requires_goal": stored.confirm_requires_goal,
    }


def merged(current: accounts.AccountSettings, body: SettingsIn) -> accounts.AccountSettings:
    """The settings a PUT leaves: its fields over the stored ones; quiet hours both or
    neither (422 naming the one missing)."""
    given = body.model_fields_set
    rate = body.rate_per_s if "rate_per_s" in given else current.rate_per_s
    start, end = current.quiet_hours if current.quiet_hours is not None else (None, None)
    if "quiet_start_hour" in given:
        start = body.quiet_start_hour
    if "quiet_end_hour" in given:
        end = body.quiet_end_hour
    if (start is None) != (end is None):
        missing = "quiet_end_hour" if end is None else "quiet_start_hour"
        raise ApiError(
            ErrorCode.VALIDATION_FAILED,
            "quiet_start_hour and quiet_end_hour are set together, or both null",
            field=missing,
        )
    quiet = None if start is None or end is None else (start, end)
    workflow = current.confirm_requires_goal
    if body.confirm_requires_goal is not None:
        workflow = body.confirm_requires_goal
    return accounts.AccountSettings(
        rate_per_s=rate, quiet_hours=quiet, confirm_requires_goal=workflow
    )


@router.get("/settings", response_model=Envelope[AccountSettingsOut])
async def get_settings(request: Request, account: Account, pool: Pool) -> dict[str, Any]:
    return ok(request, _out(await accounts.settings(pool, account)))


@router.put("/settings", response_model=Envelope[AccountSettingsOut])
async def put_settings(
    request: Request, body: SettingsIn, account: AdminAccount, pool: Pool
) -> dict[str, Any]:
    new = merged(await accounts.settings(pool, account), body)
    stored = await accounts.update_settings(pool, account, new)
    if stored is None:  # the key's account cannot be missing (a foreign key holds it)
        raise ApiError(ErrorCode.NOT_FOUND, "account not found")
    return ok(request, _out(stored))
