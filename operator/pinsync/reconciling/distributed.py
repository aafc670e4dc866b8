"""The transfer step of a sync spread over worker Pods: publish shards, roll their reports up.

The operator stays the only planner and the only writer of a backend's status: it lists the
backend, plans, and hands the pins to transfer to this mover instead of transferring them
itself. The mover publishes them as shards (:mod:`pinsync.shards`: an order in a ConfigMap and
a claim in a Lease per shard), then reads the Leases every few seconds and settles each pin
once the shard holding it is done -- so the pass's failures, backoff, counts and dirty-mark
clearing are exactly those of an in-process pass.

A plan outlives its planner: when the operator restarts or its standby takes over, the next
pass finds the Leases. A plan made at the same dirty token is *adopted* (workers carry on; its
pins are settled as they finish); any other is withdrawn (its workers stop at their next
renewal) and a new one published, whose workers check each pin before writing it.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Container, Mapping, Sequence
from typing import Any

from pinsync import kube, reasons, shards, syncing
from pinsync.backends import base, errors
from pinsync.reconciling.context import Context

logger = logging.getLogger(__name__)

POLL_INTERVAL = 2.0
"""Seconds between reads of a plan's Leases (one list call per backend)."""
UNCLAIMED_WARNING = 30.0
"""Seconds without any shard claimed before the operator says, in an event, that it waits."""


class RemoteFailure(reasons.ReasonedError):
    """A pin's transfer failed on a worker, as its report said."""

    def __init__(self, message: str, *, reason: str, retry_after: float) -> None:
        super().__init__(message, reason=reason)
        self.retry_after = retry_after


class Everything:
    def __contains__(self, key: object) -> bool:
        return True


class Published:
    """One shard of the plan being rolled up: its pins' identities, in order (the order itself
    is kept only compressed, in its ConfigMap)."""

    def __init__(self, name: str, keys: list[str]) -> None:
        self.name, self.keys = name, keys
        self.done = False
        self.bytes = 0


class Distributed:
    """A :data:`pinsync.syncing.Mover` that has worker Pods do the transfers."""

    def __init__(
        self,
        ctx: Context,
        obj: Mapping[str, Any],
        token: int,
        urls_of: Callable[[str], Sequence[str]],
        announce: Callable[[str, str, str], Any],
    ) -> None:
        self.ctx, self.obj, self.token, self.urls_of = ctx, obj, token, urls_of
        self.announce = announce
        """``Pass.event``: (type, reason, message) -> awaitable."""
        self.namespace = obj["metadata"]["namespace"]
        self.name = obj["metadata"]["name"]
        self.selector = shards.backend_selector(obj["metadata"]["uid"])
        self.leases = kube.Kind(ctx.api, "lease")
        self.orders = kube.Kind(ctx.api, "config_map")
        self.waiting: list[tuple[shards.Plan, bytes, list[str]]] = []
        self.adopted = False
        """Shards planned but not yet published (a single writer's, one at a time)."""

    async def __call__(self, move: syncing.Move) -> None:
        existing = await self.leases.select(self.namespace, self.selector)
        published = await self.adopt(existing)
        if published is None:
            if existing:
                logger.info("%s/%s: withdrawing a plan left unfinished", *self.key)
                await self.withdraw()
            if not move.pins:
                return
            published = await self.publish(move, check_first=bool(existing))
        await self.roll_up(move, published)
        await self.withdraw()  # every shard is done: nothing left for the workers

    async def adopt(self, existing: list[dict[str, Any]]) -> list[Published] | None:
        """The shards of a plan made at this pass's token, if one is left unfinished."""
        plans = [shards.plan_of(lease) for lease in existing]
        plan = plans[0] if plans else None
        if plan is None or plan.token != self.token:
            return None
        if any(p is None or p.plan != plan.plan for p in plans):
            return None
        found = []
        for lease in existing:
            order = await self.orders.read(self.namespace, lease["metadata"]["name"])
            if order is None:
                return None  # half published: publish anew
            keys = [pin.key for pin in shards.order_of(order).pins]
            found.append(Published(lease["metadata"]["name"], keys))
        if len(found) != plan.shards:
            return None
        logger.info("%s/%s: adopting plan %s (%d shards)", *self.key, plan.plan, len(found))
        self.adopted = True
        return found

    @property
    def key(self) -> tuple[str, str]:
        return self.namespace, self.name

    async def withdraw(self) -> None:
        await self.leases.delete_all(self.namespace, self.selector)
        await self.orders.delete_all(self.namespace, self.selector)

    async def publish(self, move: syncing.Move, *, check_first: bool) -> list[Published]:
        """The plan's shards, all at once -- or, for a backend that takes one writer at a time,
        the first (:meth:`next_shard` publishes each next one when the last is done)."""
        count = shards.shard_count(len(move.pins), self.ctx.settings.min_shards)
        groups = [g for g in shards.split(move.pins, count) if g]
        plan_id = f"{self.token}.{secrets.token_hex(4)}"
        self.waiting = []
        for index, keys in enumerate(groups):
            pins = []
            for key in keys:
                meta = move.meta_of(key)
                urls = tuple(self.urls_of(key))
                pins.append(
                    shards.Pin(
                        key=key,
                        name=meta.cid,
                        pinsets=meta.pinsets,
                        urls=urls,
                        on_node=key in move.node_pins,
                    )
                )
            order = shards.Order(pins=tuple(pins), check_first=check_first).encode()
            plan = shards.Plan(
                backend=self.name,
                uid=self.obj["metadata"]["uid"],
                plan=plan_id,
                token=self.token,
                shard=index,
                shards=len(groups),
                pins=len(keys),
            )
            self.waiting.append((plan, order, keys))
        one_at_a_time = move.backend.single_writer
        published = [
            await self.next_shard()
            for _ in (self.waiting[:1] if one_at_a_time else self.waiting[:])
        ]
        logger.info(
            "%s/%s: published %d pin(s) as %d shard(s), plan %s",
            *self.key,
            len(move.pins),
            len(groups),
            plan_id,
        )
        return published

    async def next_shard(self) -> Published:
        """Publish the next waiting shard: its order first, then its Lease (a worker never sees
        a claim without its order)."""
        plan, order, keys = self.waiting.pop(0)
        made = await self.orders.create(
            self.namespace, shards.new_order(self.namespace, self.obj, plan, order)
        )
        duration = self.ctx.settings.lease_seconds
        await self.leases.create(
            self.namespace, shards.new_lease(self.namespace, self.obj, plan, duration=duration)
        )
        return Published(made["metadata"]["name"], keys)

    async def roll_up(self, move: syncing.Move, published: list[Published]) -> None:
        """Settle each shard's pins once it is done; show running shards' counts meanwhile."""
        progress = move.progress
        # An adopted plan may hold pins that were present when this pass listed: not settled.
        wanted: Container[str] = set(move.pins) if self.adopted else Everything()
        bytes_before = progress.bytes
        started = time.monotonic()
        warned = False
        while True:
            current = {
                lease["metadata"]["name"]: lease
                for lease in await self.leases.select(self.namespace, self.selector)
            }
            running_present = running_uploaded = claimed = 0
            for shard in published:
                lease = current.get(shard.name)
                if lease is None and not shard.done:
                    # Withdrawn by another planner (the other replica took over): what is left
                    # is its to do; this pass stops, the untried pins still missing.
                    logger.warning("%s/%s: shard %s withdrawn", *self.key, shard.name)
                    progress.stopped = True
                    shard.done = True
                    continue
                report = shards.report_of(lease) if lease is not None else None
                if report is None:
                    continue
                claimed += 1
                shard.bytes = report.bytes
                if shard.done:
                    continue
                if report.done:
                    self.settle(move, shard, report, wanted)
                    shard.done = True
                    continue
                present, uploaded = counted(report, shard.keys, wanted)
                running_present += present
                running_uploaded += uploaded
            progress.bytes = bytes_before + sum(s.bytes for s in published)
            if all(s.done for s in published):
                if not self.waiting:
                    return
                published.append(await self.next_shard())  # a single writer's next shard
                continue
            if not claimed and not warned and time.monotonic() - started > UNCLAIMED_WARNING:
                warned = True
                await self.announce(
                    "Warning",
                    "WaitingForWorkers",
                    f"no worker has claimed any of {len(published)} shard(s) for "
                    f"{UNCLAIMED_WARNING:.0f}s: are pinsync workers running "
                    "(workers.replicas) and allowed to read Leases in this namespace?",
                )
            # Running shards' pins count while they run, and are settled when their shard is.
            progress.present += running_present
            progress.uploaded += running_uploaded
            try:
                await move.report(progress)
            finally:
                progress.present -= running_present
                progress.uploaded -= running_uploaded
            await asyncio.sleep(POLL_INTERVAL)

    def settle(
        self, move: syncing.Move, shard: Published, report: shards.Report, wanted: Container[str]
    ) -> None:
        progress = move.progress
        progress.backend_errors += report.backend_errors
        if report.refused is not None:
            reason, message = report.refused
            progress.refused = progress.refused or errors.WritesDisabled(message, reason=reason)
            progress.stopped = True
        for index, key in enumerate(shard.keys):
            if key not in wanted:
                continue  # an adopted plan's pin that was present when this pass listed
            outcome = report.outcome(index)
            if outcome == shards.UPLOADED:
                move.settle(key, base.PinInfo(cid=key, size=None, verified=True))
            elif outcome == shards.PRESENT:
                move.settle(key, None)
            elif outcome == shards.FAILED:
                reason, message, retry_after = report.failures[index]
                failure = RemoteFailure(message, reason=reason, retry_after=retry_after)
                move.settle(key, failure)
            else:
                progress.stopped = True  # untried: still missing, retried next pass


def counted(report: shards.Report, keys: list[str], wanted: Container[str]) -> tuple[int, int]:
    """(present, uploaded) among ``wanted`` pins of a running shard, as its report says: with
    every pin wanted, counted in C (a million pins' shards are read every 2 s)."""
    out = report.outcomes
    if isinstance(wanted, Everything):
        failed, untried = out.count(ord(shards.FAILED)), out.count(ord(shards.UNTRIED))
        return len(out) - failed - untried, out.count(ord(shards.UPLOADED))
    pairs = [chr(out[i]) for i, key in enumerate(keys) if key in wanted]
    present = sum(1 for o in pairs if o in (shards.UPLOADED, shards.PRESENT))
    return present, pairs.count(shards.UPLOADED)
