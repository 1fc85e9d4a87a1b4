"""The API fixtures (tests/integration/api_support.py) for every test module here: a fresh
database and app per module, and a caller per account."""

from tests.integration.api_support import alice, api_app, api_db_url, api_pool, bob, http

__all__ = ["alice", "api_app", "api_db_url", "api_pool", "bob", "http"]
