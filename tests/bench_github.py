"""Rows (10)-(11) of ``make bench``: the github backend into the local git server (issue 9).

The server is :mod:`pinsync.devenv.gitserver` (lighttpd + ``git http-backend``, basic auth) on
loopback; each measurement writes into a fresh bare repository. pinsync is ``syncing.run`` with
the real GithubBackend (commits of up to ``batch.maxPins`` pins each, CAR + JSON sidecar per pin);
the peer is what a user would write by hand: CARs exported beforehand (untimed) into a clone at
the same sharded paths, then ``git add -A && git commit && git push`` (timed).

10. 2,000 pins of 4 KiB: pinsync pins/s, the commits it made, the bytes it fetched; the peer's
    pins/s; pinsync / peer.
11. 16 x 64 MiB: MiB/s of both.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from pinsync import ipfs
from pinsync.backends import base, github, layout
from pinsync.devenv import gitserver
from tests.bench import (
    Bench,
    Synced,
    Timed,
    add_big,
    add_small,
    export_cars,
    say,
    size_label,
    timed_pass,
)

UNITS = ("10", "11")


async def pinsync_pass(
    bench: Bench, server: gitserver.GitServer, name: str, cids: Sequence[str], concurrency: int
) -> tuple[Synced, int]:
    """``syncing.run`` into a fresh repository ``name``: the timing and the bytes fetched."""
    server.make_repo(name)
    config = {"url": server.repo_url(name), "basePath": "pinsync"}
    login = base.Credentials(data={"username": server.username, "password": server.password})
    backend = github.GithubBackend(config, login)
    async with ipfs.Kubo(bench.node.api_url, timeout=600) as kubo, backend:
        synced = await timed_pass(
            kubo, backend, cids, concurrency=concurrency, global_limit=bench.plan.global_limit
        )
        return synced, backend.bytes_fetched


def commits(server: gitserver.GitServer, name: str) -> int:
    return int(gitserver.git("rev-list", "--count", "main", cwd=server.repo_path(name)))


def git_peer(bench: Bench, server: gitserver.GitServer, name: str, cids: Sequence[str]) -> Timed:
    """Export the CARs into a clone of a fresh repository (untimed), then time add, commit, push."""
    server.make_repo(name)
    clone = bench.workdir / f"git-{name}"
    gitserver.git("clone", "-q", server.repo_url(name, credentials=True), str(clone))
    cars = bench.workdir / f"cars-{name}"
    export_cars(bench.node.api_url, cids, cars)
    total = 0
    for cid in cids:
        car = cars / f"{cid}.car"
        total += car.stat().st_size
        shard = clone / "pinsync" / layout.shard(cid)
        shard.mkdir(parents=True, exist_ok=True)
        car.rename(shard / car.name)
    start = time.perf_counter()
    gitserver.git("add", "-A", cwd=clone)
    gitserver.git("commit", "-qm", f"{len(cids)} pins", cwd=clone)
    gitserver.git("push", "-q", "origin", "HEAD:main", cwd=clone)
    return Timed(bytes=total, seconds=time.perf_counter() - start, count=len(cids))


def run(bench: Bench) -> None:
    plan, report = bench.plan, bench.report
    server = gitserver.GitServer(bench.workdir / "gitserver")
    say(f"starting the git server under {server.workdir}")
    server.start()
    try:
        if bench.wants("10"):
            n, label = plan.small_pins, size_label(plan.small_size)
            say(f"adding {n} pins of {label} to Kubo")
            cids = asyncio.run(add_small(bench.node.api_url, n, plan.small_size, seed=10))
            report.attempt("10", f"github, {n} x {label}", lambda: small(bench, server, cids))
        if bench.wants("11"):
            label = f"{plan.big_pins} x {size_label(plan.big_size)}"
            say(f"adding {label} of random content to Kubo")
            cids = add_big(bench.node, plan.big_pins, plan.big_size, seed=11)
            report.attempt("11", f"github, {label}", lambda: big(bench, server, cids, label))
    finally:
        server.cleanup()


def small(bench: Bench, server: gitserver.GitServer, cids: Sequence[str]) -> None:
    plan, report = bench.plan, bench.report
    n, label, concurrency = len(cids), size_label(plan.small_size), plan.small_concurrency
    say(f"syncing {n} x {label} into the git server with syncing.run")
    synced, fetched = asyncio.run(pinsync_pass(bench, server, "small", cids, concurrency))
    report.add(
        "10",
        f"pinsync syncing.run → git server (GithubBackend), {n} x {label}, "
        f"concurrency {concurrency}",
        f"{synced.per_s:.1f} pins/s ({synced.seconds:.1f} s), {commits(server, 'small')} "
        f"commit(s), {fetched:,} bytes fetched",
    )
    say(f"timing the peer: git add + commit + push of {n} pre-exported CARs")
    peer = git_peer(bench, server, "small-peer", cids)
    report.add(
        "10",
        f"peer: `git add -A; git commit; git push` of {n} pre-exported CARs (export excluded)",
        f"{peer.per_s:.1f} pins/s ({peer.seconds:.1f} s)",
    )
    report.add("10", "pinsync / git CLI peer (pins/s)", f"{synced.per_s / peer.per_s:.2f}x")


def big(bench: Bench, server: gitserver.GitServer, cids: Sequence[str], label: str) -> None:
    concurrency = bench.plan.big_concurrency
    say(f"syncing {label} into the git server with syncing.run")
    synced, fetched = asyncio.run(pinsync_pass(bench, server, "big", cids, concurrency))
    bench.report.add(
        "11",
        f"pinsync syncing.run → git server (GithubBackend), {label}, concurrency {concurrency}",
        f"{synced.mib_per_s:.1f} MiB/s ({synced.seconds:.1f} s), {commits(server, 'big')} "
        f"commit(s), {fetched:,} bytes fetched",
    )
    say(f"timing the peer: git add + commit + push of {label} pre-exported CARs")
    peer = git_peer(bench, server, "big-peer", cids)
    bench.report.add(
        "11",
        f"peer: `git add -A; git commit; git push` of {label} pre-exported CARs",
        f"{peer.mib_per_s:.1f} MiB/s ({peer.seconds:.1f} s)",
    )
    bench.report.add(
        "11", "pinsync / git CLI peer (MiB/s)", f"{synced.mib_per_s / peer.mib_per_s:.2f}x"
    )
