"""Channel identities: a contact's address on a channel that does not address people by phone
number or email (a Viber user id).

Viber never tells herald a user's phone number. A user is linked to a contact when they open
the account's bot through a deep link carrying the contact's id as `context`
(`viber://pa?chatURI=<bot>&context=<contact id>`): Viber's `conversation_started` callback
then names both the user id and that context. `unsubscribed` unlinks the user id. The ingress
has no database, so it publishes these observations on status-events (keyed by the user id, so
they stay in order) and the status consumer writes them to contact_identities.
"""

from __future__ import annotations

import uuid
from typing import Final, NamedTuple

# An item of a status-events record that is an identity observation, not a status event.
KIND: Final = "identity"
MAX_ADDRESS_CHARS: Final = 200


class IdentityEvent(NamedTuple):
    channel: str
    address: str  # the channel's own id of the user
    linked: bool  # True: address belongs to contact_ref; False: the user left (unsubscribed)
    occurred_at_ms: int
    contact_ref: str | None = None  # a contact id, when linking


def contact_ref(value: object) -> str | None:
    """The contact id a deep link's context names, canonical; None for anything else."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        return str(uuid.UUID(value.strip()))
    except ValueError:
        return None


def is_identity(raw: object) -> bool:
    return isinstance(raw, dict) and raw.get("k") == KIND


def to_wire(event: IdentityEvent) -> dict[str, object]:
    wire: dict[str, object] = {
        "k": KIND,
        "ch": event.channel,
        "u": event.address,
        "l": event.linked,
        "t": event.occurred_at_ms,
    }
    if event.contact_ref:
        wire["ref"] = event.contact_ref
    return wire


def from_wire(raw: object) -> IdentityEvent:
    """Raises ValueError naming what is wrong; the status consumer dead-letters the record."""
    if not isinstance(raw, dict) or raw.get("k") != KIND:
        raise ValueError("identity event must be an object of kind identity")
    channel, address, linked = raw.get("ch"), raw.get("u"), raw.get("l")
    if not isinstance(channel, str) or not channel:
        raise ValueError("ch must be a channel")
    if not isinstance(address, str) or not 0 < len(address) <= MAX_ADDRESS_CHARS:
        raise ValueError("u must be an address")
    if not isinstance(linked, bool):
        raise ValueError("l must be a boolean")
    ref = contact_ref(raw.get("ref"))
    if linked and ref is None:
        raise ValueError("a link needs ref, a contact id")
    occurred = raw.get("t", 0)
    return IdentityEvent(
        channel=channel,
        address=address,
        linked=linked,
        occurred_at_ms=occurred if type(occurred) is int and occurred > 0 else 0,
        contact_ref=ref if linked else None,
    )
