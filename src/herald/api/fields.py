"""Field types the API validates: E.164 phones, email addresses, tags, names, ids."""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from email_validator import EmailNotValidError, validate_email
from pydantic import AfterValidator, BeforeValidator, ConfigDict, Field, StringConstraints
from pydantic_core import PydanticCustomError

from herald.api.errors import ApiError, ErrorCode
from herald.domain.phone import InvalidPhone, normalize_e164

# Request bodies refuse fields they do not define: a typo is an error, not a silent no-op.
STRICT = ConfigDict(extra="forbid", str_strip_whitespace=True)

MAX_TAGS = 100
MAX_METADATA_KEYS = 200


def phone_e164(value: str) -> str:
    try:
        return normalize_e164(value)
    except InvalidPhone as exc:
        raise PydanticCustomError("invalid_phone", "{reason}", {"reason": str(exc)}) from None


def email_address(value: str) -> str:
    try:
        checked = validate_email(value, check_deliverability=False)
    except EmailNotValidError as exc:
        raise PydanticCustomError("invalid_email", "{reason}", {"reason": str(exc)}) from None
    return str(checked.normalized)


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Phone = Annotated[str, StringConstraints(max_length=32), AfterValidator(phone_e164)]
Email = Annotated[str, StringConstraints(max_length=320), AfterValidator(email_address)]
Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]
Name = Annotated[str, StringConstraints(max_length=200)]
ShortText = Annotated[str, StringConstraints(max_length=200)]
LongText = Annotated[str, StringConstraints(max_length=2000)]
ResourceName = Annotated[str, StringConstraints(min_length=1, max_length=200)]
CountryCode = Annotated[str, BeforeValidator(_upper), StringConstraints(pattern=r"^[A-Z]{2}$")]
Metadata = Annotated[dict[str, Any], Field(max_length=MAX_METADATA_KEYS)]

_WORD = re.compile(r"\w+")
_PHONEISH = re.compile(r"^[\d\s+().\-]+$")
MAX_SEARCH_TERMS = 8


def search_query(text: str | None) -> str | None:
    """A prefix tsquery for free text, or None when it has no words.

    Terms hold only word characters, so nothing the user types becomes tsquery syntax.
    A phone-like search becomes one digits-only term, matching how phones are indexed: whole,
    and without the country code, so national numbers are found too. A national number's
    trunk prefix (`0` in `07700 900123`) is tried without it as well.
    """
    if text is None:
        return None
    if _PHONEISH.match(text):
        digits = re.sub(r"\D", "", text)
        national = digits.lstrip("0")
        if not digits:
            return None
        if national and national != digits and not text.lstrip().startswith("+"):
            return f"('{digits}':* | '{national}':*)"
        terms = [digits]
    else:
        terms = _WORD.findall(text.lower())[:MAX_SEARCH_TERMS]
    if not terms:
        return None
    return " & ".join(f"'{term}':*" for term in terms)


def like_pattern(text: str | None) -> str | None:
    """An ILIKE pattern matching `text` anywhere, with its wildcards taken literally."""
    if not text:
        return None
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def parse_uuid(value: str, not_found: ErrorCode, *, field: str | None = None) -> uuid.UUID:
    """Ids that cannot exist are simply not found: no hint about other accounts' ids.
    `field` names the input holding it (a path parameter's 404 names that parameter)."""
    try:
        return uuid.UUID(value)
    except ValueError:
        raise ApiError(not_found, field=field) from None
