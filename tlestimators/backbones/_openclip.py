"""Placeholder; filled in by the backbone adapters work."""
