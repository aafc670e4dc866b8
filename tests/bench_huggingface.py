"""Row (15) of ``make bench``: the huggingface backend into the Hub contract fake (issue 10).

The server is :mod:`pinsync.devenv.hubfake` on loopback (no Hub server can be installed here),
so the figure measures pinsync's side -- spooling, hashing, the LFS batch API, one commit per
batch -- not the Hub's. pinsync is ``syncing.run`` with the real HuggingfaceBackend.

15. 2,000 pins of 4 KiB: pins/s and the commits made (100 files per commit: 20).
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

from pinsync import ipfs
from pinsync.backends import base, huggingface
from pinsync.devenv import hubfake
from tests.bench import Bench, Synced, add_small, say, size_label, timed_pass

UNITS = ("15",)


async def pinsync_pass(
    bench: Bench, hub: hubfake.HubFake, repo: str, cids: Sequence[str]
) -> tuple[Synced, int]:
    hub.make_repo(repo)
    config = {"endpoint": hub.endpoint, "repo": repo, "maxCommitsPerHour": 10_000}
    backend = huggingface.HuggingfaceBackend(config, base.Credentials(data={"token": hub.token}))
    async with ipfs.Kubo(bench.node.api_url, timeout=600) as kubo, backend:
        synced = await timed_pass(
            kubo,
            backend,
            cids,
            concurrency=bench.plan.small_concurrency,
            global_limit=bench.plan.global_limit,
        )
        return synced, backend.commits_made


def run(bench: Bench) -> None:
    plan, report = bench.plan, bench.report
    # About a hundred api requests per commit of 100 pins (preupload, LFS batch, a verify per
    # object, the commit, the read-back): past the Free tier's 1,000 per 5 minutes in 20
    # commits. The row measures pinsync's own cost, not a plan's window: the account has room.
    hub = hubfake.HubFake(bench.workdir / "hub", api=100_000)
    say(f"starting the Hub contract fake under {hub.workdir}")
    hub.start()
    try:
        n, label = plan.small_pins, size_label(plan.small_size)
        say(f"adding {n} pins of {label} to Kubo")
        cids = asyncio.run(add_small(bench.node.api_url, n, plan.small_size, seed=12))
        say(f"syncing {n} x {label} into the Hub contract fake with syncing.run")
        synced, commits = asyncio.run(pinsync_pass(bench, hub, f"{hub.user}/bench", cids))
        report.add(
            "15",
            f"pinsync syncing.run → Hub contract fake (HuggingfaceBackend), {n} x {label}, "
            f"concurrency {plan.small_concurrency}",
            f"{synced.per_s:.1f} pins/s ({synced.seconds:.1f} s), {commits} commit(s)",
        )
    finally:
        hub.stop()
