"""The one shape of error the operator reports: a CamelCase reason plus a secret-free message.

Backends (:mod:`pinsync.backends.errors`) and the Kubo client (:mod:`pinsync.ipfs`) raise
subclasses; the reconcilers copy ``reason`` into condition reasons and failure records as-is.
"""

from __future__ import annotations


class ReasonedError(Exception):
    """An operation failed for ``reason``; ``retryable`` says whether trying later may help."""

    reason = "Error"
    retryable = True

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        if reason is not None:
            self.reason = reason

    @property
    def message(self) -> str:
        return str(self)
