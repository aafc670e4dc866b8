"""Pins as files committed to a branch: the plumbing the github and huggingface types share.

Both write a batch of pins as one commit on the head it was built on. The pins' streams are
first spooled to local files, since a commit needs every file's size and hash before it is sent
(git names a blob by its content; LFS announces each object's sha256); then the commit is
built and sent. When another writer moved the branch meanwhile, the server refuses it (a ref
update that names the old head; the Hub's 412 on ``parentCommit``), the backend raises
``BranchMoved``, and the commit is rebuilt on the new head, up to COMMIT_ATTEMPTS times; after
that ``BranchMoved`` goes to the pins, whose backoff retries them later.

What differs stays in each backend: how a pin is spooled (git: pack entries cut in parts;
huggingface: one file), how a commit is built and sent, how a moved branch shows.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import os
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from typing import Any, ClassVar, Generic, TypeVar

from pinsync.backends import base, errors

T = TypeVar("T")
S = TypeVar("S", bound=base.Staged)

COMMIT_ATTEMPTS = 5
"""Commits built for one write while other writers keep moving the branch."""


def discard(paths: Sequence[str]) -> None:
    """Remove spooled files (after their commit, or instead of it)."""
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


@contextlib.contextmanager
def discarded_on_failure(paths: list[str]) -> Iterator[None]:
    """The files a pin's staging spooled (appended to ``paths`` as they are made) are removed
    when staging fails midway: a stream that breaks leaves nothing behind."""
    try:
        yield
    except BaseException:
        discard(paths)
        raise


class CommitStore(base.Backend, Generic[S]):
    """A backend whose write is a commit of staged pins (``S``) on a branch."""

    spool_prefix: ClassVar[str] = "pinsync-"
    prune_batch: ClassVar[int] = 10_000
    """A prune's deletions go into as few commits as the backend's batch allows."""
    single_writer: ClassVar[bool] = True
    """Two workers committing to the branch at once would reject each other's pushes."""

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        self._lock = asyncio.Lock()
        """Serialises what reads the branch to build a commit and the commit itself."""
        self._spool_dir: tempfile.TemporaryDirectory[str] | None = None

    def spool_dir(self) -> str:
        """Where staged bytes go: a directory of this backend's, which :meth:`aclose` removes
        with whatever a failure left in it. Made on first use, from the event loop (not from
        the threads that write into it)."""
        if self._spool_dir is None:
            self._spool_dir = tempfile.TemporaryDirectory(prefix=self.spool_prefix)
        return self._spool_dir.name

    async def aclose(self) -> None:
        if self._spool_dir is not None:
            self._spool_dir.cleanup()
            self._spool_dir = None

    # -- writing ---------------------------------------------------------------------------------

    @property
    @abc.abstractmethod
    def max_commit_bytes(self) -> int:
        """Bytes of staged pins in one commit (``batch.maxBytes``)."""

    @abc.abstractmethod
    async def stage(self, meta: base.PinMeta, source: base.Source) -> S:
        """Spool one pin's stream (its stream's error is that pin's alone)."""

    @abc.abstractmethod
    async def commit_staged(self, staged: list[tuple[int, S]], results: base.Results) -> None:
        """Commit staged pins; fill in the result of every one (a failure is each pin's)."""

    async def put_pin(self, meta: base.PinMeta, content: AsyncIterator[bytes]) -> base.PinInfo:
        return await self.put_one(meta, content)

    async def put_pins(self, uploads: Sequence[base.Upload]) -> list[base.PinInfo | Exception]:
        """Spool the batch, then commit it: one commit per ``maxBytes`` of it (normally one)."""
        return await self.commit_batch(
            uploads, stage=self.stage, commit=self.commit_staged, max_bytes=self.max_commit_bytes
        )

    async def rebuilt_while_moving(self, attempt: Callable[[], Awaitable[T]]) -> T:
        """``attempt`` -- build a commit on the branch's head and send it -- under the lock,
        again while it raises ``BranchMoved``; the last ``BranchMoved`` goes to the caller."""
        async with self._lock:
            for number in range(1, COMMIT_ATTEMPTS):
                try:
                    return await attempt()
                except errors.BranchMoved:
                    await asyncio.sleep(0.1 * number)
            return await attempt()
