"""docs/api.md keeps the error catalogue and the endpoint list in step with the code."""

from __future__ import annotations

from pathlib import Path

from herald.api.app import create_app
from herald.api.config import ApiConfig
from herald.api.errors import ErrorCode

DOC = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text()


def test_every_error_code_is_catalogued() -> None:
    for code in ErrorCode:
        row = f"| {code.number} | `{code.code}` | {code.status} |"
        assert row in DOC, row


def test_every_endpoint_is_documented() -> None:
    app = create_app(pool=None, config=ApiConfig())  # building the schema needs no database
    for path in app.openapi()["paths"]:
        if path.startswith("/v1/api-keys"):
            assert "/v1/api-keys" in DOC
            continue
        shown = path.replace("{contact_id}", "{id}").replace("{list_id}", "{id}")
        shown = shown.replace("{segment_id}", "{id}").replace("{template_id}", "{id}")
        shown = shown.replace("{campaign_id}", "{id}").replace("{key_id}", "{id}")
        shown = shown.replace("{id}/members/{id}", "{id}/members/{contact_id}")
        assert f"`{shown}`" in DOC, shown
