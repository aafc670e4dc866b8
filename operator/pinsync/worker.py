"""``pinsync worker``: claim shards of the operator's plans and transfer their pins.

A worker never plans and never writes a StorageBackend: it finds unfinished shards (Leases
labelled by :mod:`pinsync.shards`), claims up to ``max_shards`` of them by compare-and-swap,
transfers each order's pins exactly as the operator does in-process (:func:`syncing.in_process`:
Kubo export, CAR check, upload, verify) and reports per-pin outcomes in its Lease renewals.

- A claim held by another worker is taken over once its Lease has not changed for the Lease's
  duration, timed by this worker's own clock (as client-go's leader election does: no trust in
  other hosts' clocks). The taker looks for each pin before writing it.
- A worker stops starting transfers once its claim is older than 80% of the duration without
  a successful renewal (it was paused, or the API server was unreachable); a renewal or report
  it then attempts fails on the Lease's resourceVersion: its late results are refused.
- SIGTERM (scale-down, rolling update): no new claims; in-flight transfers finish; each claim is
  released at once, for another worker to take without waiting out the Lease.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import socket
import time
from collections.abc import Sequence
from typing import Any

from pinsync import ipfs, kube, shards, syncing
from pinsync.backends import base
from pinsync.reconciling.context import Context
from pinsync.reconciling.validation import client_for, validate
from pinsync.settings import Settings

logger = logging.getLogger(__name__)

POLL_INTERVAL = 2.0
"""Seconds between looks for claimable shards (one list call per namespace served)."""
SHUTDOWN_LEASE = 3
"""Seconds a claim lasts unrenewed once its worker is stopping."""
VALID_FOR = 0.8
"""Share of the Lease duration after the last renewal during which new transfers start."""


def default_identity() -> str:
    """The Pod's name (unique in its namespace), else host and process."""
    return os.environ.get("POD_NAME") or f"{socket.gethostname()}-{os.getpid()}"


class Claim:
    """A shard this worker holds: its Lease as last written, its order, its report."""

    def __init__(
        self, lease: dict[str, Any], order: shards.Order, report: shards.Report, duration: int
    ) -> None:
        self.lease, self.order, self.report, self.duration = lease, order, report, duration
        self.plan = shards.plan_of(lease)
        self.renewed = time.monotonic()
        self.lost = False
        self.releasing = False
        self.lock = asyncio.Lock()
        """One Lease write at a time: two would conflict with each other."""
        self.finished = asyncio.Event()

    @property
    def where(self) -> str:
        meta = self.lease["metadata"]
        return f"{meta['namespace']}/{meta['name']}"

    def valid(self) -> bool:
        """Whether new transfers may start under this claim."""
        fresh = time.monotonic() - self.renewed < self.duration * VALID_FOR
        return fresh and not self.lost and not self.releasing


class Worker:
    def __init__(
        self,
        api: kube.Api,
        settings: Settings,
        *,
        identity: str,
        max_shards: int = 2,
        near: Sequence[str] = (),
    ) -> None:
        self.ctx = Context(api=api, settings=settings)
        self.identity, self.max_shards = identity, max_shards
        self.near = tuple(url.rstrip("/") for url in near)
        self.leases = kube.Kind(api, "lease")
        self.orders = kube.Kind(api, "config_map")
        self.claims: dict[str, Claim] = {}
        self.tasks: set[asyncio.Task[None]] = set()
        self.observed: dict[str, tuple[str, float]] = {}
        """Lease -> (resourceVersion, when this worker first saw it)."""
        self.stopping = asyncio.Event()
        self.global_limit = asyncio.Semaphore(settings.global_concurrency)

    async def run(self) -> None:
        logger.info("worker %s: up to %d shard(s) at a time", self.identity, self.max_shards)
        while not self.stopping.is_set():
            try:
                await self.claim_some()
            except kube.ApiError as exc:
                logger.warning("could not list shards: %s %s", exc.status, exc.reason)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), POLL_INTERVAL)
        for claim in self.claims.values():
            claim.releasing = True
            # Should this process be killed before it releases (a grace period too short for a
            # big pin in flight), its claims lapse in seconds, not a whole Lease.
            claim.duration = min(claim.duration, SHUTDOWN_LEASE)
        await asyncio.gather(*(self.write(c) for c in list(self.claims.values())))
        if self.tasks:
            await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.ctx.aclose()

    def stop(self) -> None:
        logger.info("worker %s: stopping, releasing %d claim(s)", self.identity, len(self.claims))
        self.stopping.set()

    async def listed(self) -> list[dict[str, Any]]:
        namespaces = self.ctx.settings.namespaces or (None,)
        found = []
        for namespace in namespaces:
            found += await self.leases.select(namespace, shards.SELECTOR)
        return found

    async def claim_some(self) -> None:
        leases = await self.listed()
        now = time.monotonic()
        seen = {}
        for lease in leases:
            key = self.key(lease)
            rv = lease["metadata"]["resourceVersion"]
            before = self.observed.get(key)
            seen[key] = before if before is not None and before[0] == rv else (rv, now)
        self.observed = seen
        candidates = [lease for lease in leases if self.claimable(lease, now)]
        random.shuffle(candidates)  # workers polling together try different shards first
        # Shards whose holder died or froze first: they have waited longest, and a plan is only
        # as done as its slowest shard.
        candidates.sort(key=lambda lease: not shards.holder(lease))
        for lease in candidates:
            if len(self.claims) >= self.max_shards or self.stopping.is_set():
                return
            claim = await self.claim(lease)
            if claim is not None:
                self.claims[self.key(lease)] = claim
                task = asyncio.create_task(self.work(claim))
                self.tasks.add(task)
                task.add_done_callback(self.tasks.discard)

    @staticmethod
    def key(lease: dict[str, Any]) -> str:
        return f"{lease['metadata']['namespace']}/{lease['metadata']['name']}"

    def claimable(self, lease: dict[str, Any], now: float) -> bool:
        key = self.key(lease)
        if key in self.claims or shards.plan_of(lease) is None:
            return False
        report = shards.report_of(lease)
        if report is not None and report.done:
            return False
        held_by = shards.holder(lease)
        if not held_by or held_by == self.identity:
            return True  # free, or this worker's before a restart under the same name
        duration = int((lease.get("spec") or {}).get("leaseDurationSeconds") or 15)
        return now - self.observed[key][1] >= duration

    async def claim(self, lease: dict[str, Any]) -> Claim | None:
        meta = lease["metadata"]
        made = await self.orders.read(meta["namespace"], meta["name"])
        if made is None:
            return None  # withdrawn meanwhile
        order = shards.order_of(made)
        duration = self.ctx.settings.lease_seconds
        before = shards.holder(lease)
        turn = shards.transitions(lease) + (before != self.identity)
        report = shards.Report.fresh(self.identity, turn, len(order.pins))
        sent = time.monotonic()
        try:
            written = await self.leases.replace(
                shards.with_claim(lease, self.identity, report, duration=duration)
            )
        except kube.Conflict:
            return None  # another worker was faster
        if written is None:
            return None
        claim = Claim(written, order, report, duration)
        claim.renewed = sent
        if before or shards.transitions(lease):
            # Someone held it before: some pins may be there already.
            claim.order = shards.Order(pins=order.pins, check_first=True)
        how = f"taking over from {before}" if before else "claimed"
        logger.info("shard %s: %s (%d pins)", claim.where, how, len(order.pins))
        return claim

    async def work(self, claim: Claim) -> None:
        renewer = asyncio.create_task(self.renew(claim))
        try:
            await self.transfer(claim)
        except Exception:
            logger.exception("shard %s: failed; releasing it", claim.where)
            claim.releasing = True
        finally:
            claim.finished.set()
            await renewer
        try:
            if not claim.lost:
                await self.write(claim, release=claim.releasing)
        finally:
            self.claims.pop(self.key(claim.lease), None)

    async def renew(self, claim: Claim) -> None:
        """Renew (and report) every third of the duration until the work ends."""
        while not claim.lost:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(claim.finished.wait(), claim.duration / 3)
            if claim.finished.is_set():
                return
            await self.write(claim)

    async def write(self, claim: Claim, *, release: bool = False) -> None:
        """Renew the claim with the report so far; the final write marks it done, or releases
        it (the report is then dropped: the next holder looks for each pin first)."""
        async with claim.lock:
            if claim.lost:
                return
            if not release and claim.finished.is_set() and not claim.releasing:
                claim.report.done = True
            identity, report = ("", None) if release else (self.identity, claim.report)
            body = shards.with_claim(claim.lease, identity, report, duration=claim.duration)
            sent = time.monotonic()
            try:
                written = await self.leases.replace(body)
            except kube.Conflict:
                written = None
            except kube.ApiError as exc:
                logger.warning(
                    "shard %s: renewal failed: %s %s", claim.where, exc.status, exc.reason
                )
                return  # tried again at the next renewal; transfers stop once it is too old
            if written is None:
                claim.lost = True
                logger.warning(
                    "shard %s: claim lost (another worker took it over): results dropped",
                    claim.where,
                )
                return
            claim.lease, claim.renewed = written, sent
            if release:
                logger.info("shard %s: released", claim.where)
            elif claim.report.done:
                logger.info("shard %s: done", claim.where)

    async def transfer(self, claim: Claim) -> None:
        plan = claim.plan
        assert plan is not None
        namespace = claim.lease["metadata"]["namespace"]
        obj = await self.ctx.api.get(kube.STORAGEBACKENDS, namespace, plan.backend)
        if obj is None or obj["metadata"]["uid"] != plan.uid:
            claim.releasing = True  # the backend is gone: the operator withdraws the plan
            return
        verdict = await validate(self.ctx, obj)
        if not verdict.ok:
            logger.warning("shard %s: backend %s is not usable now", claim.where, plan.backend)
            claim.releasing = True
            return
        backend = await client_for(self.ctx, obj, verdict)
        pins = {pin.key: pin for pin in claim.order.pins}
        index = {pin.key: i for i, pin in enumerate(claim.order.pins)}
        progress = syncing.Progress(desired=len(pins))

        def settle(key: str, result: base.PinInfo | Exception | None) -> None:
            if isinstance(result, Exception):
                reason, message = syncing.error_of(result)
                failure = (reason, message, float(getattr(result, "retry_after", 0.0)))
                claim.report.record(index[key], shards.FAILED, failure)
            else:
                outcome = shards.PRESENT if result is None else shards.UPLOADED
                claim.report.record(index[key], outcome, None)

        async def report(progress: syncing.Progress) -> None:
            claim.report.bytes = progress.bytes  # written by the next renewal

        def kubo_for(key: str) -> ipfs.Kubo:
            return self.ctx.kubo(self.nearest(pins[key].urls))

        spec = obj.get("spec") or {}
        await syncing.in_process(
            syncing.Move(
                backend=backend,
                pins=list(pins),
                meta_of=lambda key: base.PinMeta(
                    cid=pins[key].name, pinsets=pins[key].pinsets, node=kubo_for(key)
                ),
                kubo_for=kubo_for,
                node_pins={key for key, pin in pins.items() if pin.on_node},
                concurrency=int((spec.get("sync") or {}).get("concurrency") or 4),
                global_limit=self.global_limit,
                progress=progress,
                settle=settle,
                report=report,
                check_first=claim.order.check_first,
                still_mine=claim.valid,
            )
        )
        if ord(shards.UNTRIED) not in claim.report.outcomes:
            claim.releasing = False  # every pin done (a stop came too late to matter): report it
        elif not claim.valid() and not claim.lost:
            # Stopped for want of a renewal, not because the work is done: let another finish.
            claim.releasing = True
        claim.report.bytes = progress.bytes
        claim.report.backend_errors = progress.backend_errors
        claim.report.stopped = progress.stopped
        if progress.refused is not None:
            claim.report.refused = (progress.refused.reason, progress.refused.message)

    def nearest(self, urls: Sequence[str]) -> str:
        """The Kubo API on this worker's node, if it holds the pin; else the planner's choice."""
        for url in urls:
            if url.rstrip("/") in self.near:
                return url
        return urls[0] if urls else self.ctx.settings.ipfs_api_url


async def serve(worker: Worker) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, worker.stop)
    await worker.run()
