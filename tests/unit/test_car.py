"""CarChecker on CARs built here: pass-through, any chunking, and every kind of damage."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterable

import pytest
from multiformats import CID, multihash

from pinsync import cids
from pinsync.car import CarChecker, CarError
from tests import cars

RNG = random.Random(1234)


def raw_cid(data: bytes, hashfun: str = "sha2-256") -> CID:
    return CID("base32", 1, "raw", multihash.digest(data, hashfun))


def block(data: bytes, cid: CID | None = None) -> bytes:
    return cars.block(bytes(cid if cid is not None else raw_cid(data)), data)


def header(*roots: CID, version: int = 1) -> bytes:
    return cars.header(*(bytes(root) for root in roots), version=version)


class Car:
    """A CAR with its byte offsets: where each block section starts and where its data starts."""

    def __init__(self, blocks: Iterable[tuple[CID, bytes]], roots: Iterable[CID]) -> None:
        self.blocks = list(blocks)
        self.data = header(*roots)
        self.boundaries = [len(self.data)]
        self.data_ranges: list[range] = []
        for cid, data in self.blocks:
            frame = block(data, cid)
            start = len(self.data) + len(frame) - len(data)
            self.data += frame
            self.data_ranges.append(
                range(start - len(multihash.unwrap(bytes(cid.digest))), start + len(data))
            )
            self.boundaries.append(len(self.data))


def small_car() -> Car:
    """Four raw blocks of a few dozen to a few hundred bytes, the first one being the root."""
    datas = [RNG.randbytes(n) for n in (40, 130, 1, 300)]
    blocks = [(raw_cid(d), d) for d in datas]
    return Car(blocks, [blocks[0][0]])


async def chunked(data: bytes, sizes: Iterable[int]) -> AsyncIterator[bytes]:
    pos = 0
    for size in sizes:
        if pos >= len(data):
            break
        yield data[pos : pos + size]
        pos += size
    if pos < len(data):
        yield data[pos:]


async def run(
    data: bytes,
    sizes: Iterable[int] = (1 << 20,),
    *,
    root: str | None = None,
    expected_blocks: int | None = None,
) -> tuple[bytes, CarChecker]:
    checker = CarChecker(chunked(data, sizes), root=root, expected_blocks=expected_blocks)
    out = b"".join([chunk async for chunk in checker])
    return out, checker


async def test_pass_through_is_byte_identical_and_counts_blocks_and_bytes() -> None:
    big = RNG.randbytes(1 << 20)
    datas = [RNG.randbytes(1000), big, b"", RNG.randbytes(262_144)]
    blocks = [(raw_cid(d), d) for d in datas]
    car = Car(blocks, [blocks[0][0]])
    for sizes in ([len(car.data)], [7] * len(car.data), [65_537] * 40, [3, 1 << 20, 5, 1 << 21]):
        out, checker = await run(car.data, sizes, root=str(blocks[0][0]), expected_blocks=4)
        assert out == car.data
        assert checker.blocks == 4
        assert checker.size == len(car.data)
        assert checker.block_bytes == sum(len(d) for d in datas)
        assert checker.roots == [cids.key(str(blocks[0][0]))]


async def test_every_one_byte_chunking_and_every_two_way_split_works() -> None:
    car = small_car()
    out, checker = await run(car.data, [1] * len(car.data), expected_blocks=4)
    assert out == car.data and checker.blocks == 4
    for cut in range(len(car.data) + 1):
        out, checker = await run(car.data, [cut], expected_blocks=4)
        assert out == car.data and checker.blocks == 4


async def test_truncation_anywhere_is_detected_given_the_block_count() -> None:
    car = small_car()
    for cut in range(len(car.data)):
        with pytest.raises(CarError):
            await run(car.data[:cut], [5], expected_blocks=4)


async def test_truncation_mid_section_is_detected_even_without_a_block_count() -> None:
    car = small_car()
    for cut in range(len(car.data)):
        if cut in car.boundaries:
            # A cut between sections is a well-formed, shorter CAR: this is exactly how Kubo's
            # export ends when a block is missing, hence expected_blocks.
            _, checker = await run(car.data[:cut])
            assert checker.blocks == car.boundaries.index(cut)
            continue
        with pytest.raises(CarError, match="stream ended"):
            await run(car.data[:cut], [3])


async def test_a_flipped_byte_in_a_block_digest_or_data_is_detected() -> None:
    car = small_car()
    for positions in car.data_ranges:
        for pos in positions:
            damaged = bytearray(car.data)
            damaged[pos] ^= 0x01
            with pytest.raises(CarError, match="does not match its hash"):
                await run(bytes(damaged), [17])


async def test_a_corrupt_block_fails_before_the_chunk_that_completes_it_is_passed_on() -> None:
    car = small_car()
    damaged = bytearray(car.data)
    damaged[car.data_ranges[1][-1]] ^= 0xFF
    passed: list[bytes] = []
    with pytest.raises(CarError):
        async for chunk in CarChecker(chunked(bytes(damaged), [1] * len(damaged))):
            passed.append(chunk)
    assert len(passed) == car.boundaries[2] - 1


async def test_a_wrong_root_is_detected() -> None:
    car = small_car()
    other = raw_cid(b"something else")
    with pytest.raises(CarError, match="do not include"):
        await run(car.data, root=str(other))
    no_roots = Car(car.blocks, [])
    with pytest.raises(CarError, match="none"):
        await run(no_roots.data, root=str(car.blocks[0][0]))


async def test_a_cidv0_root_matches_a_cidv1_header_of_the_same_dag_pb_node() -> None:
    node = b"\x0a\x02\x08\x01"  # a dag-pb node: an empty UnixFS directory
    v1 = CID("base32", 1, "dag-pb", multihash.digest(node, "sha2-256"))
    v0 = v1.set(base="base58btc", version=0)
    car = Car([(v1, node)], [v1])
    _, checker = await run(car.data, root=str(v0), expected_blocks=1)
    assert checker.blocks == 1


async def test_a_block_count_other_than_expected_is_detected() -> None:
    car = small_car()
    for expected in (0, 3, 5):
        with pytest.raises(CarError, match=f"CAR has 4 blocks, expected {expected}"):
            await run(car.data, expected_blocks=expected)


async def test_cidv0_and_non_sha256_blocks_are_verified_too() -> None:
    node = b"\x0a\x02\x08\x01"
    v0 = CID("base58btc", 0, "dag-pb", multihash.digest(node, "sha2-256"))
    blake = RNG.randbytes(500)
    blake_cid = raw_cid(blake, "blake2b-256")
    sha512 = RNG.randbytes(70)
    sha512_cid = raw_cid(sha512, "sha2-512")
    car = Car([(v0, node), (blake_cid, blake), (sha512_cid, sha512)], [v0])
    _, checker = await run(car.data, [2], root=str(v0), expected_blocks=3)
    assert checker.blocks == 3
    for positions in car.data_ranges:
        damaged = bytearray(car.data)
        damaged[positions[-1]] ^= 0x80
        with pytest.raises(CarError, match="does not match"):
            await run(bytes(damaged))


MALFORMED = small_car()
MALFORMED_BLOCKS = MALFORMED.data[MALFORMED.boundaries[0] :]


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(b"", id="empty stream"),
        pytest.param(header(MALFORMED.blocks[0][0], version=2) + MALFORMED_BLOCKS, id="version 2"),
        pytest.param(cars.section(b"\x82\x01\x02") + MALFORMED_BLOCKS, id="not a map"),
        pytest.param(cars.section(b"\xbf\xff") + MALFORMED_BLOCKS, id="indefinite-length map"),
        pytest.param(
            cars.section(b"\xa2\x65roots") + MALFORMED_BLOCKS, id="header past its section"
        ),
        pytest.param(MALFORMED_BLOCKS, id="blocks without a header"),
    ],
)
async def test_a_missing_or_malformed_header_is_rejected(data: bytes) -> None:
    with pytest.raises(CarError):
        await run(data)


async def test_absurd_section_lengths_are_rejected_without_buffering() -> None:
    car = small_car()
    huge = bytes(cars.varint.encode(1 << 40)) + b"x" * 100
    with pytest.raises(CarError, match="exceeds"):
        await run(car.data + huge)
    with pytest.raises(CarError, match="zero-length"):
        await run(car.data + b"\x00")


async def test_the_source_stream_is_closed_when_the_check_fails() -> None:
    car = small_car()
    closed = False

    async def source() -> AsyncIterator[bytes]:
        nonlocal closed
        try:
            yield car.data[:-1] + bytes([car.data[-1] ^ 1])
            yield b"never reached"
        finally:
            closed = True

    with pytest.raises(CarError):
        async for _ in CarChecker(source()):
            pass
    assert closed
