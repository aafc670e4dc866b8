"""Rows (12)-(13) of ``make bench``: restoring pins the node lost, from MinIO (issue 13).

The pins are synced into a fresh prefix first (untimed), then removed from the node (``pin rm``
of every one, ``repo gc``); then :func:`pinsync.restoring.restore` brings them back -- the
operator's path: ``fetch_pin -> CarChecker -> Kubo dag/import``, an offline ``dag/stat`` walk
and an offline pin of the root -- ``concurrency`` pins at a time. The peer is what a user would
run by hand, 4 pins at a time: ``aws s3 cp s3://…/CID.car - | ipfs dag import --pin-roots``
(Kubo's import checks block hashes itself; the peer checks neither the root nor completeness).

12. 16 x 64 MiB: MiB/s of pinsync (concurrency 4) and of the peer; pinsync / peer.
13. 2,000 pins of 4 KiB: pins/s of pinsync (concurrency 32).
14. Peak RSS of a child Python process restoring one 2 GiB pin, against (4)'s bound for
    uploading one (the restore streams just as the upload does).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import sys
import time
from collections.abc import Sequence

from pinsync import ipfs, restoring
from pinsync.backends import base
from tests.bench import (
    PEER_RUNNER,
    ROOT,
    TARGET_PEER_RATIO,
    TARGET_RSS_MIB,
    Bench,
    BenchError,
    KiB,
    S3Target,
    Timed,
    add_big,
    add_file_of,
    add_small,
    bench_venv,
    mib,
    peak_rss_kib,
    per_pin_script,
    run_group,
    say,
    size_label,
    verdict,
)

UNITS = ("12", "13", "14")
CHILD_ENV = "PINSYNC_BENCH_RESTORE_CHILD"
AWS_GET_IMPORT = (
    '"$AWS_BIN" --endpoint-url "$S3_ENDPOINT" s3 cp --only-show-errors '
    '"s3://$BUCKET/$PREFIX/$1.car" - \\\n'
    '    | "$IPFS_BIN" dag import --pin-roots --stats=false >/dev/null'
)
"""One pin (``$1``) read by ``aws s3 cp`` and piped into ``ipfs dag import``."""


def lose(bench: Bench, cids: Sequence[str]) -> None:
    """``pin rm`` every pin (in chunks, to keep command lines short), then ``repo gc``."""
    for start in range(0, len(cids), 500):
        bench.node.ipfs("pin", "rm", *cids[start : start + 500])
    bench.node.ipfs("repo", "gc", "--quiet")


async def restore_all(
    api_url: str, backend: base.Backend, cids: Sequence[str], concurrency: int
) -> Timed:
    """Restore every pin from ``backend``, ``concurrency`` at a time; raises unless all came."""
    limit = asyncio.Semaphore(concurrency)
    async with ipfs.Kubo(api_url, timeout=600) as kubo, backend:
        await backend.health()  # the client exists before timing starts, as in the operator

        async def one(cid: str) -> restoring.Outcome:
            async with limit:
                return await restoring.restore(
                    kubo, [cid], [("s3", backend)], name="bench/restore", pin_timeout=60
                )

        start = time.perf_counter()
        outcomes = await asyncio.gather(*(one(cid) for cid in cids))
        seconds = time.perf_counter() - start
        pins = await kubo.pins()
    failed = [o for o in outcomes if o.backend is None]
    if failed or any(cid not in pins for cid in cids):
        raise BenchError(f"{len(failed)} of {len(cids)} restores failed, e.g. {failed[:1]}")
    return Timed(bytes=sum(o.bytes for o in outcomes), seconds=seconds, count=len(cids))


def prepare(bench: Bench, prefix: str, cids: Sequence[str], concurrency: int) -> base.Backend:
    say(f"syncing {len(cids)} pins into {prefix}/ (untimed), then removing them from the node")
    bench.engine_sync(prefix, cids, concurrency)
    lose(bench, cids)
    return bench.target.backend(prefix)


def big(bench: Bench, cids: Sequence[str], label: str) -> None:
    report, streams = bench.report, bench.plan.big_concurrency
    backend = prepare(bench, "restore-big", cids, streams)
    say(f"restoring {label} from MinIO with restoring.restore ({streams} at a time)")
    before = bench.cpu()
    timed = asyncio.run(restore_all(bench.node.api_url, backend, cids, streams))
    bench.cpu_note("(12) pinsync restore", bench.cpu() - before, timed)
    report.add(
        "12",
        f"pinsync restore MinIO → Kubo (fetch → CarChecker → dag/import → pin), {label}, "
        f"{streams} at a time",
        f"{timed.mib_per_s:.1f} MiB/s ({timed.seconds:.1f} s)",
    )
    venv = bench_venv()
    lose(bench, cids)
    say(f"timing the peer: aws s3 cp - | ipfs dag import, {streams} at a time")
    before = bench.cpu()
    seconds = per_pin_script(
        PEER_RUNNER,
        venv,
        bench.node,
        bench.target,
        cids,
        bench.workdir,
        prefix="restore-big",
        STREAMS=str(streams),
        PIPE=AWS_GET_IMPORT,
        landed=False,
    ).seconds
    pins = bench.node.ipfs("pin", "ls", "--type=recursive", "--quiet").decode().split()
    if set(cids) - set(pins):
        raise BenchError("the peer left pins unrestored")
    peer = Timed(bytes=timed.bytes, seconds=seconds, count=len(cids))
    bench.cpu_note("(12) peer aws | dag import", bench.cpu() - before, peer)
    report.add(
        "12",
        f"peer: `aws s3 cp s3://…/CID.car - | ipfs dag import --pin-roots`, {label}, "
        f"{streams} at a time",
        f"{peer.mib_per_s:.1f} MiB/s ({peer.seconds:.1f} s)",
    )
    ratio = timed.mib_per_s / peer.mib_per_s
    report.add(
        "12",
        "pinsync restore / peer (MiB/s)",
        f"{ratio:.2f}x",
        f"≥ {TARGET_PEER_RATIO:.1f}x",
        verdict(ratio >= TARGET_PEER_RATIO),
    )


def small(bench: Bench, cids: Sequence[str], label: str) -> None:
    concurrency = bench.plan.small_concurrency
    backend = prepare(bench, "restore-small", cids, concurrency)
    say(f"restoring {label} with restoring.restore ({concurrency} at a time)")
    before = bench.cpu()
    timed = asyncio.run(restore_all(bench.node.api_url, backend, cids, concurrency))
    bench.cpu_note("(13) pinsync restore", bench.cpu() - before, timed, per_pin=True)
    bench.report.add(
        "13",
        f"pinsync restore MinIO → Kubo, {label}, {concurrency} at a time",
        f"{timed.per_s:.1f} pins/s ({timed.seconds:.1f} s)",
    )


def memory(bench: Bench) -> None:
    label = size_label(bench.plan.huge_size)
    say(f"adding one pin of {label} to Kubo")
    cid = add_file_of(bench.node, bench.workdir / "huge-restore.bin", bench.plan.huge_size, 14)
    prepare(bench, "restore-huge", [cid], 1)
    say(f"restoring the {label} pin in a child process")
    spec = {"api_url": bench.node.api_url, "target": dataclasses.asdict(bench.target), "cid": cid}
    done = run_group(
        [sys.executable, "-m", "tests.bench_restore"],
        cwd=ROOT,
        env={**os.environ, CHILD_ENV: json.dumps(spec)},
        stderr=None,
        timeout=3 * 3600,
    )
    lines = done.stdout.strip().splitlines()
    if done.returncode != 0 or not lines:
        raise BenchError(f"child restore exited with {done.returncode} (its stderr is above)")
    child = json.loads(lines[-1])
    peak = child["peak_kib"] / KiB
    bench.report.add(
        "14",
        f"peak RSS of a child process restoring one {label} pin ({mib(child['bytes'])} CAR)",
        f"{peak:.1f} MiB (before {child['before_kib'] / KiB:.1f} MiB; "
        f"{child['bytes'] / (1 << 20) / child['seconds']:.1f} MiB/s)",
        f"≤ {TARGET_RSS_MIB:.0f} MiB, as (4)",
        verdict(peak <= TARGET_RSS_MIB),
    )


def child_main() -> int:
    """The child side of :func:`memory`: restore one pin, print its figures as one JSON line."""
    spec = json.loads(os.environ[CHILD_ENV])
    backend = S3Target(**spec["target"]).backend("restore-huge")
    before = peak_rss_kib()
    timed = asyncio.run(restore_all(spec["api_url"], backend, [spec["cid"]], 1))
    figures = {"bytes": timed.bytes, "seconds": timed.seconds, "before_kib": before}
    print(json.dumps({**figures, "peak_kib": peak_rss_kib()}), flush=True)
    return 0


def workload(bench: Bench, *, big: bool, seed: int) -> tuple[list[str], str]:
    """Fresh random pins on the node: (2)'s 16 x 64 MiB, or (3)'s 2,000 x 4 KiB; and a label."""
    plan = bench.plan
    if big:
        label = f"{plan.big_pins} x {size_label(plan.big_size)}"
        say(f"adding {label} of random content to Kubo")
        return add_big(bench.node, plan.big_pins, plan.big_size, seed=seed), label
    label = f"{plan.small_pins} x {size_label(plan.small_size)}"
    say(f"adding {label} to Kubo")
    return asyncio.run(add_small(bench.node.api_url, plan.small_pins, plan.small_size, seed)), label


def run(bench: Bench) -> None:
    report = bench.report
    if bench.wants("12"):
        cids, label = workload(bench, big=True, seed=12)
        report.attempt("12", f"restore, {label}", lambda: big(bench, cids, label))
    if bench.wants("13"):
        small_cids, small_label = workload(bench, big=False, seed=13)
        report.attempt(
            "13", f"restore, {small_label}", lambda: small(bench, small_cids, small_label)
        )
    if bench.wants("14"):
        report.attempt("14", "peak RSS of a restore", lambda: memory(bench))


if __name__ == "__main__":
    sys.exit(child_main())
