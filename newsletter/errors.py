"""The project's exception types.

Every error a user can cause has a type here and a message that says what to do.
"""

from __future__ import annotations


class NewsletterError(Exception):
    """Base class for errors the service reports to people rather than crashing on."""


class ConfigError(NewsletterError):
    """A setting is missing or malformed."""


class RejectedInput(NewsletterError):
    """An input file or document is not something we can ingest at all.

    ``reason`` is a one-line explanation kept beside the rejected file.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FetchError(NewsletterError):
    """A URL or path could not be read (network error, HTTP error, too large)."""


class QueryError(NewsletterError):
    """A subscriber profile does not parse.

    ``position`` is the 0-based character offset of the problem in the profile text,
    ``problem`` is the human-readable description without the position.
    """

    def __init__(self, problem: str, position: int) -> None:
        super().__init__(f"{problem} (at position {position})")
        self.problem = problem
        self.position = position


class InvalidEmail(NewsletterError):
    """An email address is not syntactically valid."""


class NotFound(NewsletterError):
    """A subscriber, paper or delivery does not exist."""
