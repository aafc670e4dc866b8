"""Rows (19)-(20) of ``make bench``: the scale-out (``PINSYNC_WORKERS``), through the operator.

With ``PINSYNC_WORKERS=N`` the operator only plans: it lists the backend, publishes the pins to
transfer as shards (an order in a ConfigMap and a claim in a Lease each) and rolls the workers'
reports up into the StorageBackend's status; ``python -m pinsync worker`` processes claim the
shards and transfer. These rows ask what that split costs, on the same product path as (5):

- set up once for the section: a kube-apiserver + etcd with the CRDs
  (:class:`tests.bench_operator.Cluster`), the bench's own Kubo (offline) and MinIO; then, with
  nothing else running against it, the API server's own background writes over a short window
  (its identity Lease in ``kube-system``, renewed every 10 s), subtracted from every run's
  write counts below (scaled by the run's duration; the raw counts are printed too);
- each run in a namespace of its own, on a fresh operator process served only that namespace
  (``PINSYNC_NAMESPACES``) and, for N > 0, with ``PINSYNC_WORKERS=N`` and N worker processes
  (``pinsync worker -n NAMESPACE``, default ``--max-shards 2``, default Lease of 15 s) started
  beside it; a StorageBackend on an empty bucket of its own, Ready with nothing present; then
  timed from ``kubectl apply`` of a PinSet until the backend is Ready, clean and holds every
  pin, as (5) times it. Workloads: 20,000 pins of 1 KiB stored on Kubo but not pinned (the
  operator pins them first, as in (5); unpinned again after each run, so every run starts from
  the same node), ``sync.concurrency: 16``; and 16 pins of 64 MiB (pinned),
  ``sync.concurrency: 4``. Worker counts 0 (in-process: the operator alone, as in (5)), 1, 2, 4.
- the costs' window runs from the apply until the PinSet is Ready too: a pin is transferred
  whether or not the node has pinned it yet, so the backend can be Ready while the operator
  still pins (how many were pinned when the backend became Ready is printed); reading the costs
  at the backend's Ready would leave that work out, more of it the faster the transfers went;
- CPU: user + system seconds of the operator and of every worker process from
  ``/proc/<pid>/stat`` just before the apply and at the window's end (all processes alive, so
  nothing is lost to exits), and the same for the API server, etcd, Kubo and MinIO (printed
  below the table, not in the per-pin figure);
- API writes: ``apiserver_request_total`` (POST, PUT, PATCH, DELETE, DELETECOLLECTION) scraped
  from the bench API server's ``/metrics`` (as the admin user) at the same two moments, by
  resource and subresource.

19. pins/s, MiB/s and CPU-ms per pin summed over the operator and the workers, for each worker
    count; target: with workers, CPU per pin at most 1.25 x the in-process run's.
20. the planner's cost: operator CPU-ms per 1,000 pins in the distributed runs, and API writes
    per 1,000 pins (target: they follow shards, not pins: at 20,000 pins the writes the
    scale-out adds over the in-process run stay under 10 per 1,000 pins); then a MODEL, labelled
    as such, of how many workers one planner core can feed: the workers' CPU per 1,000 pins over
    the planner's.

``PINSYNC_BENCH_WORKER_COUNTS`` (e.g. ``0,1``) runs other worker counts than 0, 1, 2 and 4.

This machine has two cores, shared with Kubo, MinIO, the API server and etcd (and, often, other
people's test runs: the load average before and after each run is printed beside it). More
workers here cannot add CPU, so pins/s is not expected to grow with N; what these rows measure
is the overhead per pin of planning, publishing, claiming and reporting, and what the planner
costs, not a speed-up.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import functools
import os
import pathlib
import re
import time
from collections.abc import Callable, Sequence
from typing import Any

import httpx
import kubernetes

from pinsync import shards
from pinsync.devenv import controlplane, processes
from tests import bench_operator
from tests.bench import (
    CACHE,
    ROOT,
    Bench,
    BenchError,
    KiB,
    MiB,
    S3Target,
    add_big,
    add_small,
    process_cpu,
    say,
    size_label,
    verdict,
)
from tests.kubetools import eventually

UNITS = ("19", "20")
WORKER_COUNTS = (0, 1, 2, 4)
COUNTS_ENV = "PINSYNC_BENCH_WORKER_COUNTS"
"""Other worker counts to run, comma-separated (e.g. ``0,1`` for a quick look); 0 is the
in-process run the others are compared with."""
TARGET_CPU_RATIO = 1.25
"""(19): distributed CPU per pin against in-process."""
TARGET_EXTRA_WRITES = 10.0
"""(20): API writes per 1,000 pins the scale-out may add over the in-process run (20,000 pins)."""
SYNC_TIMEOUT = 20 * 60.0
"""A run gives up after this long and reports the rate it reached."""
BACKEND = "target"
PINSET = "pins"
WRITE_VERBS = ("POST", "PUT", "PATCH", "DELETE", "DELETECOLLECTION")
LOG_COPY = CACHE / "logs" / "bench-operator-workers.log"
_LABEL = re.compile(r'(\w+)="([^"]*)"')


def worker_counts() -> tuple[int, ...]:
    raw = os.environ.get(COUNTS_ENV, "").strip()
    if not raw:
        return WORKER_COUNTS
    try:
        counts = tuple(sorted({int(part) for part in raw.split(",") if part.strip()}))
    except ValueError:
        raise SystemExit(f"{COUNTS_ENV}={raw!r}: expected worker counts like 0,1,2,4") from None
    if not counts or min(counts) < 0:
        raise SystemExit(f"{COUNTS_ENV}={raw!r}: expected worker counts like 0,1,2,4")
    return counts


@dataclasses.dataclass(frozen=True, kw_only=True)
class WorkersPlan:
    """Counts and sizes of rows (19)-(20); scale 1.0 is the benchmark as specified."""

    small_pins: int
    small_size: int = KiB
    small_concurrency: int = 16
    big_pins: int
    big_size: int
    big_concurrency: int = 4
    baseline_seconds: float

    @classmethod
    def from_scale(cls, scale: float, big_pins: int, big_size: int) -> WorkersPlan:
        return cls(
            small_pins=max(20, round(20_000 * scale)),
            big_pins=big_pins,
            big_size=big_size,
            baseline_seconds=max(20.0, 60.0 * scale),
        )


@dataclasses.dataclass(frozen=True, kw_only=True)
class Workload:
    key: str
    label: str
    cids: list[str]
    concurrency: int
    unpin_after: bool
    """The pins were stored unpinned: unpin them again after each run."""


Writes = collections.Counter[tuple[str, str]]
"""(resource[/subresource], verb) -> requests."""


def api_writes(plane: controlplane.ControlPlane) -> Writes:
    """The API server's write requests so far, from its own ``apiserver_request_total``."""
    tls = controlplane.ControlPlane.admin_tls(plane.certs)
    text = httpx.get(f"{plane.server}/metrics", verify=tls, timeout=60).text
    counts: Writes = collections.Counter()
    for line in text.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_part, _, value = line.rpartition(" ")
        labels = dict(_LABEL.findall(labels_part))
        verb = labels.get("verb", "")
        if verb not in WRITE_VERBS:
            continue
        sub = labels.get("subresource", "")
        resource = labels.get("resource", "") + (f"/{sub}" if sub else "")
        counts[resource, verb] += round(float(value))
    return counts


def loadavg() -> str:
    return " ".join(pathlib.Path("/proc/loadavg").read_text().split()[:3])


async def unpin(api_url: str, cids: Sequence[str]) -> None:
    """Remove the recursive pins of ``cids`` (the blocks stay: the node runs no GC); those not
    pinned are left alone (``pin/rm`` fails a whole request on one)."""
    pinned = (await bench_operator.node_pins(api_url)).keys()
    cids = [cid for cid in cids if cid in pinned]
    async with httpx.AsyncClient(base_url=api_url, timeout=300) as client:
        for start in range(0, len(cids), 1000):
            batch = cids[start : start + 1000]
            answer = await client.post("/api/v0/pin/rm", params=[("arg", cid) for cid in batch])
            answer.raise_for_status()


async def car_bytes(target: S3Target, bucket: str) -> tuple[int, int]:
    """(CARs, their bytes) in ``bucket`` under pinsync's prefix."""
    backend = dataclasses.replace(target, bucket=bucket).backend("pins")
    count = total = 0
    async with backend:
        async for key, size in backend.list_objects():
            if key.endswith(".car"):
                count += 1
                total += size
    return count, total


@dataclasses.dataclass(kw_only=True)
class Run:
    """One timed sync: a workload, a worker count, what it cost."""

    workload: str
    workers: int
    pins: int
    shards: int
    done: bool
    seconds: float
    """From the apply until the backend is Ready with every pin (as (5) times it)."""
    all_done: float
    """From the apply until the PinSet is Ready too (every pin pinned on the node): the costs'
    window."""
    pinned_at_ready: int
    """Of the PinSet's pins, those pinned on the node when the backend became Ready."""
    bytes: int
    cpu: dict[str, float]
    """CPU seconds over the run by process: operator, worker-<i>, and the servers."""
    writes: dict[tuple[str, str], float]
    """API writes over the run by (resource, verb), the API server's background subtracted."""
    raw_writes: int
    load_before: str
    load_after: str
    present: int

    @property
    def operator_cpu(self) -> float:
        return self.cpu["operator"]

    @property
    def workers_cpu(self) -> float:
        return sum(v for k, v in self.cpu.items() if k.startswith("worker-"))

    @property
    def pinsync_cpu(self) -> float:
        return self.operator_cpu + self.workers_cpu

    @property
    def ms_per_pin(self) -> float:
        return 1000 * self.pinsync_cpu / self.pins

    @property
    def pins_per_s(self) -> float:
        return self.present / self.seconds

    @property
    def mib_per_s(self) -> float:
        return self.bytes / MiB / self.seconds

    @property
    def total_writes(self) -> float:
        return sum(self.writes.values())

    def per_1000(self, value: float) -> float:
        return 1000 * value / self.pins

    def writes_by_resource(self) -> dict[str, float]:
        found: dict[str, float] = collections.defaultdict(float)
        for (resource, _), count in self.writes.items():
            found[resource] += count
        return dict(sorted(found.items(), key=lambda item: -item[1]))


class Crew(bench_operator.Cluster):
    """The bench's API server and operator, and worker processes started per run."""

    def __init__(self, workdir: pathlib.Path, bench: Bench) -> None:
        super().__init__(workdir, bench, log_copy=LOG_COPY)
        self.workers: list[processes.Process] = []
        self.background: dict[tuple[str, str], float] = {}
        """Writes per second the API server makes by itself (see :meth:`measure_background`)."""

    def start(self) -> Crew:
        """Only the API server: each run starts an operator of its own."""
        say("starting kube-apiserver + etcd, installing the CRDs")
        self.plane.start()
        controlplane.install_crds(self.kubeconfig, ROOT / "crds")
        connect: Callable[..., Any] = kubernetes.config.new_client_from_config
        self.client = connect(config_file=str(self.kubeconfig))
        return self

    def measure_background(self, seconds: float) -> None:
        say(f"(19) the API server's own writes over {seconds:.0f} s, nothing else running")
        before, start = api_writes(self.plane), time.perf_counter()
        time.sleep(seconds)
        after, elapsed = api_writes(self.plane), time.perf_counter() - start
        self.background = {key: (after[key] - before[key]) / elapsed for key in after}
        self.background = {key: rate for key, rate in self.background.items() if rate > 0}

    def alive(self) -> None:
        super().alive()
        for worker in self.workers:
            if not worker.running:
                raise BenchError(f"{worker.name} exited:\n{worker.log_tail()}")

    def start_workers(self, count: int, namespace: str) -> None:
        for index in range(count):
            name = f"worker-{index + 1}"
            process = processes.pinsync_worker(
                name,
                kubeconfig=self.kubeconfig,
                namespace=namespace,
                workdir=self.workdir / f"{namespace}-{name}",
                env=self.operator_env,
                identity=f"{namespace}-{name}",
            )
            self.workers.append(process)
        for process in self.workers:
            deadline = time.monotonic() + 30
            while "shard(s) at a time" not in process.log_tail(50):
                if not process.running or time.monotonic() > deadline:
                    raise BenchError(f"{process.name} did not start:\n{process.log_tail()}")
                time.sleep(0.2)
            bench_operator.python_pid(process)  # measured: the Python process itself

    def pinset_ready(self, world: bench_operator.World, timeout: float) -> bool:
        def check() -> bool:
            self.alive()
            status = world.pinsets.get(PINSET).get("status") or {}
            assert bench_operator.is_true(status, "Ready"), status.get("conditions")
            return True

        try:
            return eventually(check, timeout=timeout, interval=0.5)
        except AssertionError:
            return False

    def stop_workers(self) -> None:
        for process in self.workers:
            process.stop(timeout=20)
        self.workers.clear()

    def cpu(self) -> dict[str, float]:
        return {**super().cpu(), **{p.name: process_cpu(p) for p in self.workers}}

    def run(self, workload: Workload, workers: int) -> Run:
        """One timed sync of ``workload`` with ``workers`` worker processes (0: in-process)."""
        namespace = f"bench-w{workers}-{workload.key}"
        world = self.world(namespace)
        self.env = {"PINSYNC_NAMESPACES": namespace}
        if workers:
            self.env["PINSYNC_WORKERS"] = str(workers)
        n = len(workload.cids)
        self.start_operator()
        try:
            self.start_workers(workers, namespace)
            world.add_backend(BACKEND, sync={"concurrency": workload.concurrency})
            world.wait_ready(BACKEND, present=0, timeout=120)
            time.sleep(2)  # the backend's first pass's last writes
            cpu_before, writes_before, load_before = self.cpu(), api_writes(self.plane), loadavg()
            say(f"(19) {workload.label}, {workers} worker(s): applying the PinSet")
            start = time.perf_counter()
            world.add_pinset(PINSET, workload.cids, [BACKEND])
            done, status = world.until_ready(
                BACKEND, n, timeout=SYNC_TIMEOUT, label=f"(19) {workers} worker(s)"
            )
            seconds = time.perf_counter() - start
            on_node = asyncio.run(bench_operator.node_pins(self.bench.node.api_url))
            pinned_at_ready = len(on_node.keys() & set(workload.cids))
            # The PinSet may still be pinning (its pins are transferred whether pinned or not):
            # the costs are read once all of the PinSet's work is done, in every mode alike.
            pinset_ready = self.pinset_ready(world, max(60.0, SYNC_TIMEOUT - seconds))
            all_done = time.perf_counter() - start
            cpu_after, writes_after, load_after = self.cpu(), api_writes(self.plane), loadavg()
        finally:
            self.stop_workers()
            self.stop_operator()
        raw = writes_after - writes_before
        writes = {
            key: max(0.0, raw[key] - self.background.get(key, 0.0) * seconds)
            for key in set(raw) | set(self.background)
        }
        _, moved = asyncio.run(car_bytes(self.bench.target, world.buckets[BACKEND]))
        present = int((status.get("counts") or {}).get("present") or 0)
        if workload.unpin_after:
            asyncio.run(unpin(self.bench.node.api_url, workload.cids))
        if not pinset_ready:
            say(f"(19) the PinSet was not Ready {all_done:.0f} s after the apply")
        return Run(
            workload=workload.key,
            workers=workers,
            pins=n,
            shards=shards.shard_count(n, 4 * workers) if workers else 0,
            done=done and pinset_ready,
            seconds=seconds,
            all_done=all_done,
            pinned_at_ready=pinned_at_ready,
            bytes=moved,
            cpu={name: cpu_after[name] - cpu_before[name] for name in cpu_after},
            writes=writes,
            raw_writes=sum(raw.values()),
            load_before=load_before,
            load_after=load_after,
            present=present,
        )


# -- the report ----------------------------------------------------------------------------------


def describe(runs: Sequence[Run]) -> str:
    """The table of every run, printed below the main one."""
    header = (
        "workload        N shards  Ready pinned@Ready  all-done   pins/s    MiB/s | CPU-s: "
        "operator  workers  ms/pin | apiserver  etcd  Kubo  MinIO | writes (raw) | "
        "load before → after"
    )
    lines = [header]
    for run in runs:
        servers = [run.cpu.get(name, float("nan")) for name in ("kube-apiserver", "etcd")]
        servers += [run.cpu.get("Kubo", float("nan")), run.cpu.get("MinIO", float("nan"))]
        lines.append(
            f"{run.workload:<14} {run.workers:2d} {run.shards:6d} {run.seconds:5.1f}s "
            f"{run.pinned_at_ready:12d} {run.all_done:8.1f}s "
            f"{run.pins_per_s:8.1f} {run.mib_per_s:8.1f} | {run.operator_cpu:15.2f} "
            f"{run.workers_cpu:8.2f} {run.ms_per_pin:7.2f} | {servers[0]:9.1f} {servers[1]:5.1f} "
            f"{servers[2]:5.1f} {servers[3]:6.1f} | {run.total_writes:6.0f} ({run.raw_writes:5d})"
            f" | {run.load_before} → {run.load_after}" + ("" if run.done else "  TIMEOUT")
        )
    return "\n".join(lines)


def writes_lines(runs: Sequence[Run], background: dict[tuple[str, str], float]) -> list[str]:
    bg = ", ".join(f"{r} {v} {rate * 60:.1f}/min" for (r, v), rate in sorted(background.items()))
    lines = [f"API server background writes subtracted (measured idle): {bg or 'none'}"]
    for run in runs:
        by = ", ".join(f"{r} {c:.0f}" for r, c in run.writes_by_resource().items() if c >= 0.5)
        verbs: dict[str, float] = collections.defaultdict(float)
        for (_, verb), count in run.writes.items():
            verbs[verb] += count
        how = ", ".join(f"{v} {c:.0f}" for v, c in sorted(verbs.items()) if c >= 0.5)
        lines.append(
            f"  {run.workload}, {run.workers} worker(s), {run.shards} shard(s): "
            f"{run.total_writes:.0f} writes ({how}): {by}"
        )
    return lines


def report_19(bench: Bench, workload: Workload, size: int, runs: Sequence[Run]) -> None:
    report = bench.report
    base = next((run for run in runs if run.workers == 0 and run.done), None)
    n = len(workload.cids)
    for run in runs:
        who = (
            "in-process (the operator alone)"
            if run.workers == 0
            else f"{run.workers} worker process(es), {run.shards} shards"
        )
        what = (
            f"scale-out: {n} x {size_label(size)} → empty S3, concurrency "
            f"{workload.concurrency}, {who}"
        )
        rate = (
            f"{run.pins_per_s:.1f} pins/s"
            if size < MiB
            else f"{run.mib_per_s:.1f} MiB/s ({run.pins_per_s:.2f} pins/s)"
        )
        timing = f"{run.seconds:.1f} s" if run.done else f"TIMEOUT {run.seconds:.0f} s"
        if run.all_done > run.seconds + 0.5:
            timing += f", PinSet Ready at {run.all_done:.1f} s"
        cpu = f"{run.ms_per_pin:.2f} CPU-ms/pin"
        if run.workers == 0:
            report.add("19", what, f"{rate} ({timing}); {cpu}; load {run.load_before}", "reference")
            continue
        split = (
            f"operator {1000 * run.operator_cpu / n:.2f} + workers {1000 * run.workers_cpu / n:.2f}"
        )
        if base is None:
            report.add("19", what, f"{rate} ({timing}); {cpu} ({split})", "no in-process run")
            continue
        ratio = run.ms_per_pin / base.ms_per_pin
        report.add(
            "19",
            what,
            f"{rate} ({timing}); {cpu} ({split}) = {ratio:.2f}x in-process; load {run.load_before}",
            f"≤ {TARGET_CPU_RATIO:.2f}x in-process CPU/pin",
            verdict(run.done and ratio <= TARGET_CPU_RATIO),
        )


def in_process(runs: Sequence[Run]) -> Run | None:
    return next((run for run in runs if run.workers == 0 and run.done), None)


def report_20(bench: Bench, small: Sequence[Run], big: Sequence[Run]) -> list[str]:
    """Rows (20a)-(20c); returns the model's paragraph."""
    report = bench.report
    base = in_process(small)
    distributed = [run for run in small if run.workers and run.done]
    if not distributed:
        raise BenchError("no distributed run of the small pins to read the planner's cost from")
    n = distributed[0].pins
    counts = " / ".join(str(run.workers) for run in distributed)
    planner = [run.per_1000(1000 * run.operator_cpu) for run in distributed]
    worker = [run.per_1000(1000 * run.workers_cpu) for run in distributed]
    control = [
        run.per_1000(1000 * (run.cpu.get("kube-apiserver", 0.0) + run.cpu.get("etcd", 0.0)))
        for run in distributed
    ]
    report.add(
        "20a",
        f"planner (operator) CPU per 1,000 pins, {n} x 1 KiB, {counts} workers",
        " / ".join(f"{value:.0f}" for value in planner)
        + " CPU-ms"
        + (
            f" (the in-process operator, transfers included: "
            f"{base.per_1000(1000 * base.operator_cpu):.0f})"
            if base
            else ""
        ),
        "information",
    )
    for runs, label in ((small, f"{n} x 1 KiB"), (big, "big pins")):
        ran = [run for run in runs if run.done]
        if not ran:
            continue
        zero = in_process(ran)
        per_shard = [
            f"{(run.total_writes - zero.total_writes) / run.shards:.1f}"
            for run in ran
            if run.workers and zero is not None
        ]
        report.add(
            "20b",
            f"API writes, {ran[0].pins} x {label.split(' x ')[-1]}, "
            + " / ".join(str(run.workers) for run in ran)
            + " workers (shards "
            + " / ".join(str(run.shards) for run in ran)
            + ")",
            " / ".join(f"{run.total_writes:.0f}" for run in ran)
            + f" = {' / '.join(f'{run.per_1000(run.total_writes):.1f}' for run in ran)} "
            "per 1,000 pins"
            + (f"; per shard above in-process: {' / '.join(per_shard)}" if per_shard else ""),
            "information",
        )
    if base is not None:
        extra = [run.per_1000(run.total_writes - base.total_writes) for run in distributed]
        report.add(
            "20b",
            f"API writes the scale-out adds per 1,000 pins at {n} pins, {counts} workers",
            " / ".join(f"{value:.1f}" for value in extra),
            f"∝ shards, not pins: ≤ {TARGET_EXTRA_WRITES:.0f}",
            verdict(all(value <= TARGET_EXTRA_WRITES for value in extra)),
        )
    feeds = [w / p for w, p in zip(worker, planner, strict=True)]
    report.add(
        "20c",
        f"MODEL: worker cores one planner core can feed (workers' CPU / planner's, per pin; "
        f"{counts} workers)",
        " / ".join(f"{value:.1f}" for value in feeds),
        "model",
    )

    def joined(values: Sequence[float]) -> str:
        return " / ".join(f"{value:.0f}" for value in values)

    return [
        "Scale-out model (a MODEL built from the 1 KiB runs above, not a measurement on many "
        f"cores): per 1,000 pins the planner (operator) spent {joined(planner)} CPU-ms and the "
        f"workers together {joined(worker)} CPU-ms with {counts} workers; the API server + etcd "
        f"{joined(control)} CPU-ms. If the transfers were CPU-bound on the workers and nothing "
        f"else limited them, one planner core would keep {min(feeds):.1f}-{max(feeds):.1f} "
        f"worker cores busy, and plan {1e6 / max(planner):.0f}-{1e6 / min(planner):.0f} pins/s. "
        "Kubo, MinIO and the API server are left out of that ratio; on two shared cores more "
        "workers cannot add CPU, so pins/s here does not grow with N."
    ]


def run(bench: Bench) -> None:
    """Rows (19)-(20): start the API server; every workload with every worker count; stop."""
    plan = WorkersPlan.from_scale(bench.plan.scale, bench.plan.big_pins, bench.plan.big_size)
    crew = Crew(bench.workdir / "workers", bench)
    try:
        crew.start()
        say(f"(19) adding {plan.small_pins} blocks of {plan.small_size} B to Kubo, not pinned")
        api = bench.node.api_url
        small_cids = asyncio.run(
            add_small(api, plan.small_pins, plan.small_size, seed=19, pin=False)
        )
        pinned = asyncio.run(bench_operator.node_pins(api)).keys() & set(small_cids)
        if pinned:
            raise BenchError(f"{len(pinned)} of the new blocks are already pinned on Kubo")
        big_label = f"{plan.big_pins} x {size_label(plan.big_size)}"
        say(f"(19) adding {big_label} to Kubo (pinned)")
        big_cids = add_big(bench.node, plan.big_pins, plan.big_size, seed=20)
        crew.measure_background(plan.baseline_seconds)
        workloads = [
            (
                Workload(
                    key="small",
                    label=f"{plan.small_pins} x {size_label(plan.small_size)}",
                    cids=small_cids,
                    concurrency=plan.small_concurrency,
                    unpin_after=True,
                ),
                plan.small_size,
            ),
            (
                Workload(
                    key="big",
                    label=big_label,
                    cids=big_cids,
                    concurrency=plan.big_concurrency,
                    unpin_after=False,
                ),
                plan.big_size,
            ),
        ]
        done: dict[str, list[Run]] = {}
        for workload, size in workloads:
            runs = done.setdefault(workload.key, [])
            for workers in worker_counts():
                what = f"scale-out: {workload.label}, {workers} worker(s)"
                result = bench.report.attempt(
                    "19", what, functools.partial(crew.run, workload, workers)
                )
                if result is not None:
                    runs.append(result)
            if bench.wants("19"):
                report_19(bench, workload, size, runs)
        all_runs = [run for runs in done.values() for run in runs]
        paragraph = [
            "Scale-out section (rows 19-20): every run, CPU seconds by process over the run "
            "(operator + workers = pinsync's ms/pin), API writes after subtracting the API "
            "server's own, load average before → after:",
            describe(all_runs),
            *writes_lines(all_runs, crew.background),
        ]
        if bench.wants("20"):
            paragraph += report_20(bench, done.get("small", []), done.get("big", []))
        bench.report.extra.append("\n".join(paragraph))
    finally:
        crew.stop()
