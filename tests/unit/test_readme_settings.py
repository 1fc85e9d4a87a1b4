"""The README's settings table is the settings object's own description, both profiles."""

from __future__ import annotations

from pathlib import Path

from herald.settings import DEVELOPMENT, Secret, describe

README = Path(__file__).resolve().parents[2] / "README.md"
START = "| variable | production | development | meaning |"


def _shown(value: object) -> str:
    if isinstance(value, Secret):
        return "(set)" if value.value else "(empty)"
    text = str(value)
    return f"`{text}`" if text else "(empty)"


def settings_table() -> str:
    rows = [START, "|---|---|---|---|"]
    for name, default, doc in describe():
        field = name.removeprefix("HERALD_").lower()
        production = f"`{default}`" if default else "(empty)"
        development = _shown(DEVELOPMENT[field]) if field in DEVELOPMENT else "same"
        if field == "profile":
            production, development = "`production`", "`development`"
        rows.append(f"| `{name}` | {production} | {development} | {doc} |")
    return "\n".join(rows)


def test_readme_lists_every_setting_with_both_profiles_defaults() -> None:
    text = README.read_text()
    start = text.index(START)
    end = text.index("\n\n", start)
    expected = settings_table()
    assert text[start:end] == expected, "regenerate: python -m tests.unit.test_readme_settings"


if __name__ == "__main__":
    print(settings_table())
