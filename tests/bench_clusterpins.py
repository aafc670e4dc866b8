"""What streaming a large cluster pinset costs :class:`pinsync.clusterpins.ClusterPins`.

``python -m tests.bench_clusterpins [PINS]`` (default 100,000): a real two-peer cluster
(:func:`pinsync.devenv.cluster.two_peers`, no auth), PINS tiny raw blocks pinned on both peers,
then ``ClusterPins.pins()`` read to the end, three times each without and with
``pinned_only`` (``?filter=pinned``), against the bare transport (httpx reading the same
answer's bytes, parsing nothing). Reported per run: CPU-seconds of this process
(``time.process_time``), wall seconds, and the seconds until the first byte (the cluster sends
nothing before it has every peer's statuses); then the peak of Python's allocations during one
more read (``tracemalloc``), which must not grow with the pinset.

Pinning 100,000 CIDs through the REST API runs at ~115 pins/s here (each ``POST /pins`` is a CRDT
commit of its own), so the pinset is made the way ``ipfs-cluster-service`` restores a backup:
each Kubo imports one CAR of the blocks with every block as a pinned root, and each peer, while
stopped, imports the same state file (``state import``: one batched CRDT commit).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import pathlib
import random
import shutil
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Sequence

import httpx

from pinsync import clusterpins
from pinsync.devenv import cluster, kubo
from tests import cars


def car_of(
    count: int, *, size: int = 0, label: bytes = b"pinsync-clusterpins-bench"
) -> tuple[bytes, list[str]]:
    """A CARv1 of ``count`` raw blocks, every one of them a root; and their CIDs. A block is
    ``<label>-<index>``, filled up to ``size`` bytes with seeded random bytes when that is
    longer (so pins of several CARs differ by their labels)."""
    rng = random.Random(label)
    raw_cids, blocks = [], []
    for index in range(count):
        data = b"%s-%d" % (label, index)
        if size > len(data):
            data += rng.randbytes(size - len(data))
        raw = cars.raw_cid(data)
        raw_cids.append(raw)
        blocks.append(cars.block(raw, data))
    car = cars.header(*raw_cids) + b"".join(blocks)
    return car, [cars.cid_text(raw) for raw in raw_cids]


def state_file(
    path: pathlib.Path,
    cids: Sequence[str],
    *,
    prefix: str = "bench/",
    allocations: Sequence[Sequence[str]] = (),
) -> None:
    """A ``state export`` file: one pin per line, named ``<prefix><index>``. Replicated on every
    peer, unless ``allocations`` gives, per CID, the cluster peer IDs holding it (then its
    replication factor is their number)."""
    with path.open("w") as out:
        for index, cid in enumerate(cids):
            peers = list(allocations[index]) if allocations else []
            pin = {
                "cid": cid,
                "name": f"{prefix}{index:06d}",
                "metadata": {"team": "media" if index % 2 else "other"},
                "type": "pin",
                "mode": "recursive",
                "allocations": peers,
                "max_depth": -1,
                "replication_factor_min": len(peers) or -1,
                "replication_factor_max": len(peers) or -1,
                "timestamp": "2026-12-06T00:00:00Z",
            }
            out.write(json.dumps(pin) + "\n")


def load(members: Sequence[cluster.Member], cars: Sequence[bytes], state: pathlib.Path) -> None:
    """Each member's Kubo imports its CAR (every block a pinned root); then every peer, stopped,
    imports the ``state`` file offline (one batched CRDT commit), and the cluster is restarted
    until each peer sees all of them again."""
    for member, car in zip(members, cars, strict=True):
        import_car(member.kubo, car)
    for member in members:
        member.peer.stop()
    for member in members:
        member.peer.service("state", "import", "-f", str(state))
        member.peer.start()
    for member in members:
        member.peer.wait_for_peers(len(members))


def import_car(node: kubo.Kubo, car: bytes) -> None:
    response = httpx.post(
        f"{node.api_url}/api/v0/dag/import",
        params={"pin-roots": "true", "stats": "true"},
        files={"file": ("bench.car", car)},
        timeout=1800,
    )
    response.raise_for_status()


async def read_pins(api_url: str, pinned_only: bool) -> tuple[int, int, float, float, float]:
    """(pins, pinned on both peers, CPU s, wall s, s to first pin) of one full read."""
    count = both = 0
    cpu, wall = time.process_time(), time.monotonic()
    first = 0.0
    async with contextlib.aclosing(clusterpins.ClusterPins(api_url, timeout=600)) as client:
        async for pin in client.pins(pinned_only=pinned_only):
            if not count:
                first = time.monotonic() - wall
            count += 1
            both += len(pin.pinned_on) == 2
    return count, both, time.process_time() - cpu, time.monotonic() - wall, first


async def peak_memory(api_url: str) -> tuple[int, float]:
    """(pins, peak MiB that Python allocated meanwhile) of one full read, under tracemalloc."""
    tracemalloc.start()
    try:
        count = 0
        async with contextlib.aclosing(clusterpins.ClusterPins(api_url, timeout=600)) as client:
            async for _ in client.pins():
                count += 1
        return count, tracemalloc.get_traced_memory()[1] / 2**20
    finally:
        tracemalloc.stop()


async def read_bytes(api_url: str) -> tuple[int, float, float]:
    """(bytes, CPU s, wall s) of reading the same answer with httpx, parsing nothing."""
    size = 0
    cpu, wall = time.process_time(), time.monotonic()
    async with (
        httpx.AsyncClient(timeout=600) as client,
        client.stream("GET", f"{api_url}/pins") as response,
    ):
        async for chunk in response.aiter_bytes():
            size += len(chunk)
    return size, time.process_time() - cpu, time.monotonic() - wall


def say(text: str) -> None:
    print(text, flush=True)


def main(count: int) -> None:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="pinsync-bench-clusterpins-"))
    try:
        run(workdir, count)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run(workdir: pathlib.Path, count: int) -> None:
    started = time.monotonic()
    car, cids = car_of(count)
    state = workdir / "state.jsonl"
    state_file(state, cids)
    with cluster.two_peers(workdir, username=None) as members:
        load(members, [car, car], state)
        say(
            f"{count} blocks imported and pinned on both Kubos, state imported into both peers "
            f"({time.monotonic() - started:.0f}s)"
        )
        api_url = members[0].peer.api_url
        for _ in range(3):
            size, cpu, wall = asyncio.run(read_bytes(api_url))
            say(f"httpx bytes only: {size / 1e6:.1f} MB, {cpu:.2f} CPU-s, {wall:.2f}s wall")
        for pinned_only in (False, True):
            for _ in range(3):
                pins, both, cpu, wall, first = asyncio.run(read_pins(api_url, pinned_only))
                say(
                    f"pins(pinned_only={pinned_only}): {pins} pins ({both} pinned on both), "
                    f"{cpu:.2f} CPU-s, {wall:.2f}s wall, first pin after {first:.2f}s"
                )
        pins, peak = asyncio.run(peak_memory(api_url))
        say(f"pins() under tracemalloc: {pins} pins, peak {peak:.1f} MiB allocated by Python")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100_000)
