"""Checks on a campaign's named contacts at send: every id must be one of the account's
contacts (422 `audience_invalid` naming the unknown ones), and an audience of named contacts
only must hold one reachable on some channel of the chain (422 `audience_not_reachable`)."""

from __future__ import annotations

from typing import Any

from herald.api.campaign_spec import CampaignIn
from herald.api.errors import ApiError, ErrorCode
from herald.api.fields import parse_uuid
from herald.domain.channels import Channel, chain
from herald.store import contacts_api

# The contact address each channel sends to (contacts_api.reach's flags).
ADDRESS = {
    Channel.SMS: "phone",
    Channel.WHATSAPP: "phone",
    Channel.RCS: "phone",
    Channel.VIBER: "viber",
    Channel.EMAIL: "email",
}
SHOWN_IDS = 10


def reachable(contact: dict[str, Any], channels: tuple[Channel, ...]) -> bool:
    return any(contact[ADDRESS[c]] for c in channels)


def only_contacts(spec: CampaignIn) -> bool:
    """The audience is the named contacts and nothing else."""
    others = (
        spec.audience_list_ids(),
        spec.segment_id,
        spec.tags,
        spec.destinations,
        spec.failed_of,
    )
    return bool(spec.contact_ids) and not any(others)


async def check_contacts(conn: Any, account: str, spec: CampaignIn) -> None:
    if not spec.contact_ids:
        return
    wanted = list(dict.fromkeys(spec.contact_ids))
    ids = [parse_uuid(v, ErrorCode.AUDIENCE_INVALID, field="contact_ids") for v in wanted]
    found = await contacts_api.reach(conn, account, ids)
    unknown = [raw for raw, ident in zip(wanted, ids, strict=True) if ident not in found]
    if unknown:
        shown = ", ".join(unknown[:SHOWN_IDS])
        more = f" and {len(unknown) - SHOWN_IDS} more" if len(unknown) > SHOWN_IDS else ""
        raise ApiError(
            ErrorCode.AUDIENCE_INVALID, f"no such contact: {shown}{more}", field="contact_ids"
        )
    channels = chain(spec.mode)
    if only_contacts(spec) and not any(reachable(c, channels) for c in found.values()):
        names = ", ".join(c.value for c in channels)
        raise ApiError(
            ErrorCode.AUDIENCE_NOT_REACHABLE,
            f"none of the contacts has an address on {names}",
            field="contact_ids",
        )
