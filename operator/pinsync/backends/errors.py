"""The error vocabulary every backend raises, and the operator maps to conditions and retries.

A backend translates its library's exceptions into these (its ``translate`` hook, called by the
base around every primitive); the sync engine never inspects boto/asyncssh/aioftp exceptions.
Each class has a default reason of :mod:`pinsync.reasons`; a more specific one of the catalogue
may be given (``LocationNotFound(..., reason=reasons.BUCKET_NOT_FOUND)``). ``retryable`` follows
the reason. ``message`` must never contain credentials.
"""

from __future__ import annotations

import datetime
import email.utils

from pinsync import reasons


class BackendError(reasons.ReasonedError):
    """A backend operation failed. ``retryable`` says whether trying again later may help."""

    reason = reasons.BACKEND_ERROR.name


class Unreachable(BackendError):
    """The server could not be reached (DNS, refused, timeout, TLS handshake)."""

    reason = reasons.UNREACHABLE.name


class AuthFailed(BackendError):
    """The server rejected the credentials."""

    reason = reasons.AUTH_FAILED.name


class PermissionDenied(BackendError):
    """Authenticated, but not allowed to do this at this path."""

    reason = reasons.PERMISSION_DENIED.name


class LocationNotFound(BackendError):
    """The bucket, repository or base path does not exist."""

    reason = reasons.LOCATION_NOT_FOUND.name


class StorageFull(BackendError):
    """Quota exceeded or no space left on the server."""

    reason = reasons.STORAGE_FULL.name


class RateLimited(BackendError):
    """The service refused the request for now (HTTP 429, or a limit the backend keeps itself)
    and said how long to wait: ``retry_after`` seconds, which the pin's backoff honours."""

    reason = reasons.RATE_LIMITED.name

    def __init__(self, message: str, *, retry_after: float = 60.0) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class Damaged(BackendError):
    """The stored pin does not match what was written (size or sha256 differ)."""

    reason = reasons.DAMAGED.name


class PinNotFound(BackendError):
    """The pin is not on the backend."""

    reason = reasons.PIN_NOT_FOUND.name


class InProgress(BackendError):
    """The backend accepted the pin and is still working on it (a cluster fetching it): not a
    failure of the content, so it is checked again later rather than sent again."""

    reason = reasons.PINNING.name


class BranchMoved(BackendError):
    """git hosts: other writers kept moving the branch while a commit was rebuilt on it."""

    reason = reasons.BRANCH_MOVED.name


class Unsupported(BackendError):
    """The operation has no meaning for this type of backend."""

    reason = reasons.UNSUPPORTED.name


class WritesDisabled(BackendError):
    """The service refuses every write for now -- switched off by its operator (Storacha since
    2026-05-15), or the write's operation no longer exists there -- while reads still work.
    Nothing done here changes that: the sync stops at the first refusal, the backend goes
    Stalled, and it stays a source of restores."""

    reason = reasons.WRITES_DISABLED.name


class InvalidConfig(BackendError):
    """The spec or the credentials cannot work as given (e.g. an unknown host key).

    ``field`` names the spec field at fault (``spec.s3.bucket``), where there is one.
    """

    reason = reasons.INVALID_CONFIG.name

    def __init__(
        self, message: str, *, reason: reasons.Reason | str | None = None, field: str = ""
    ) -> None:
        super().__init__(message, reason=reason)
        self.field = field


RETRY_AFTER_CAP = 86400.0
"""A longer Retry-After is taken as this: a day is the most a pass is ever put off by one."""


def retry_after(value: str | None, *, now: datetime.datetime | None = None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` value (delay-seconds or an HTTP date; RFC 9110
    10.2.3); None when absent or unreadable, so the caller's own backoff applies."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return min(float(value), RETRY_AFTER_CAP)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=datetime.UTC)
    now = now or datetime.datetime.now(datetime.UTC)
    return min(max(0.0, (when - now).total_seconds()), RETRY_AFTER_CAP)
