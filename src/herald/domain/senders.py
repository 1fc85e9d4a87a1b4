"""Which senders each channel accepts: the checks a campaign's `sender` passes before any
provider sees it (seed 003's 1604, `'data.from' is invalid`).

- SMS: an alphanumeric sender id (1 to 11 of A-Z, a-z, 0-9 and space, at least one letter;
  what carriers display), an E.164 number, or a short code (3 to 8 digits).
- RCS: an RBM agent id (letters, digits, `_`, `-`, `.`; up to 100; `@rbm.goog` allowed).
- Viber: the sender name a bot shows, up to 28 characters (Viber's limit), no control
  characters.
- Email: an address, or `Name <address>`.
- WhatsApp sends from the provider account's number; the content has no sender to check.
"""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email

from herald.domain.channels import Channel

SMS_ALPHANUMERIC = re.compile(r"^(?=.*[A-Za-z])[A-Za-z0-9 ]{1,11}$")
SMS_NUMBER = re.compile(r"^\+[1-9]\d{6,14}$")
SMS_SHORT_CODE = re.compile(r"^\d{3,8}$")
RCS_AGENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}(@rbm\.goog)?$")
VIBER_MAX_NAME = 28
_NAMED_ADDRESS = re.compile(r"^(?P<name>[^<>]*)<(?P<address>[^<>]+)>$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def sender_problem(channel: Channel, sender: str) -> str | None:
    """Why `sender` cannot send on `channel`, or None when it can."""
    if channel is Channel.SMS:
        if SMS_ALPHANUMERIC.match(sender) or SMS_NUMBER.match(sender):
            return None
        if SMS_SHORT_CODE.match(sender):
            return None
        return (
            "an SMS sender is 1 to 11 letters, digits or spaces with at least one letter, "
            "an E.164 number or a 3 to 8 digit short code"
        )
    if channel is Channel.RCS:
        if RCS_AGENT.match(sender):
            return None
        return "an RCS agent id is letters, digits, '_', '-' or '.', up to 100 characters"
    if channel is Channel.VIBER:
        if sender.strip() and len(sender) <= VIBER_MAX_NAME and not _CONTROL.search(sender):
            return None
        return f"a Viber sender name is 1 to {VIBER_MAX_NAME} printable characters"
    if channel is Channel.EMAIL:
        return _email_problem(sender)
    return None


def _email_problem(sender: str) -> str | None:
    named = _NAMED_ADDRESS.match(sender.strip())
    address = named.group("address").strip() if named else sender.strip()
    if _CONTROL.search(sender):
        return "an email sender must not contain control characters"
    try:
        validate_email(address, check_deliverability=False)
    except EmailNotValidError as exc:
        return f"an email sender is an address or 'Name <address>': {exc}"
    return None
