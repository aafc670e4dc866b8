"""The backend contract: what every storage backend must do, tested against real servers.

One suite for all backend types (fsspec's abstract-test style): the ``backend_kit`` fixture is
parametrised by type, and each test gets backends built for a fresh location from it. Tests
that need to reach behind a backend (corrupt an object, look for partial uploads, stop the
server) do so through the kit, never through the backend under test.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from multiformats import CID, multihash

from pinsync.backends import base, errors

from .conftest import Backends, Kit

pytestmark = pytest.mark.asyncio(loop_scope="session")

KiB = 1024
MiB = 1024 * KiB
SMALL = 10 * KiB
LARGE = 20 * MiB
"""Large enough for S3 to go multipart (8 MiB parts): two full parts and a short last one."""

SIZES = [pytest.param(SMALL, id="10KiB"), pytest.param(LARGE, id="20MiB")]


class Blob:
    """Random content and the CID it is stored under: the raw CID of the bytes, or with a
    ``kit``, the CID the kit prepared the content under (see ``Kit.prepare_content``)."""

    def __init__(self, size: int, seed: int | None = None, *, kit: Kit | None = None) -> None:
        self.data = random.Random(seed).randbytes(size)
        if kit is not None:
            self.cid = kit.prepare_content(self.data)
        else:
            self.cid = str(CID("base32", 1, "raw", multihash.digest(self.data, "sha2-256")))
        self.sha256 = hashlib.sha256(self.data).hexdigest()
        self.size = size

    def meta(self) -> base.PinMeta:
        return base.PinMeta(cid=self.cid, pinsets=("default/contract",), name="contract")


class SourceFailed(Exception):
    """The content stream broke (think: Kubo died mid-export)."""


async def chunks(
    data: bytes,
    size: int = MiB,
    *,
    fail_after: int | None = None,
    on_chunk: Callable[[int], Awaitable[None]] | None = None,
) -> AsyncIterator[bytes]:
    """Stream ``data`` in ``size`` chunks; optionally break or act after some bytes."""
    sent = 0
    for start in range(0, len(data), size):
        if fail_after is not None and sent >= fail_after:
            raise SourceFailed(f"source broke after {sent} bytes")
        chunk = data[start : start + size]
        yield chunk
        sent += len(chunk)
        if on_chunk is not None:
            await on_chunk(sent)
        await asyncio.sleep(0)


def chunk_size(blob: Blob) -> int:
    """1 MiB chunks, but at least ten chunks for small content so that 'midway' exists."""
    return min(MiB, max(1, blob.size // 10))


async def put(backend: base.Backend, blob: Blob) -> base.PinInfo:
    return await backend.put_pin(blob.meta(), chunks(blob.data, chunk_size(blob)))


async def pins(backend: base.Backend) -> dict[str, int | None]:
    return {pin.cid: pin.size async for pin in backend.list_pins()}


async def usage(backend: base.Backend) -> tuple[int, int]:
    """(bytes, objects) of the backend's usage; free space is tested on its own."""
    used = await backend.usage()
    return used.bytes, used.objects


async def fetch(backend: base.Backend, cid: str) -> bytes:
    return b"".join([chunk async for chunk in backend.fetch_pin(cid)])


def assert_no_secrets(exc: BaseException, kit: Kit) -> None:
    for secret in kit.secrets():
        assert secret not in str(exc), f"a secret leaked into str() of {type(exc).__name__}"
        assert secret not in repr(exc), f"a secret leaked into repr() of {type(exc).__name__}"


async def test_the_kit_declares_the_capabilities_the_backend_has(
    backend: base.Backend, backend_kit: Kit
) -> None:
    """The ``needs`` marks select kits by what the kit says; the backend must agree."""
    assert backend_kit.stores_content == backend.stores_content


# -- health ---------------------------------------------------------------------------------------


async def test_health_passes_on_a_fresh_location(backend: base.Backend) -> None:
    await backend.health()


async def test_health_leaves_no_pins_and_no_usage(backend: base.Backend) -> None:
    await backend.health()
    assert await pins(backend) == {}
    assert await usage(backend) == (0, 0)


@pytest.mark.needs("raw")
async def test_health_leaves_no_objects_behind(backend: base.Backend, backend_kit: Kit) -> None:
    await backend.health()
    assert backend_kit.list_raw(backend) == {}


# -- storing and reading pins ---------------------------------------------------------------------


async def test_a_fresh_location_has_no_pins_and_no_usage(backend: base.Backend) -> None:
    assert await pins(backend) == {}
    assert await usage(backend) == (0, 0)


async def test_usage_reports_free_space_where_the_server_tells(
    backend: base.Backend, backend_kit: Kit
) -> None:
    expected = backend_kit.free_bytes(backend)
    free = (await backend.usage()).free
    if expected is None:
        assert free is None
    else:
        # The same file system or repository is in use by others meanwhile: close, not equal.
        assert free == pytest.approx(expected, rel=0.01)


@pytest.mark.parametrize("size", SIZES)
async def test_put_pin_reports_the_size_and_sha256_of_the_stream(
    backend: base.Backend, backend_kit: Kit, size: int
) -> None:
    blob = Blob(size, kit=backend_kit)
    info = await put(backend, blob)
    assert info.cid == blob.cid
    if backend.stores_content:
        assert (info.size, info.sha256) == (blob.size, blob.sha256)


async def test_list_pins_shows_exactly_the_put_pins_with_their_sizes(
    backend: base.Backend, backend_kit: Kit
) -> None:
    small, large = Blob(SMALL, kit=backend_kit), Blob(LARGE, kit=backend_kit)
    await put(backend, small)
    await put(backend, large)
    expected: dict[str, int | None] = {small.cid: small.size, large.cid: large.size}
    if not backend.stores_content:  # a pinning service knows CIDs, not sizes
        expected = dict.fromkeys(expected)
    assert await pins(backend) == expected


@pytest.mark.needs("content")
@pytest.mark.parametrize("size", SIZES)
async def test_fetch_pin_returns_the_bytes_that_were_put(
    backend: base.Backend, backend_kit: Kit, size: int
) -> None:
    blob = Blob(size)
    await put(backend, blob)
    fetched = await fetch(backend, blob.cid)
    assert len(fetched) == blob.size
    assert fetched == blob.data


@pytest.mark.needs("content")
@pytest.mark.parametrize("size", SIZES)
async def test_deep_verify_rehashes_to_the_sha256_of_the_bytes_that_were_put(
    backend: base.Backend, backend_kit: Kit, size: int
) -> None:
    blob = Blob(size)
    await put(backend, blob)
    info = await backend.verify_pin(blob.cid, deep=True)
    assert (info.cid, info.size, info.sha256) == (blob.cid, blob.size, blob.sha256)


@pytest.mark.needs("content")
async def test_shallow_verify_reports_the_stored_size_and_recorded_sha256(
    backend: base.Backend, backend_kit: Kit
) -> None:
    blob = Blob(SMALL)
    await put(backend, blob)
    info = await backend.verify_pin(blob.cid)
    assert (info.cid, info.size, info.sha256) == (blob.cid, blob.size, blob.sha256)


@pytest.mark.needs("raw")
async def test_usage_counts_the_bytes_and_objects_of_cars_and_sidecars(
    backend: base.Backend, backend_kit: Kit
) -> None:
    small, large = Blob(SMALL), Blob(LARGE)
    await put(backend, small)
    await put(backend, large)
    usage = await backend.usage()
    raw = backend_kit.list_raw(backend)
    assert sorted(raw) == sorted(
        name for blob in (small, large) for name in (blob.cid + ".car", blob.cid + ".json")
    )
    assert usage.objects == 4
    assert usage.bytes == sum(raw.values())
    assert usage.bytes > small.size + large.size  # the sidecars count too


async def test_putting_the_same_pin_twice_leaves_one_pin(
    backend: base.Backend, backend_kit: Kit
) -> None:
    blob = Blob(SMALL, kit=backend_kit)
    await put(backend, blob)
    once = await backend.usage()
    await put(backend, blob)
    assert list(await pins(backend)) == [blob.cid]
    if backend.stores_content:
        assert (await backend.usage()).objects == once.objects  # a CAR (+ its sidecar), once
        assert await fetch(backend, blob.cid) == blob.data


# -- atomicity ------------------------------------------------------------------------------------


@pytest.mark.needs("content")  # a pinning service never reads the stream
@pytest.mark.parametrize("size", SIZES)
async def test_a_put_whose_stream_fails_midway_leaves_nothing_under_the_final_name(
    backend: base.Backend, backend_kit: Kit, size: int
) -> None:
    blob = Blob(size)
    # 20 MiB breaks after 12 MiB: one part is uploaded, the next is being buffered.
    fail_after = 12 * MiB if size == LARGE else size // 2
    stream = chunks(blob.data, chunk_size(blob), fail_after=fail_after)
    with pytest.raises(SourceFailed):  # the source's own error, not disguised as the backend's
        await backend.put_pin(blob.meta(), stream)
    assert await pins(backend) == {}
    with pytest.raises(errors.PinNotFound):
        await backend.verify_pin(blob.cid, deep=True)
    with pytest.raises(errors.PinNotFound):
        await fetch(backend, blob.cid)
    assert await usage(backend) == (0, 0)
    assert backend_kit.incomplete_uploads(backend, [blob.cid + ".car"]) == []
    # And nothing stands in the way of trying again.
    await put(backend, blob)
    assert await backend.verify_pin(blob.cid, deep=True) == base.PinInfo(
        cid=blob.cid, size=blob.size, sha256=blob.sha256
    )


# -- missing and removed pins ---------------------------------------------------------------------


async def test_verify_of_a_missing_pin_raises_pin_not_found(backend: base.Backend) -> None:
    blob = Blob(SMALL)
    for deep in (False, True):
        with pytest.raises(errors.PinNotFound) as caught:
            await backend.verify_pin(blob.cid, deep=deep)
        assert caught.value.reason == "PinNotFound"
        assert not caught.value.retryable


@pytest.mark.needs("content")
async def test_fetch_of_a_missing_pin_raises_pin_not_found(
    backend: base.Backend, backend_kit: Kit
) -> None:
    with pytest.raises(errors.PinNotFound):
        await fetch(backend, Blob(SMALL).cid)


async def test_removing_a_missing_pin_is_not_an_error(backend: base.Backend) -> None:
    await backend.remove_pin(Blob(SMALL).cid)
    assert await pins(backend) == {}


async def test_remove_pin_removes_a_present_pin_and_only_that_one(
    backend: base.Backend, backend_kit: Kit
) -> None:
    gone, kept = Blob(SMALL, kit=backend_kit), Blob(SMALL, kit=backend_kit)
    await put(backend, gone)
    await put(backend, kept)
    both = await backend.usage()
    await backend.remove_pin(gone.cid)
    assert list(await pins(backend)) == [kept.cid]
    with pytest.raises(errors.PinNotFound):
        await backend.verify_pin(gone.cid)
    await backend.verify_pin(kept.cid)
    if backend.stores_content:
        with pytest.raises(errors.PinNotFound):
            await fetch(backend, gone.cid)
    assert (await backend.usage()).objects == both.objects // 2  # every object of gone, only
    await backend.remove_pin(gone.cid)  # and again: still not an error


# -- damage behind the backend's back -------------------------------------------------------------


@pytest.mark.needs("raw")
@pytest.mark.parametrize("size", SIZES)
async def test_a_car_overwritten_with_other_bytes_of_the_same_size_fails_only_deep_verify(
    backend: base.Backend, backend_kit: Kit, size: int
) -> None:
    blob = Blob(size)
    await put(backend, blob)
    corrupted = bytearray(blob.data)
    corrupted[size // 2] ^= 0xFF
    backend_kit.write_raw(backend, blob.cid + ".car", bytes(corrupted))
    info = await backend.verify_pin(blob.cid, deep=False)
    assert info.size == blob.size
    with pytest.raises(errors.Damaged) as caught:
        await backend.verify_pin(blob.cid, deep=True)
    assert caught.value.reason == "Damaged"
    assert blob.cid in str(caught.value)
    assert list(await pins(backend)) == [blob.cid]  # listed still: the engine decides to repair


@pytest.mark.needs("raw")
async def test_a_truncated_car_fails_even_shallow_verify(
    backend: base.Backend, backend_kit: Kit
) -> None:
    blob = Blob(SMALL)
    await put(backend, blob)
    backend_kit.write_raw(backend, blob.cid + ".car", blob.data[: blob.size // 2])
    for deep in (False, True):
        with pytest.raises(errors.Damaged):
            await backend.verify_pin(blob.cid, deep=deep)


@pytest.mark.needs("raw")
async def test_a_pin_whose_sidecar_is_not_json_is_damaged(
    backend: base.Backend, backend_kit: Kit
) -> None:
    blob = Blob(SMALL)
    await put(backend, blob)
    backend_kit.write_raw(backend, blob.cid + ".json", b"{not json")
    with pytest.raises(errors.Damaged):
        await backend.verify_pin(blob.cid)


@pytest.mark.needs("raw")
async def test_a_car_without_a_sidecar_is_not_a_pin(
    backend: base.Backend, backend_kit: Kit
) -> None:
    """What a crash between the CAR write and the sidecar write leaves behind."""
    orphan, whole = Blob(SMALL), Blob(SMALL)
    await put(backend, whole)
    backend_kit.write_raw(backend, orphan.cid + ".car", orphan.data)
    assert list(await pins(backend)) == [whole.cid]
    with pytest.raises(errors.PinNotFound):
        await backend.verify_pin(orphan.cid)
    # Uploading it again completes it.
    await put(backend, orphan)
    assert await pins(backend) == {orphan.cid: orphan.size, whole.cid: whole.size}
    assert (await backend.verify_pin(orphan.cid, deep=True)).sha256 == orphan.sha256


# -- broken configurations: every operation fails cleanly, and never shows a secret ---------------


async def _drain(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        pass


OPERATIONS: dict[str, Callable[[base.Backend, Blob], Awaitable[Any]]] = {
    "health": lambda b, blob: b.health(),
    "usage": lambda b, blob: b.usage(),
    "list_pins": lambda b, blob: _drain(b.list_pins()),
    "put_pin": lambda b, blob: put(b, blob),
    "verify_pin": lambda b, blob: b.verify_pin(blob.cid),
    "verify_pin_deep": lambda b, blob: b.verify_pin(blob.cid, deep=True),
    "fetch_pin": lambda b, blob: _drain(b.fetch_pin(blob.cid)),
    "remove_pin": lambda b, blob: b.remove_pin(blob.cid),
}

CONTENT_OPERATIONS = ["verify_pin_deep", "fetch_pin"]
"""Operations that read stored bytes, which a pinning service does not have."""

SCENARIOS: dict[str, type[errors.BackendError]] = {
    "wrong_credentials": errors.AuthFailed,
    "unreachable": errors.Unreachable,
    "missing_location": errors.LocationNotFound,
}


async def fails_cleanly(backends: Backends, kit: Kit, scenario: str, operation: str) -> None:
    """The scenario's error class and reason (the kit may name a more specific one), retryable
    only when the server is unreachable (and then at once, not after a long timeout), and no
    secret in the message."""
    backend = backends.build(*getattr(kit, scenario)())
    expected = SCENARIOS[scenario]
    started = time.monotonic()
    with pytest.raises(errors.BackendError) as caught:
        await OPERATIONS[operation](backend, Blob(SMALL))
    assert isinstance(caught.value, expected), repr(caught.value)
    assert caught.value.reason == kit.reasons.get(scenario, expected.reason)
    assert caught.value.retryable == (expected is errors.Unreachable)
    assert time.monotonic() - started < 30, "a broken backend should fail fast"
    assert_no_secrets(caught.value, kit)


@pytest.mark.parametrize("operation", [op for op in OPERATIONS if op not in CONTENT_OPERATIONS])
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_every_operation_on_a_broken_backend_raises_its_error_without_secrets(
    backends: Backends, backend_kit: Kit, scenario: str, operation: str
) -> None:
    await fails_cleanly(backends, backend_kit, scenario, operation)


@pytest.mark.needs("content")
@pytest.mark.parametrize("operation", CONTENT_OPERATIONS)
@pytest.mark.parametrize("scenario", list(SCENARIOS))
async def test_every_content_operation_on_a_broken_backend_raises_its_error_without_secrets(
    backends: Backends, backend_kit: Kit, scenario: str, operation: str
) -> None:
    await fails_cleanly(backends, backend_kit, scenario, operation)


# -- the server going away ------------------------------------------------------------------------


async def wait_healthy(backend: base.Backend, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            await backend.health()
            return
        except errors.BackendError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.5)


@pytest.mark.needs("content")  # a pinning service reads no stream: no "mid-put"
@pytest.mark.parametrize("stop_after", [2 * MiB, 9 * MiB], ids=["after-2MiB", "after-9MiB"])
async def test_a_server_going_down_mid_put_fails_retryably_and_the_put_succeeds_later(
    backend: base.Backend, server_restarted: Kit, stop_after: int
) -> None:
    kit = server_restarted
    await backend.health()
    blob = Blob(LARGE)

    async def stop_server(sent: int) -> None:
        if sent == stop_after:
            await asyncio.to_thread(kit.stop_server)

    stream = chunks(blob.data, MiB, on_chunk=stop_server)
    with pytest.raises(errors.BackendError) as caught:
        await backend.put_pin(blob.meta(), stream)
    assert isinstance(caught.value, errors.Unreachable) or caught.value.retryable, repr(
        caught.value
    )
    assert_no_secrets(caught.value, kit)

    await asyncio.to_thread(kit.start_server)
    await wait_healthy(backend)
    assert await pins(backend) == {}  # nothing half-written became a pin

    await backend.put_pin(blob.meta(), chunks(blob.data, MiB))
    assert await pins(backend) == {blob.cid: blob.size}
    info = await backend.verify_pin(blob.cid, deep=True)
    assert (info.size, info.sha256) == (blob.size, blob.sha256)


# -- batches --------------------------------------------------------------------------------------


def upload(blob: Blob, *, fail_after: int | None = None) -> base.Upload:
    return base.Upload(
        meta=blob.meta(),
        content=lambda: chunks(blob.data, chunk_size(blob), fail_after=fail_after),
    )


async def test_put_pins_stores_every_pin_of_a_batch_and_reports_each(
    backend: base.Backend, backend_kit: Kit
) -> None:
    blobs = [Blob(SMALL, kit=backend_kit) for _ in range(3)]
    results = await backend.put_pins([upload(blob) for blob in blobs])
    assert [getattr(result, "cid", result) for result in results] == [b.cid for b in blobs]
    assert sorted(await pins(backend)) == sorted(blob.cid for blob in blobs)


@pytest.mark.needs("content")
async def test_a_pin_whose_stream_fails_in_a_batch_fails_alone_with_its_own_error(
    backend: base.Backend, backend_kit: Kit
) -> None:
    first, broken, last = Blob(SMALL), Blob(SMALL), Blob(SMALL)
    results = await backend.put_pins(
        [upload(first), upload(broken, fail_after=SMALL // 2), upload(last)]
    )
    assert isinstance(results[1], SourceFailed)
    assert [getattr(results[i], "sha256", None) for i in (0, 2)] == [first.sha256, last.sha256]
    assert await pins(backend) == {first.cid: first.size, last.cid: last.size}
