"""Herald: campaign dispatch with channel fallback, crash-safe resume and exact counters."""

__version__ = "0.1.0"
