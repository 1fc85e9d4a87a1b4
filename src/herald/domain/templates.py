"""`{{placeholder}}` rendering. Missing values are an error the caller turns into a skip."""

from __future__ import annotations

import re
from collections.abc import Mapping

_PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z0-9_.\-]+)\s*\}\}")


class MissingVariable(KeyError):
    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


def placeholders(template: str) -> tuple[str, ...]:
    """Placeholder names in order of first appearance."""
    seen: dict[str, None] = {}
    for match in _PLACEHOLDER.finditer(template):
        seen.setdefault(match.group(1), None)
    return tuple(seen)


def render(template: str, variables: Mapping[str, object]) -> str:
    """Fill every placeholder; raises MissingVariable for the first one without a value."""

    def fill(match: re.Match[str]) -> str:
        name = match.group(1)
        value = variables.get(name)
        if value is None or value == "":
            raise MissingVariable(name)
        return str(value)

    return _PLACEHOLDER.sub(fill, template)


def recipient_variables(
    *,
    contact_fields: Mapping[str, object],
    variable_mappings: Mapping[str, str],
    overrides: Mapping[str, object],
) -> dict[str, object]:
    """The variables one recipient renders with.

    Contact fields are available by name; `variable_mappings` names a template variable after
    a contact field (`{"1": "first_name"}`); per-recipient values override both.
    """
    values: dict[str, object] = dict(contact_fields)
    for variable, source in variable_mappings.items():
        if source in contact_fields:
            values[variable] = contact_fields[source]
    values.update(overrides)
    return values
