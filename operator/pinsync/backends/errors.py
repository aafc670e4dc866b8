"""The error vocabulary every backend raises, and the operator maps to conditions and retries.

A backend translates its library's exceptions into these; the sync engine never inspects
boto/asyncssh/aioftp exceptions. ``reason`` is CamelCase and lands in condition reasons as-is;
``message`` must never contain credentials.
"""

from __future__ import annotations

from pinsync import reasons


class BackendError(reasons.ReasonedError):
    """A backend operation failed. ``retryable`` says whether trying again later may help."""

    reason = "BackendError"


class Unreachable(BackendError):
    """The server could not be reached (DNS, refused, timeout, TLS handshake)."""

    reason = "Unreachable"


class AuthFailed(BackendError):
    """The server rejected the credentials."""

    reason = "AuthFailed"
    retryable = False


class PermissionDenied(BackendError):
    """Authenticated, but not allowed to do this at this path."""

    reason = "PermissionDenied"
    retryable = False


class LocationNotFound(BackendError):
    """The bucket, repository or base path does not exist."""

    reason = "LocationNotFound"
    retryable = False


class StorageFull(BackendError):
    """Quota exceeded or no space left on the server."""

    reason = "StorageFull"


class Damaged(BackendError):
    """The stored pin does not match what was written (size or sha256 differ)."""

    reason = "Damaged"


class PinNotFound(BackendError):
    """The pin is not on the backend."""

    reason = "PinNotFound"
    retryable = False


class InvalidConfig(BackendError):
    """The spec or the credentials cannot work as given (e.g. an unknown host key)."""

    reason = "InvalidConfig"
    retryable = False
