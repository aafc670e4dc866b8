"""The closed catalogue of reasons the operator reports, and the error shape that carries them.

Every ``reason`` pinsync writes -- into a condition, a per-pin failure record or a metric label
-- is one of :data:`CATALOGUE`. Each says whether trying again later may help and where it
shows, so the reconcilers need no per-reason knowledge: a retryable error leaves the object
``Reconciling``, any other ``Stalled``. Before the catalogue, backends invented reasons freely
(25 of them, in five modules) and a backend branched on another's reason by string comparison;
now an unknown name is refused where the error is made, so a typo fails its test rather than
becoming a new reason nobody documented. README's reason table is checked against this module
(``tests/unit/test_reasons.py``).

Backends (:mod:`pinsync.backends.errors`) and the Kubo client (:mod:`pinsync.ipfs`) raise
subclasses of :class:`ReasonedError`; the reconcilers copy ``reason`` into conditions as-is.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

Where = Literal["Ready", "Healthy", "Synced", "Reconciling", "Stalled", "failures"]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Reason:
    """One entry of the catalogue."""

    name: str
    """CamelCase, as it appears in ``reason`` fields."""
    retryable: bool
    """Whether trying again later, with nothing changed, may succeed."""
    condition: Where
    """Where it shows: the condition it is the reason of (``Reconciling`` or ``Stalled`` when
    True, ``Ready``/``Healthy``/``Synced`` when it names their state), or ``failures`` for a reason
    that is only ever recorded per pin (``status.failures``), summarised as ``SyncFailed``."""
    meaning: str
    """One line, for README and for people reading status."""


CATALOGUE: dict[str, Reason] = {}


def _reason(name: str, condition: Where, meaning: str, *, retryable: bool | None = None) -> Reason:
    if retryable is None:
        retryable = condition != "Stalled"
    entry = Reason(name=name, retryable=retryable, condition=condition, meaning=meaning)
    assert name not in CATALOGUE, name
    CATALOGUE[name] = entry
    return entry


def get(name: str) -> Reason:
    """The catalogue entry of ``name``; a name not in the catalogue is a programming error."""
    try:
        return CATALOGUE[name]
    except KeyError:
        raise ValueError(f"reason {name!r} is not in pinsync.reasons.CATALOGUE") from None


# -- states ---------------------------------------------------------------------------------------

SYNCED = _reason("Synced", "Ready", "every desired pin is present; or: the backend is not dirty")
REACHABLE = _reason("Reachable", "Healthy", "the last health check passed")
SUSPENDED = _reason("Suspended", "Ready", "spec.suspend is true: nothing is done until it is not")
SYNCING = _reason("Syncing", "Reconciling", "a sync is running or due; pins are still missing")
DIRTY = _reason("Dirty", "Synced", "marked dirty: a sync will look for missing pins")
SYNC_FAILED = _reason("SyncFailed", "Reconciling", "some pins failed (see status.failures)")
PIN_FAILED = _reason("PinFailed", "Reconciling", "Kubo could not pin some CIDs; retried later")
PRUNE_FAILED = _reason(
    "PruneFailed", "failures", "a pin no PinSet wants could not be deleted; retried later"
)

# -- validation: fixed by a change to the spec or the Secret --------------------------------------

NOT_IMPLEMENTED = _reason("NotImplemented", "Stalled", "the type has no implementation yet")
SECRET_REQUIRED = _reason("SecretRequired", "Stalled", "the type needs credentialsSecretRef")
SECRET_NOT_FOUND = _reason("SecretNotFound", "Stalled", "the referenced Secret does not exist")
SECRET_FORBIDDEN = _reason(
    "SecretForbidden", "Stalled", "the operator's RBAC does not let it read the Secret"
)
SECRET_KEY_MISSING = _reason("SecretKeyMissing", "Stalled", "the Secret lacks a key the type needs")
SECRET_VALUE_INVALID = _reason("SecretValueInvalid", "Stalled", "a Secret value is not UTF-8 text")
INVALID_CONFIG = _reason("InvalidConfig", "Stalled", "a spec field has a value that cannot work")
READ_ONLY_INCOMPLETE = _reason(
    "ReadOnlyIncomplete", "Stalled", "accessMode is ReadOnly and desired pins are missing"
)
INVALID_CID = _reason("InvalidCID", "Stalled", "spec.cids holds a string that is not a CID")
BACKEND_NOT_FOUND = _reason("BackendNotFound", "Stalled", "spec.backends names no StorageBackend")
SOURCE_BACKEND_NOT_FOUND = _reason(
    "SourceBackendNotFound", "Reconciling", "spec.fromBackend names no StorageBackend (yet)"
)
SOURCE_BACKEND_UNUSABLE = _reason(
    "SourceBackendUnusable",
    "Reconciling",
    "spec.fromBackend's StorageBackend is suspended or invalid",
)
NO_BACKENDS = _reason("NoBackends", "Stalled", "spec.backendSelector matches no StorageBackend")
BACKEND_STALLED = _reason("BackendStalled", "Stalled", "a targeted backend is Stalled")

# -- storage: any backend -------------------------------------------------------------------------

BACKEND_ERROR = _reason("BackendError", "Reconciling", "the storage failed in another way")
UNREACHABLE = _reason("Unreachable", "Reconciling", "the server cannot be reached (DNS, refused)")
AUTH_FAILED = _reason("AuthFailed", "Stalled", "the server rejected the credentials")
PERMISSION_DENIED = _reason("PermissionDenied", "Stalled", "logged in, but not allowed to do this")
LOCATION_NOT_FOUND = _reason("LocationNotFound", "Stalled", "the configured location is absent")
BUCKET_NOT_FOUND = _reason("BucketNotFound", "Stalled", "S3: the bucket does not exist")
PATH_NOT_FOUND = _reason("PathNotFound", "Stalled", "SFTP/FTP: the base path does not exist")
STORAGE_FULL = _reason("StorageFull", "Reconciling", "quota exceeded or no space left")
RATE_LIMITED = _reason(
    "RateLimited", "Reconciling", "the service asked to wait (HTTP 429); retried after Retry-After"
)
UNSUPPORTED = _reason("Unsupported", "Stalled", "the operation has no meaning for this type")
WRITES_DISABLED = _reason(
    "WritesDisabled",
    "Stalled",
    "the service accepts no writes (switched off, or the write is gone); reads and restores work",
)

# -- storage: one pin -----------------------------------------------------------------------------

PIN_NOT_FOUND = _reason("PinNotFound", "failures", "the pin is not on the backend", retryable=False)
DAMAGED = _reason("Damaged", "failures", "the stored pin differs from what was written")
VERIFY_FAILED = _reason("VerifyFailed", "failures", "the stored size differs from the bytes sent")
CAR_INVALID = _reason(
    "CarInvalid", "failures", "a CAR (Kubo's export, a copy read back to restore) is not intact"
)
INTERNAL_ERROR = _reason("InternalError", "failures", "an unexpected error (a bug: see the log)")

# -- SFTP -----------------------------------------------------------------------------------------

HOST_KEY_UNKNOWN = _reason("HostKeyUnknown", "Stalled", "no host key pinned, nor trustOnFirstUse")
HOST_KEY_MISMATCH = _reason("HostKeyMismatch", "Stalled", "the server's host key is not the pinned")
KNOWN_HOSTS_INVALID = _reason("KnownHostsInvalid", "Stalled", "knownHosts has a malformed line")
KEY_EXCHANGE_FAILED = _reason("KeyExchangeFailed", "Stalled", "no common SSH algorithms")
PRIVATE_KEY_INVALID = _reason("PrivateKeyInvalid", "Stalled", "privateKey or passphrase unusable")
SFTP_UNAVAILABLE = _reason("SFTPUnavailable", "Stalled", "the server refuses an SFTP session")

# -- FTP ------------------------------------------------------------------------------------------

ACTIVE_MODE_UNSUPPORTED = _reason("ActiveModeUnsupported", "Stalled", "passive: false is refused")
TLS_VERIFY_FAILED = _reason("TLSVerifyFailed", "Stalled", "the TLS certificate failed verification")
TLS_NOT_SUPPORTED = _reason("TLSNotSupported", "Stalled", "the server does not speak AUTH TLS")
TLS_REQUIRED = _reason("TLSRequired", "Stalled", "the server requires FTPS: set tls.enabled")
CA_BUNDLE_NOT_FOUND = _reason("CABundleNotFound", "Stalled", "tls.caBundleKey names no Secret key")
INVALID_CA_BUNDLE = _reason("InvalidCABundle", "Stalled", "the CA bundle is not valid PEM")

# -- git hosts ------------------------------------------------------------------------------------

REPOSITORY_NOT_FOUND = _reason(
    "RepositoryNotFound", "Stalled", "git: no such repository, or hidden from these credentials"
)
BRANCH_MOVED = _reason(
    "BranchMoved", "Reconciling", "git: other pushes kept moving the branch; tried again later"
)
FILE_TOO_LARGE = _reason(
    "FileTooLarge", "failures", "git: the host refused a file as too large", retryable=False
)
PUSH_TOO_LARGE = _reason(
    "PushTooLarge",
    "failures",
    "git: the host refused a push as too large; lower batch.maxBytes",
    retryable=False,
)

# -- Hugging Face Hub -----------------------------------------------------------------------------

REPOSITORY_FULL = _reason(
    "RepositoryFull", "Reconciling", "hf: the repository holds maxFiles files; prune or add one"
)

# -- IPFS Cluster ---------------------------------------------------------------------------------

PINNING = _reason(
    "Pinning", "failures", "the cluster or pinning service is still fetching the pin; checked later"
)
CLUSTER_PIN_ERROR = _reason("ClusterPinError", "failures", "peers failed to pin; recovery asked")
CLUSTER_REJECTED = _reason("ClusterRejected", "Stalled", "the cluster refused a request as invalid")
CLUSTER_ERROR = _reason("ClusterError", "Reconciling", "the cluster answered an error")
CLUSTER_UNHEALTHY = _reason("ClusterUnhealthy", "Reconciling", "the cluster peer reports an error")
CLUSTER_IPFS_UNAVAILABLE = _reason(
    "ClusterIpfsUnavailable", "Reconciling", "the cluster peer cannot reach its IPFS daemon"
)
NOT_ENOUGH_PEERS = _reason(
    "NotEnoughPeers", "Reconciling", "fewer peers answer than replicationFactorMin"
)

# -- pinning service ------------------------------------------------------------------------------

SERVICE_PIN_FAILED = _reason("ServicePinFailed", "failures", "the service says the pin failed")
SERVICE_REJECTED = _reason("ServiceRejected", "Stalled", "the service refused a request (HTTP 400)")
SERVICE_ERROR = _reason("ServiceError", "Reconciling", "the pinning service answered an error")
QUOTA_EXCEEDED = _reason("QuotaExceeded", "Reconciling", "the service refused: no funds or quota")

# -- storacha -------------------------------------------------------------------------------------

SPACE_NOT_DELEGATED = _reason(
    "SpaceNotDelegated", "Stalled", "the bridge tokens grant nothing on spec.storacha.spaceDid"
)
CAR_TOO_LARGE = _reason(
    "CarTooLarge", "failures", "a CAR over shardSize cannot be cut into shards", retryable=False
)
STORACHA_ERROR = _reason("StorachaError", "Reconciling", "the Storacha service answered an error")

# -- Kubo -----------------------------------------------------------------------------------------

IPFS_ERROR = _reason("IpfsError", "Reconciling", "a Kubo RPC call failed")
NODE_UNREACHABLE = _reason("NodeUnreachable", "Reconciling", "Kubo's RPC API cannot be reached")
REQUEST_TIMEOUT = _reason("RequestTimeout", "Reconciling", "Kubo did not answer in time")
PIN_TIMEOUT = _reason("PinTimeout", "failures", "pin/add did not finish within pinTimeout")
CONTENT_UNAVAILABLE = _reason("ContentUnavailable", "failures", "blocks are not on the node")
EXPORT_FAILED = _reason("ExportFailed", "failures", "Kubo's dag/export failed")

# -- restore --------------------------------------------------------------------------------------

NOT_ON_ANY_BACKEND = _reason(
    "NotOnAnyBackend", "failures", "restore: no usable backend holds the pin"
)
IMPORT_FAILED = _reason(
    "ImportFailed", "failures", "restore: Kubo refused the CAR, or its DAG was incomplete"
)
RESTORE_FAILED = _reason(
    "RestoreFailed", "Reconciling", "some lost pins could not be restored (status.restoreFailures)"
)


class ReasonedError(Exception):
    """An operation failed for ``reason``; ``retryable`` says whether trying later may help.

    A subclass names its default reason (``reason = "AuthFailed"``); one error class may carry a
    more specific reason of the catalogue (``LocationNotFound(..., reason=PATH_NOT_FOUND)``).
    ``retryable`` always follows the catalogue entry.
    """

    reason: str = "BackendError"
    retryable: bool = True

    def __init__(self, message: str, *, reason: Reason | str | None = None) -> None:
        super().__init__(message)
        name = reason.name if isinstance(reason, Reason) else reason or type(self).reason
        entry = get(name)
        self.reason = entry.name
        self.retryable = entry.retryable

    @property
    def message(self) -> str:
        return str(self)
