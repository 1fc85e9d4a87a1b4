"""Provider adapters: one per wire format, behind the Provider interface in base.py."""
