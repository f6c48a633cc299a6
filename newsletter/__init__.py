"""Self-hosted research-paper digest service."""

__version__ = "0.1.0"
