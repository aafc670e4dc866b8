"""Restoring a pin the node lost: ``backend.fetch_pin -> CarChecker -> Kubo dag/import -> pin``.

The upload path's streaming, run backwards: the CAR flows from the backend through the same
:class:`pinsync.car.CarChecker` into Kubo's ``dag/import`` and is never held whole (restoring a
2 GiB pin peaked at 85 MiB RSS, uploading one at 117: bench rows 14 and 4). The checker refuses
a chunk that completes a block whose data does not hash to its CID, or a header whose roots do
not include the pin, before the chunk reaches Kubo: a corrupted copy never lands in the
blockstore. What it cannot see from the CAR alone -- a copy cut off cleanly between two
blocks -- the node catches: after the import the DAG is walked offline (``dag/stat``), which
Kubo refuses at once unless every block of it is local, and only then is the root pinned
(offline too). So nothing is pinned from a CAR that failed its check, nor anything incomplete.

Backends are tried in the order :func:`pinsync.restoreplanner.ranked` gives; the first that
restores the pin ends the search. A pinning service (IPFS Cluster) stores no CAR; where it can
name the IPFS peers that hold its pins, the node connects to them and fetches the pin itself.

Kopf-free and Kubernetes-free: the reconciler passes in the backends and the Kubo client.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import AsyncIterator, Sequence

from pinsync import car, ipfs, reasons, restoreplanner
from pinsync.backends import base, errors

logger = logging.getLogger(__name__)


class _Kept:
    """Iterates a stream and keeps the exception it raised.

    aiohttp wraps an error raised by a request body into its own ``ClientPayloadError``, which
    the Kubo client reports as the node being unreachable; the restore needs the original (a
    CarError, the backend's error) to tell a bad copy from a bad node.
    """

    def __init__(self, stream: AsyncIterator[bytes]) -> None:
        self.stream = stream
        self.error: BaseException | None = None

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self.stream:
                yield chunk
        except BaseException as exc:
            self.error = exc
            raise


async def from_backend(
    kubo: ipfs.Kubo, backend: base.Backend, cid: str, *, name: str, pin_timeout: float
) -> int:
    """Restore ``cid`` onto the node from one backend and pin it as ``name``; bytes read.

    Raises PinNotFound when the backend lacks the pin, CarError when its copy is not intact,
    a BackendError or IpfsError (``ImportFailed``) otherwise.
    """
    if not backend.stores_content:
        return await from_peers(kubo, backend, cid, name=name, pin_timeout=pin_timeout)
    checker = car.CarChecker(backend.fetch_pin(cid), root=cid)
    stream = checker.__aiter__()
    try:
        # The first chunk is read before Kubo is called: a backend without the pin says so
        # here (PinNotFound), not half-way into an import request. No size check against the
        # backend's listing either: the checker and the offline DAG walk below prove more
        # (every block, and all of them), and every lookup saved counts on small pins.
        first = await anext(stream, None)
        kept = _Kept(_primed(first, stream))
        try:
            blocks, _ = await kubo.dag_import(aiter(kept))
        except ipfs.IpfsError:
            if isinstance(kept.error, Exception):
                raise kept.error from None
            raise
    finally:
        await stream.aclose()
    if blocks and blocks != checker.blocks:
        raise ipfs.IpfsError(
            f"Kubo imported {blocks} blocks of {checker.blocks}", reason=reasons.IMPORT_FAILED.name
        )
    try:
        # Asked first because an offline pin/add of a DAG whose root is local but a child is
        # not does not fail at once: Kubo 0.39 waits until the request times out (observed).
        await kubo.dag_stat(cid, offline=True)
    except ipfs.ContentUnavailable:
        # Well framed, every block intact, but blocks of the DAG are missing: cut between blocks.
        raise car.CarError(
            f"the CAR holds {checker.blocks} blocks, not the whole DAG of {cid}"
        ) from None
    try:
        await kubo.pin_local([cid], name=name)
    except ipfs.IpfsError as exc:
        raise ipfs.IpfsError(str(exc), reason=reasons.IMPORT_FAILED.name) from None
    return checker.size


async def _primed(first: bytes | None, stream: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    if first is not None:
        yield first
    async for chunk in stream:
        yield chunk


async def from_peers(
    kubo: ipfs.Kubo, backend: base.Backend, cid: str, *, name: str, pin_timeout: float
) -> int:
    """Restore from a pinning service: connect the node to its IPFS peers, then ``pin/add``.

    Returns 0: the bytes travel over bitswap, not through the operator.
    """
    await backend.verify_pin(cid)  # not there (PinNotFound), or not pinned yet on the cluster
    peers = await backend.providers()
    if not peers:
        raise errors.Unsupported(f"{cid}: this backend names no IPFS peers to fetch from")
    if not await kubo.swarm_connect(peers):
        raise errors.BackendError(f"{cid}: the node could not connect to any of the peers")
    await kubo.pin_add(cid, name=name, timeout=pin_timeout)
    return 0


@dataclasses.dataclass(frozen=True, kw_only=True)
class Outcome:
    """One pin's restore: the backend it came from (None: from none) and what was tried."""

    cid: str
    backend: str | None = None
    bytes: int = 0
    attempts: tuple[restoreplanner.Attempt, ...] = ()

    def failure(self) -> tuple[str, str]:
        """``(reason, message)`` of a failed restore."""
        return restoreplanner.verdict(self.attempts)


def _attempt(backend: str, exc: Exception) -> restoreplanner.Attempt:
    if isinstance(exc, errors.PinNotFound):
        return restoreplanner.Attempt(backend=backend, reason=reasons.PIN_NOT_FOUND.name)
    if isinstance(exc, car.CarError):
        return restoreplanner.Attempt(
            backend=backend, reason=reasons.CAR_INVALID.name, message=str(exc)
        )
    if isinstance(exc, reasons.ReasonedError):
        return restoreplanner.Attempt(backend=backend, reason=exc.reason, message=str(exc))
    logger.error("restore from %s failed unexpectedly", backend, exc_info=exc)
    return restoreplanner.Attempt(
        backend=backend, reason=reasons.INTERNAL_ERROR.name, message=type(exc).__name__
    )


async def restore(
    kubo: ipfs.Kubo,
    names: Sequence[str],
    backends: Sequence[tuple[str, base.Backend]],
    *,
    name: str,
    pin_timeout: float,
) -> Outcome:
    """Restore a pin from the first of ``backends`` (in order) that can; never raises.

    ``names`` are the spellings the pin may be stored under (the first is the one reported);
    a backend lacking one is asked for the next.
    """
    attempts: list[restoreplanner.Attempt] = []
    for backend_name, backend in backends:
        for stored in names:
            try:
                size = await from_backend(kubo, backend, stored, name=name, pin_timeout=pin_timeout)
            except asyncio.CancelledError:
                raise
            except errors.PinNotFound as exc:
                missing: Exception = exc
                continue
            except Exception as exc:
                attempts.append(_attempt(backend_name, exc))
                break
            return Outcome(cid=names[0], backend=backend_name, bytes=size, attempts=tuple(attempts))
        else:
            attempts.append(_attempt(backend_name, missing))
    return Outcome(cid=names[0], attempts=tuple(attempts))
