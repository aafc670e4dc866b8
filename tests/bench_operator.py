"""Rows (5)-(9) of ``make bench``: the real operator, end to end, on this machine.

A fast library function (``syncing.run``, rows 2 and 3) once hid a 24x slowdown of the operator
around it: what the operator does besides moving bytes (pinning on Kubo, status writes, watch
events of a 1.2 MB PinSet, listings) is invisible to a benchmark of the engine. These rows time
the product path instead. Set up once for the section:

- a kube-apiserver + etcd (``pinsync.devenv.controlplane``, as the e2e tests start them) with the
  CRDs from ``crds/``; the bench's own Kubo (offline) and MinIO;
- the operator as a subprocess, ``python -m pinsync run -v`` (``tests.conftest.Operator``), with
  the default settings but ``PINSYNC_IPFS_API_URL``;
- resources applied with ``kubectl apply --server-side``, progress read from their status;
- the operator's CPU seconds from ``/proc/<pid>/stat`` and its peak RSS from ``VmHWM`` in
  ``/proc/<pid>/status`` of the Python process itself (its command line is checked, so no wrapper
  is measured). A row that reports a peak first resets it (``clear_refs``), so the peak is that
  row's; it cannot go below the RSS the row started with, which is printed beside it.

What each row measures, and why:

5. One PinSet of 20,000 pins of 1 KiB, stored on Kubo but not pinned (so the operator pins them
   first, in batches), targeting one empty S3 StorageBackend (``sync.concurrency: 16``): time
   from ``kubectl apply`` until the backend is Ready with 20,000 present and not dirty. Pins/s,
   target at least 80 % of the engine's own rate in (3a) of this run (or of the README's 204
   pins/s when (3a) did not run): the operator should cost little on top of the engine. Peak RSS,
   target at most 300 MiB: nothing should hold per-pin state it does not need. The row gives up
   after 25 minutes and reports the rate reached.
6. Then 5 minutes idle (scaled, at least 30 s), after three more StorageBackends (own buckets)
   and three more PinSets of a few pins each became Ready: operator CPU-seconds over the window
   (target at most 5 s per 5 minutes: an idle operator must not re-sync or re-list in a loop),
   the first backend's ``status.dirty.token`` unchanged (nothing marked it dirty), and no object
   written to its bucket (object count and newest ``LastModified`` the same before and after).
   Health-check write probes are put and deleted again, so they do not count.
7. A forced full sync (annotation ``pinsync.io/sync-requested-at``) over the 20,000 present pins:
   seconds until ``status.lastHandledSyncRequest`` echoes the value and the backend is clean and
   Ready with ``lastSync.finishedAt`` not before the request; target at most 60 s.
8. A bucket that already holds 50,000 pins in pinsync's layout (100,000 objects written by the
   bench, untimed: synthetic raw CIDs, CAR + sidecar through pinsync's own S3 layer), a new
   StorageBackend on it with a short audit interval and a PinSet wanting 100 of them: the audit's
   duration, from the first ``phase: Auditing`` seen to ``status.lastAudit`` (polled every
   0.2 s), target at most 60 s; and operator peak RSS over the row, target at most 400 MiB.
9. PinSets A and B both targeting two backends; A is deleted: both backends must drop A from
   ``status.marked.sources`` and be clean and Ready within 30 s (one pass), and their
   ``status.dirty.token`` must then stay put for 5 minutes (scaled, at least 30 s): a deleted
   source must not keep marking its backends.

Counts and windows scale with ``PINSYNC_BENCH_SCALE``; (6) and (7) work on (5)'s backend, so
selecting either runs (5) too. Below the table: CPU seconds of the operator, the API server, etcd,
Kubo and MinIO over each row, and what the operator's log says.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime
import json
import pathlib
import random
import shutil
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from typing import Any, cast

import kubernetes
from multiformats import CID, multihash

from pinsync import API_VERSION, GROUP, VERSION, ipfs
from pinsync.backends import base
from pinsync.devenv import controlplane, processes
from tests.bench import (
    CACHE,
    ROOT,
    Bench,
    BenchError,
    KiB,
    S3Target,
    add_small,
    count_objects,
    proc_status_kib,
    process_cpu,
    say,
    verdict,
)
from tests.conftest import Operator
from tests.kubetools import Objects, create_secret, eventually

UNITS = ("5", "6", "7", "8", "9")
ENGINE_SHARE = 0.8  # (5) against (3a)
README_ENGINE_RATE = 204.1  # (3a) in the README, pins/s
TARGET_SYNC_RSS_MIB = 300.0
TARGET_IDLE_CPU_S = 5.0  # per IDLE_REFERENCE_S of idle
IDLE_REFERENCE_S = 300.0
TARGET_FULL_SYNC_S = 60.0
TARGET_AUDIT_S = 60.0
TARGET_AUDIT_RSS_MIB = 400.0
TARGET_FORGET_S = 30.0
SYNC_TIMEOUT = 25 * 60.0
"""(5) gives up after this long and reports the rate it reached."""
SYNC_REQUESTED_AT = "pinsync.io/sync-requested-at"
FIRST = "first"
"""The backend of (5)-(7)."""
LOG_COPY = CACHE / "logs" / "bench-operator.log"


@dataclasses.dataclass(frozen=True, kw_only=True)
class OperatorPlan:
    """Counts and windows of rows (5)-(9); scale 1.0 is the benchmark as specified."""

    pins: int
    pin_size: int = KiB
    concurrency: int = 16
    idle_seconds: float
    extra: int = 3
    extra_pins: int = 5
    audit_pins: int
    audit_wanted: int
    audit_interval: str = "15s"
    pair_pins: int = 10

    @classmethod
    def from_scale(cls, scale: float) -> OperatorPlan:
        audit_pins = max(100, round(50_000 * scale))
        return cls(
            pins=max(20, round(20_000 * scale)),
            idle_seconds=max(30.0, IDLE_REFERENCE_S * scale),
            audit_pins=audit_pins,
            audit_wanted=min(100, audit_pins),
        )


# -- reading the operator and its objects --------------------------------------------------------


def python_pid(process: processes.Process) -> int:
    """The pid to measure: the Python interpreter running pinsync itself, not a wrapper."""
    if process.popen is None:
        raise BenchError(f"{process.name} is not running")
    pid = process.popen.pid
    argv = pathlib.Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    exe = pathlib.Path(f"/proc/{pid}/exe").resolve().name
    if not exe.startswith("python") or b"pinsync" not in argv:
        raise BenchError(f"pid {pid} runs {exe} {argv!r}, not the operator")
    return pid


def reset_peak_rss(pid: int) -> tuple[int, bool]:
    """Reset the process's ``VmHWM`` to its current RSS (``clear_refs`` 5, Linux >= 4.0); return
    (the RSS in KiB, whether the reset worked: if not, peaks are the process's lifetime peak)."""
    try:
        pathlib.Path(f"/proc/{pid}/clear_refs").write_text("5")
        reset = True
    except OSError:
        reset = False
    return proc_status_kib("VmRSS", pid) or 0, reset


def is_true(status: dict[str, Any], type_: str) -> bool:
    return any(c["type"] == type_ and c["status"] == "True" for c in status.get("conditions") or ())


def ready_and_clean(status: dict[str, Any], present: int | None = None) -> dict[str, Any]:
    """``status`` if the backend is Ready and not dirty (with ``present`` pins, if given)."""
    assert is_true(status, "Ready"), status.get("conditions")
    assert (status.get("dirty") or {}).get("dirty") is False, status.get("dirty")
    if present is not None:
        assert (status.get("counts") or {}).get("present") == present, status.get("counts")
    return status


def token_of(status: dict[str, Any]) -> int | None:
    token = (status.get("dirty") or {}).get("token")
    return None if token is None else int(token)


def sync_rate(done: bool, status: dict[str, Any], wanted: int, seconds: float) -> tuple[float, str]:
    """(pins/s, the result to print) of a sync that took ``seconds`` towards ``wanted`` pins
    and ended with backend ``status`` (``done``: it got there; else the rate reached)."""
    present = int((status.get("counts") or {}).get("present") or 0)
    rate = present / seconds
    if not done:
        return (
            rate,
            f"TIMEOUT after {seconds:.0f} s: {present} of {wanted} present, {rate:.1f} pins/s",
        )
    return rate, f"{rate:.1f} pins/s ({seconds:.0f} s)"


def timestamp(value: str) -> datetime.datetime:
    return datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))


def bucket_state(client: Any, bucket: str) -> tuple[int, datetime.datetime | None]:
    """(objects, newest ``LastModified``) of a bucket, with a plain botocore client."""
    count, newest = 0, None
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for item in page.get("Contents", ()):
            count += 1
            newest = item["LastModified"] if newest is None else max(newest, item["LastModified"])
    return count, newest


def synthetic_cids(count: int, seed: int) -> list[tuple[str, bytes]]:
    """(CIDv1 raw, its block) for ``count`` random 64-byte blocks."""
    rng = random.Random(seed)
    blocks = [rng.randbytes(64) for _ in range(count)]
    return [(str(CID("base32", 1, "raw", multihash.digest(b, "sha2-256"))), b) for b in blocks]


async def _once(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def prefill(target: S3Target, prefix: str, pins: Sequence[tuple[str, bytes]]) -> None:
    """Store pins in pinsync's layout (``<cid>.car`` + sidecar) through pinsync's own S3 layer,
    32 at a time. The "CAR" is the bare block: a listing audit does not read content."""
    backend = target.backend(prefix)
    limit = asyncio.Semaphore(32)
    async with backend:
        await backend.client()

        async def one(cid: str, block: bytes) -> None:
            async with limit:
                await backend.put_pin(base.PinMeta(cid=cid), _once(block))

        await asyncio.gather(*(one(cid, block) for cid, block in pins))


async def node_pins(api_url: str) -> dict[str, str]:
    async with ipfs.Kubo(api_url, timeout=120) as kubo:
        return await kubo.pins()


# -- the cluster ---------------------------------------------------------------------------------


class Cluster:
    """kube-apiserver + etcd with the CRDs, and the operator as a subprocess."""

    def __init__(
        self, workdir: pathlib.Path, bench: Bench, *, log_copy: pathlib.Path = LOG_COPY
    ) -> None:
        self.workdir, self.bench, self.log_copy = workdir, bench, log_copy
        self.env: dict[str, str] = {}
        """More environment for the operator (``PINSYNC_*``) at its next start."""
        self.plane = controlplane.ControlPlane(workdir / "controlplane")
        self.kubeconfig = self.plane.kubeconfig
        self.operator: Operator | None = None
        self.pid = 0
        self.servers: dict[str, processes.Process | None] = {}
        """More servers whose CPU seconds :meth:`cpu` reports (by name)."""

    def start(self) -> Cluster:
        say("starting kube-apiserver + etcd, installing the CRDs")
        self.plane.start()
        controlplane.install_crds(self.kubeconfig, ROOT / "crds")
        connect: Callable[..., Any] = kubernetes.config.new_client_from_config
        self.client: kubernetes.client.ApiClient = connect(config_file=str(self.kubeconfig))
        self.start_operator()
        return self

    @property
    def operator_env(self) -> dict[str, str]:
        return {"PINSYNC_IPFS_API_URL": self.bench.node.api_url, **self.env}

    def start_operator(self) -> None:
        """Start the operator (again, with :attr:`env`), once its metrics answer."""
        extra = " ".join(f"{k}={v}" for k, v in self.env.items())
        say(f"starting the operator (python -m pinsync run{'; ' + extra if extra else ''})")
        self.operator = Operator(self.workdir, self.kubeconfig, self.operator_env).start()
        process = self.process
        process.wait_until(
            processes.http_ok(self.operator.metrics_url), timeout=60, what="operator metrics"
        )
        self.pid = python_pid(process)

    def stop_operator(self) -> None:
        if self.operator is not None:
            self.operator.stop()

    @property
    def process(self) -> processes.Process:
        if self.operator is None or self.operator.process is None:
            raise BenchError("the operator is not running")
        return self.operator.process

    def alive(self) -> None:
        """Raise (not retried by ``eventually``) if the operator has exited."""
        if not self.process.running:
            raise BenchError(f"the operator exited:\n{self.process.log_tail()}")

    def stop(self) -> None:
        if self.operator is not None:
            process = self.operator.process
            self.operator.stop()
            if process is not None and process.log_path.exists():
                self.log_copy.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(process.log_path, self.log_copy)
        self.plane.stop()

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return controlplane.kubectl(self.kubeconfig, *args, input=input)

    def apply(self, *objects: dict[str, Any]) -> None:
        body = {"apiVersion": "v1", "kind": "List", "items": list(objects)}
        self.kubectl(
            "apply",
            "--server-side",
            "--field-manager=pinsync-bench",
            "-f",
            "-",
            input=json.dumps(body),
        )

    def cpu(self) -> dict[str, float]:
        """CPU seconds so far of the operator and every server it talks to."""
        servers = {
            "operator": self.process,
            **{p.name: p for p in self.plane.processes},
            "Kubo": self.bench.node.process,
            "MinIO": self.bench.server.process,
            **self.servers,
        }
        return {name: process_cpu(p) for name, p in servers.items()}

    def world(self, namespace: str) -> World:
        self.apply({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}})
        server = self.bench.server
        create_secret(
            self.client,
            namespace,
            "minio",
            {"accessKeyId": server.access_key, "secretAccessKey": server.secret_key},
        )
        return World(self, namespace)


class World:
    """One namespace of StorageBackends (one MinIO bucket each) and PinSets."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.cluster, self.namespace = cluster, namespace
        self.backends = Objects(cluster.client, namespace, "storagebackends")
        self.pinsets = Objects(cluster.client, namespace, "pinsets")
        self.buckets: dict[str, str] = {}

    def manifest(self, kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        metadata = {"name": name, "namespace": self.namespace}
        return {"apiVersion": API_VERSION, "kind": kind, "metadata": metadata, "spec": spec}

    def add_backend(self, name: str, bucket: str | None = None, **spec: Any) -> None:
        """A StorageBackend on a bucket of its own (made here unless ``bucket`` exists)."""
        if bucket is None:
            bucket = f"{self.namespace}-{name}"
            self.cluster.bench.server.make_bucket(bucket)
        self.buckets[name] = bucket
        s3 = {
            "endpoint": self.cluster.bench.server.endpoint,
            "bucket": bucket,
            "prefix": "pins",
            "forcePathStyle": True,
        }
        full_spec = {"type": "s3", "s3": s3, "credentialsSecretRef": {"name": "minio"}, **spec}
        self.cluster.apply(self.manifest("StorageBackend", name, full_spec))

    def add_pinset(self, name: str, cids: Sequence[str], backends: Sequence[str]) -> None:
        spec = {"cids": list(cids), "backends": list(backends)}
        self.cluster.apply(self.manifest("PinSet", name, spec))

    def status(self, name: str) -> dict[str, Any]:
        self.cluster.alive()
        return self.backends.get(name).get("status") or {}

    def wait_ready(
        self, name: str, *, present: int | None = None, timeout: float = 300
    ) -> dict[str, Any]:
        return eventually(lambda: ready_and_clean(self.status(name), present), timeout=timeout)

    def until_ready(
        self, name: str, present: int, *, timeout: float, label: str
    ) -> tuple[bool, dict[str, Any]]:
        """Poll backend ``name`` every second until it is Ready and clean with ``present``
        pins, saying how far it got once a minute; (whether it got there within ``timeout``,
        its last status)."""
        said = [time.perf_counter()]

        def check() -> dict[str, Any]:
            status = self.status(name)
            if time.perf_counter() - said[0] >= 60:
                said[0] = time.perf_counter()
                counts, token = status.get("counts") or {}, token_of(status)
                say(
                    f"{label} {counts.get('present')} of {present} present, phase "
                    f"{status.get('phase')}, dirty token {token}"
                )
            return ready_and_clean(status, present)

        try:
            return True, eventually(check, timeout=timeout, interval=1.0)
        except AssertionError:
            return False, self.status(name)

    def versions(self) -> dict[str, str]:
        """``kind/name`` -> resourceVersion of every StorageBackend and PinSet here."""
        api = kubernetes.client.CustomObjectsApi(self.cluster.client)
        found = {}
        for plural in ("storagebackends", "pinsets"):
            listed = api.list_namespaced_custom_object(GROUP, VERSION, self.namespace, plural)
            for item in cast(dict[str, Any], listed)["items"]:
                meta = item["metadata"]
                found[f"{item['kind']}/{meta['name']}"] = meta["resourceVersion"]
        return found

    def watch_tokens(self, names: Iterable[str], seconds: float) -> dict[str, list[int | None]]:
        """The distinct ``status.dirty.token`` values of each backend over ``seconds`` (read
        every 5 s, and once more at the end), in the order seen."""
        seen: dict[str, list[int | None]] = {name: [] for name in names}
        deadline = time.monotonic() + seconds
        while True:
            for name, tokens in seen.items():
                token = token_of(self.status(name))
                if not tokens or tokens[-1] != token:
                    tokens.append(token)
            left = deadline - time.monotonic()
            if left <= 0:
                return seen
            time.sleep(min(5.0, left))


# -- the rows ------------------------------------------------------------------------------------


@dataclasses.dataclass(kw_only=True)
class Rows:
    bench: Bench
    plan: OperatorPlan
    cluster: Cluster
    synced: World | None = None
    """(5)'s namespace, once its backend is in sync."""
    cids: list[str] = dataclasses.field(default_factory=list)
    cpu_lines: list[str] = dataclasses.field(default_factory=list)
    observed: list[str] = dataclasses.field(default_factory=list)

    @property
    def api_url(self) -> str:
        return self.bench.node.api_url

    def metered(self, key: str, step: Callable[[], None]) -> Callable[[], None]:
        """``step``, with the CPU seconds of every process over it noted under the table."""

        def run() -> None:
            before, start = self.cluster.cpu(), time.perf_counter()
            try:
                step()
            finally:
                after, wall = self.cluster.cpu(), time.perf_counter() - start
                used = ", ".join(f"{name} {after[name] - before[name]:.1f}" for name in after)
                self.cpu_lines.append(f"  ({key}) {used} CPU-s; wall {wall:.1f} s")

        return run

    def peak(self, key: str, what: str, target_mib: float | None, start: tuple[int, bool]) -> None:
        """Report the operator's peak RSS since :func:`reset_peak_rss` returned ``start``
        (``target_mib`` None: as information)."""
        peak = (proc_status_kib("VmHWM", self.cluster.pid) or 0) / KiB
        at_start, reset = start[0] / KiB, start[1]
        since = f"RSS at the row's start {at_start:.1f} MiB" if reset else "lifetime peak"
        result = f"{peak:.1f} MiB ({since})"
        if target_mib is None:
            self.bench.report.add(key, what, result, "information")
            return
        self.bench.report.add(
            key, what, result, f"≤ {target_mib:.0f} MiB", verdict(peak <= target_mib)
        )

    def sync_many(self) -> None:
        """(5): one PinSet of many unpinned small pins into an empty backend, until Ready."""
        plan, report = self.plan, self.bench.report
        n = plan.pins
        world = self.cluster.world("bench-sync")
        world.add_backend(FIRST, sync={"concurrency": plan.concurrency})
        world.wait_ready(FIRST, present=0, timeout=120)
        say(f"(5) adding {n} blocks of {plan.pin_size} B to Kubo, not pinned")
        self.cids = asyncio.run(add_small(self.api_url, n, plan.pin_size, seed=5, pin=False))
        pinned = asyncio.run(node_pins(self.api_url)).keys() & set(self.cids)
        if pinned:
            raise BenchError(f"{len(pinned)} of the new blocks are already pinned on Kubo")
        start_rss = reset_peak_rss(self.cluster.pid)
        say(f"(5) applying a PinSet of {n} CIDs; waiting until the backend is Ready")
        start = time.perf_counter()
        world.add_pinset("many", self.cids, [FIRST])
        done, status = world.until_ready(FIRST, n, timeout=SYNC_TIMEOUT, label="(5)")
        rate, result = sync_rate(done, status, n, time.perf_counter() - start)
        reference, source = self.bench.engine_pins_per_s, "(3a) of this run"
        if reference is None:
            reference, source = README_ENGINE_RATE, "reference 204 pins/s from README, (3a) not run"
        wanted = ENGINE_SHARE * reference
        report.add(
            "5a",
            f"operator: PinSet of {n} x 1 KiB unpinned pins → empty S3 backend "
            f"(concurrency {plan.concurrency}), until Ready",
            result,
            f"≥ {wanted:.0f} pins/s ({ENGINE_SHARE:.0%} of {source})",
            verdict(done and rate >= wanted),
        )
        self.peak("5b", "operator peak RSS during (5)", TARGET_SYNC_RSS_MIB, start_rss)
        on_node = len(asyncio.run(node_pins(self.api_url)).keys() & set(self.cids))
        self.observed.append(
            f"(5) afterwards: Kubo pins {on_node} of the {n} CIDs; backend dirty token "
            f"{token_of(status)}, lastSync {status.get('lastSync')}"
        )
        if done:
            self.synced = world

    def require_synced(self) -> World:
        if self.synced is None:
            raise BenchError("(5) did not bring its backend in sync, so there is nothing to hold")
        return self.synced

    def idle(self) -> None:
        """(6): an idle window with (5)'s pins in sync and more backends and PinSets Ready."""
        plan, report, world = self.plan, self.bench.report, self.require_synced()
        say(f"(6) adding {plan.extra} backends and {plan.extra} PinSets of {plan.extra_pins} pins")
        more = asyncio.run(
            add_small(self.api_url, plan.extra * plan.extra_pins, plan.pin_size, seed=6, pin=False)
        )
        names = [f"extra-{i + 1}" for i in range(plan.extra)]
        for i, name in enumerate(names):
            world.add_backend(name)
            world.add_pinset(name, more[i * plan.extra_pins : (i + 1) * plan.extra_pins], [name])
        for name in names:
            world.wait_ready(name, present=plan.extra_pins)
            world.pinsets.wait_condition(name, "Ready", "True", timeout=300)
        world.wait_ready(FIRST, present=plan.pins)

        s3 = self.bench.server.client()
        bucket = world.buckets[FIRST]
        objects_before = bucket_state(s3, bucket)
        versions_before = world.versions()
        token_before = token_of(world.status(FIRST))
        window = plan.idle_seconds
        say(f"(6) idle window of {window:.0f} s")
        cpu_before, start = process_cpu(self.cluster.process), time.perf_counter()
        tokens = world.watch_tokens([FIRST], window)[FIRST]
        cpu = process_cpu(self.cluster.process) - cpu_before
        elapsed = time.perf_counter() - start
        token_after = token_of(world.status(FIRST))
        versions_after = world.versions()
        objects_after = bucket_state(s3, bucket)

        allowed = TARGET_IDLE_CPU_S * elapsed / IDLE_REFERENCE_S
        total = plan.pins + plan.extra * plan.extra_pins
        report.add(
            "6a",
            f"operator CPU over {elapsed:.0f} s idle ({plan.extra + 1} backends, "
            f"{plan.extra + 1} PinSets, {total} pins in sync)",
            f"{cpu:.2f} CPU-s",
            f"≤ {allowed:.2f} s ({TARGET_IDLE_CPU_S:g} s per 5 min)",
            verdict(cpu <= allowed),
        )
        steady = token_before == token_after and len(tokens) == 1
        seen = "" if len(tokens) == 1 else f" (seen: {', '.join(map(str, tokens))})"
        report.add(
            "6b",
            "first backend's status.dirty.token across the idle window",
            f"{token_before} → {token_after}{seen}",
            "unchanged",
            verdict(steady),
        )
        newest = (
            f"{t:%H:%M:%S.%f}"[:-3] if t else "-" for t in (objects_before[1], objects_after[1])
        )
        report.add(
            "6c",
            "objects written to the first backend's bucket during the idle window",
            f"{objects_before[0]} → {objects_after[0]} objects, newest {' → '.join(newest)}",
            "none",
            verdict(objects_before == objects_after),
        )
        changed = [key for key, rv in versions_after.items() if versions_before.get(key) != rv]
        self.observed.append(
            f"(6) objects whose resourceVersion changed during the idle window (status writes): "
            f"{', '.join(changed) or 'none'}"
        )

    def full_sync(self) -> None:
        """(7): a requested full sync over (5)'s present pins, until handled and Ready."""
        plan, world = self.plan, self.require_synced()
        requested = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        phases: list[str] = []
        say(f"(7) requesting a full sync of {plan.pins} present pins")
        start = time.perf_counter()
        world.cluster.kubectl(
            "annotate",
            "--overwrite",
            "-n",
            world.namespace,
            f"storagebackend/{FIRST}",
            f"{SYNC_REQUESTED_AT}={requested}",
        )

        def check() -> dict[str, Any]:
            status = world.status(FIRST)
            phase = str(status.get("phase"))
            if not phases or phases[-1] != phase:
                phases.append(phase)
            assert status.get("lastHandledSyncRequest") == requested, "not handled yet"
            ready_and_clean(status, plan.pins)
            finished = (status.get("lastSync") or {}).get("finishedAt")
            assert finished and timestamp(finished) >= timestamp(requested), finished
            return status

        done = True
        try:
            status = eventually(check, timeout=15 * 60, interval=0.25)
        except AssertionError:
            done, status = False, world.status(FIRST)
        seconds = time.perf_counter() - start
        self.bench.report.add(
            "7",
            f"operator: forced full sync (sync-requested-at) over {plan.pins} present pins, "
            "until handled, clean and Ready",
            f"{seconds:.1f} s" if done else f"TIMEOUT after {seconds:.0f} s",
            f"≤ {TARGET_FULL_SYNC_S:.0f} s",
            verdict(done and seconds <= TARGET_FULL_SYNC_S),
        )
        self.observed.append(
            f"(7) phases seen: {' → '.join(phases)}; lastSync {status.get('lastSync')}"
        )

    def audit(self) -> None:
        """(8): the audit of a bucket that already holds many pins."""
        plan, report = self.plan, self.bench.report
        n = plan.audit_pins
        world = self.cluster.world("bench-audit")
        bucket = "bench-audit-prefilled"
        self.bench.server.make_bucket(bucket)
        target = dataclasses.replace(self.bench.target, bucket=bucket)
        say(f"(8) writing {n} pins ({2 * n} objects) in pinsync's layout into MinIO (untimed)")
        pins = synthetic_cids(n, seed=8)
        asyncio.run(prefill(target, "pins", pins))
        stored, _ = asyncio.run(count_objects(target, "pins"))
        if stored != 2 * n:
            raise BenchError(f"prefill stored {stored} objects, expected {2 * n}")
        start_rss = reset_peak_rss(self.cluster.pid)
        say(
            f"(8) a backend on it (audit every {plan.audit_interval}), a PinSet wanting "
            f"{plan.audit_wanted}; waiting for its first audit"
        )
        start = time.perf_counter()
        # The PinSet first, so that the backend's first pass already sees what it wants.
        world.add_pinset("wanted", [cid for cid, _ in pins[: plan.audit_wanted]], ["audited"])
        world.add_backend("audited", bucket=bucket, audit={"interval": plan.audit_interval})
        seen: dict[str, float] = {}

        def check() -> dict[str, Any]:
            status = world.status("audited")
            now = time.perf_counter() - start
            if "ready" not in seen and is_true(status, "Ready"):
                seen["ready"] = now
            if status.get("phase") == "Auditing":
                seen.setdefault("auditing", now)
            assert (status.get("lastAudit") or {}).get("finishedAt"), "no audit yet"
            seen["audited"] = now
            return status

        status = eventually(check, timeout=15 * 60, interval=0.2)
        world.cluster.kubectl(
            "delete",
            "-n",
            world.namespace,
            "--wait=false",
            "storagebackend/audited",
            "pinset/wanted",
        )
        audit = status.get("lastAudit") or {}
        if "auditing" in seen:
            duration = seen["audited"] - seen["auditing"]
            result = f"{duration:.1f} s"
        else:
            duration, result = 0.2, "< 0.2 s (phase Auditing not seen)"
        ready = f"first sync Ready after {seen['ready']:.1f} s; " if "ready" in seen else ""
        report.add(
            "8a",
            f"operator: first audit of a bucket holding {n} pins ({2 * n} objects), "
            "phase Auditing → status.lastAudit",
            f"{result} ({ready}missing {audit.get('missing')}, damaged {audit.get('damaged')})",
            f"≤ {TARGET_AUDIT_S:.0f} s",
            verdict(duration <= TARGET_AUDIT_S),
        )
        self.peak("8b", "operator peak RSS during (8)", TARGET_AUDIT_RSS_MIB, start_rss)
        counts, usage = status.get("counts"), status.get("usage")
        self.observed.append(f"(8) status after the audit: counts {counts}, usage {usage}")

    def forget(self) -> None:
        """(9): a PinSet deleted from under two backends."""
        plan, report = self.plan, self.bench.report
        k = plan.pair_pins
        world = self.cluster.world("bench-forget")
        cids = asyncio.run(add_small(self.api_url, 2 * k, plan.pin_size, seed=9, pin=False))
        backends = ["one", "two"]
        for name in backends:
            world.add_backend(name)
        world.add_pinset("a", cids[:k], backends)
        world.add_pinset("b", cids[k:], backends)

        def holds(name: str, pinsets: set[str], present: int) -> Callable[[], bool]:
            def check() -> bool:
                status = ready_and_clean(world.status(name), present)
                marked = set(((status.get("marked") or {}).get("sources") or {}).keys())
                assert marked == pinsets, f"{name}: marked.sources {sorted(marked)}"
                return True

            return check

        for name in backends:
            eventually(holds(name, {"a", "b"}, 2 * k), timeout=300)
        before = {name: token_of(world.status(name)) for name in backends}
        say("(9) deleting PinSet a")
        start = time.perf_counter()
        world.cluster.kubectl("delete", "-n", world.namespace, "--wait=false", "pinset/a")

        def forgotten() -> bool:
            return all(holds(name, {"b"}, k)() for name in backends)

        done, reason = True, ""
        try:
            eventually(forgotten, timeout=max(120.0, 4 * TARGET_FORGET_S), interval=0.25)
        except AssertionError as exc:
            done, reason = False, str(exc)
        seconds = time.perf_counter() - start
        report.add(
            "9a",
            "operator: PinSet A of two deleted: both backends drop it from "
            "status.marked.sources, clean and Ready",
            f"{seconds:.1f} s" if done else f"TIMEOUT after {seconds:.0f} s: {reason[:80]}",
            f"≤ {TARGET_FORGET_S:.0f} s",
            verdict(done and seconds <= TARGET_FORGET_S),
        )
        window = plan.idle_seconds
        say(f"(9) watching both backends' dirty tokens for {window:.0f} s")
        seen = world.watch_tokens(backends, window)
        steady = all(len(tokens) == 1 for tokens in seen.values())
        report.add(
            "9b",
            f"both backends' status.dirty.token over the {window:.0f} s after that",
            "; ".join(
                f"{name}: {before[name]} before the delete, {' → '.join(map(str, seen[name]))} "
                "in the window"
                for name in backends
            ),
            "steady",
            verdict(steady),
        )

    def log_summary(self) -> str:
        """What the operator's log says: its size, warnings and errors by message."""
        log = self.cluster.process.log_path.read_text(errors="replace").splitlines()
        levels = collections.Counter(
            level for line in log for level in ("WARNING", "ERROR") if f" {level} " in line
        )
        messages = collections.Counter(
            line.split("] ", 1)[-1][:100]
            for line in log
            if " ERROR " in line or " WARNING " in line
        )
        lines = [
            f"Operator log: {len(log)} lines, {levels['WARNING']} warnings, {levels['ERROR']} "
            f"errors, {sum('Traceback' in line for line in log)} tracebacks "
            f"(a copy: {self.cluster.log_copy})"
        ]
        lines += [f"  {count:6d} x {message}" for message, count in messages.most_common(5)]
        return "\n".join(lines)

    def paragraph(self, title: str) -> str:
        """What goes below the table: CPU seconds by process over each row, what was observed,
        and the operator's log."""
        heading = f"{title} (the operator: pid {self.cluster.pid}): CPU seconds by process over "
        return "\n".join(
            [heading + "each row:", *self.cpu_lines, *self.observed, self.log_summary()]
        )


def run(bench: Bench) -> None:
    """Rows (5)-(9): start the API server and the operator, run the selected rows, stop."""
    plan = OperatorPlan.from_scale(bench.plan.scale)
    cluster = Cluster(bench.workdir / "cluster", bench)
    try:
        cluster.start()
        rows = Rows(bench=bench, plan=plan, cluster=cluster)
        steps = [
            (("5", "6", "7"), "5", "operator: one PinSet of many pins", rows.sync_many),
            (("6",), "6", "operator idle with pins in sync", rows.idle),
            (("7",), "7", "operator forced full sync", rows.full_sync),
            (("8",), "8", "operator audit of a full bucket", rows.audit),
            (("9",), "9", "operator forgets a deleted PinSet", rows.forget),
        ]
        for units, key, what, step in steps:
            if bench.wants(*units):
                bench.report.attempt(key, what, rows.metered(key, step))
        bench.report.extra.append(rows.paragraph("Operator section"))
    finally:
        cluster.stop()
