"""The HTTP control plane: contacts, lists, segments, templates, campaigns and statistics.

FastAPI publishes the OpenAPI document at /openapi.json and validates every request against
it; responses use one envelope ({"data", "meta"}) and errors one shape ({"error", "meta"}).
"""
