"""The API fixtures (tests/integration/api_support.py) for the abuse scenarios."""

from tests.integration.api_support import alice, api_app, api_db_url, api_pool, bob, http

__all__ = ["alice", "api_app", "api_db_url", "api_pool", "bob", "http"]
