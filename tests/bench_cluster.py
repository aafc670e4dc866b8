"""Row (18) of ``make bench``: a ``fromCluster`` PinSet through the real operator.

A PinSet whose pins are an IPFS Cluster's (``spec.fromCluster``) is read from the cluster's REST
API and exported from the Kubo of a peer holding each pin: a cluster of several peers is read
from several nodes. This row times that product path end to end, as (5) does for ``spec.cids``:

- setup (untimed, its duration printed): a real two-peer cluster
  (:func:`pinsync.devenv.cluster.two_peers`, basic auth on its REST API), each peer in front of
  a Kubo of its own; 100,000 distinct 1 KiB raw blocks (scaled), **half on each Kubo**, each
  half allocated to that Kubo's peer alone (replication factor 1), all named
  ``bench-cluster/<index>``. Seeded as :mod:`tests.bench_clusterpins` does it (pinning 100,000
  CIDs through the REST API would take ~15 minutes): each Kubo imports one CAR of its half with
  every block a pinned root, then each peer, stopped, imports one state file holding both
  halves with their allocations (``ipfs-cluster-service state import``). Each half is then
  ``pinned`` on its peer and ``remote`` on the other, which is checked with pinsync's own
  cluster client before the clock starts; no block is on both Kubos, nor on the operator's node;
- then the bench's kube-apiserver + etcd and the operator subprocess
  (:class:`tests.bench_operator.Cluster`), a StorageBackend on its own bucket of the bench MinIO
  (``sync.concurrency: 16``), Ready with nothing present, and a Secret with the cluster's
  credentials;
- timed: from ``kubectl apply`` of a PinSet ``fromCluster`` (peer-0's REST API, the name
  prefix, the credentials, both peers' Kubo URLs, by peername) until the backend is Ready, clean
  and holds every pin. Since each Kubo has only its own half, every pin present proves that the
  operator exported from both. Reported: pins/s; the operator's peak RSS over the row; below the
  table, CPU seconds of the operator, the API server, etcd, the operator's own (idle) Kubo,
  MinIO, both cluster peers and both of their Kubos. The row gives up after 30 minutes and
  reports the rate reached.

The issue sets no target beyond reporting pins/s; the verdict compares with row (5)'s
(0.8 x 188.8 pins/s of the README), the target borrowed for row (16).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import datetime
import pathlib
import time
from collections.abc import Sequence

from pinsync import clusterpins
from pinsync.devenv import cluster as ipfscluster
from tests import bench_clusterpins, bench_operator
from tests.bench import CACHE, Bench, BenchError, say, verdict
from tests.kubetools import create_secret

UNITS = ("18",)
ROW5_RATE = 188.8  # pins/s, row (5) in the README
ROW5_SHARE = 0.8
SYNC_TIMEOUT = 30 * 60.0
"""The row gives up after this long and reports the rate it reached."""
NAME_PREFIX = "bench-cluster/"
BACKEND = "from-cluster"
LOG_COPY = CACHE / "logs" / "bench-operator-cluster.log"
PINS = 100_000
"""At scale 1; size (1 KiB) and sync concurrency (16) are row (5)'s, from its plan."""


def seed(
    workdir: pathlib.Path, members: Sequence[ipfscluster.Member], pins: int, size: int
) -> list[str]:
    """Half of ``pins`` blocks of ``size`` bytes on each member's Kubo, allocated to its peer
    alone, in the cluster's shared pinset (see the module's docstring); their CIDs."""
    halves = [pins // 2, pins - pins // 2]
    cars, cids, allocations = [], [], []
    for index, (member, count) in enumerate(zip(members, halves, strict=True)):
        car, half = bench_clusterpins.car_of(
            count, size=size, label=b"pinsync-bench-18-peer-%d" % index
        )
        cars.append(car)
        cids += half
        allocations += [[member.peer.peer_id]] * count
    state = workdir / "state.jsonl"
    bench_clusterpins.state_file(state, cids, prefix=NAME_PREFIX, allocations=allocations)
    bench_clusterpins.load(members, cars, state)
    return cids


async def holders(peer: ipfscluster.IpfsCluster) -> collections.Counter[tuple[str, ...]]:
    """How many pins of the shared pinset each set of peers (by name) holds ``pinned``."""
    username, password = peer.auth or (None, None)
    client = clusterpins.ClusterPins(
        peer.api_url, username=username, password=password, timeout=600
    )
    found: collections.Counter[tuple[str, ...]] = collections.Counter()
    async with contextlib.aclosing(client):
        names = await client.peers()
        async for pin in client.pins():
            found[tuple(sorted(names.get(p, p) for p in pin.pinned_on))] += 1
    return found


def check_split(members: Sequence[ipfscluster.Member], count: int) -> str:
    """Raise unless each peer holds its half ``pinned`` and no pin is held by both; a summary."""
    found = asyncio.run(holders(members[0].peer))
    wanted = collections.Counter({("peer-0",): count // 2, ("peer-1",): count - count // 2})
    if found != wanted:
        raise BenchError(f"pins held per peer: {dict(found)}, expected {dict(wanted)}")
    return ", ".join(f"{count} pinned on {' + '.join(peers)}" for peers, count in found.items())


def pinset_spec(members: Sequence[ipfscluster.Member], backend: str) -> dict[str, object]:
    first = members[0].peer
    peers = [
        {"peer": member.peer.peername, "ipfsApiUrl": member.kubo.api_url} for member in members
    ]
    spec = {
        "apiUrl": first.api_url,
        "namePrefix": NAME_PREFIX,
        "credentialsSecretRef": {"name": "cluster-api"},
        "peers": peers,
    }
    return {"fromCluster": spec, "backends": [backend]}


def sync_from_cluster(
    rows: bench_operator.Rows, members: Sequence[ipfscluster.Member], n: int
) -> None:
    """(18): apply the ``fromCluster`` PinSet, until the backend is Ready with its ``n`` pins."""
    plan, kube, report = rows.plan, rows.cluster, rows.bench.report
    world = kube.world("bench-cluster")
    assert members[0].peer.auth is not None
    username, password = members[0].peer.auth
    create_secret(
        kube.client, world.namespace, "cluster-api", {"username": username, "password": password}
    )
    world.add_backend(BACKEND, sync={"concurrency": plan.concurrency})
    world.wait_ready(BACKEND, present=0, timeout=120)
    start_rss = bench_operator.reset_peak_rss(kube.pid)
    say(f"(18) applying a fromCluster PinSet of {n} cluster pins; waiting until Ready")
    start, applied = time.perf_counter(), datetime.datetime.now(datetime.UTC)
    kube.apply(world.manifest("PinSet", "cluster", pinset_spec(members, BACKEND)))
    done, status = world.until_ready(BACKEND, n, timeout=SYNC_TIMEOUT, label="(18)")
    rate, result = bench_operator.sync_rate(done, status, n, time.perf_counter() - start)
    wanted = ROW5_SHARE * ROW5_RATE
    what = (
        f"operator: fromCluster PinSet, two-peer cluster of {n} x 1 KiB pins (half on each "
        f"peer's Kubo) → empty S3 backend (concurrency {plan.concurrency}), apply to Ready"
    )
    target = f"≥ {wanted:.0f} pins/s ({ROW5_SHARE:g} x row 5's {ROW5_RATE:g}; borrowed from row 16)"
    report.add("18a", what, result, target, verdict(done and rate >= wanted))
    rows.peak("18b", "operator peak RSS during (18)", None, start_rss)
    pinset = world.pinsets.get("cluster").get("status") or {}
    rows.observed.append(
        f"(18) applied at {applied:%H:%M:%S}Z; afterwards: backend counts {status.get('counts')}, "
        f"lastSync {status.get('lastSync')}; PinSet counts {pinset.get('counts')}"
    )


def run(bench: Bench) -> None:
    """Row (18): the cluster and its pins, the API server and the operator; measure; stop."""
    plan = bench_operator.OperatorPlan.from_scale(bench.plan.scale)
    n = max(20, round(PINS * bench.plan.scale))
    workdir = bench.workdir / "ipfs-cluster"
    started = time.perf_counter()
    say(f"(18) starting a two-peer IPFS Cluster, seeding {n} pins of 1 KiB (untimed)")
    with ipfscluster.two_peers(workdir) as members:
        seed(workdir, members, n, plan.pin_size)
        split = check_split(members, n)
        setup = time.perf_counter() - started
        say(f"(18) setup took {setup:.0f} s: {split}")
        kube = bench_operator.Cluster(bench.workdir / "cluster-18", bench, log_copy=LOG_COPY)
        for member in members:
            name = member.peer.peername
            kube.servers[f"cluster {name}"] = member.peer.process
            kube.servers[f"Kubo {name}"] = member.kubo.process
        try:
            kube.start()
            rows = bench_operator.Rows(bench=bench, plan=plan, cluster=kube)
            rows.observed.append(f"(18) setup (untimed): {setup:.0f} s; {split}")
            step = rows.metered("18", lambda: sync_from_cluster(rows, members, n))
            bench.report.attempt("18", "operator: fromCluster PinSet", step)
            bench.report.extra.append(rows.paragraph("Row (18)"))
        finally:
            kube.stop()
