"""The github backend beyond the contract: other writers, parts over the file limit, what a
sync fetches, permissions, the branch, the config. Against the real git server of the kit
(lighttpd + ``git http-backend``)."""

from __future__ import annotations

import asyncio
import itertools
import os
import pathlib
import random
import subprocess
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

from pinsync import reasons
from pinsync.backends import base, commitstore, errors, github, gitremote, layout
from pinsync.devenv import gitserver

from .conftest import Backends
from .kit_github import GithubKit
from .test_contract import Blob, chunks, fetch, pins, upload

pytestmark = pytest.mark.asyncio(loop_scope="session")

KiB, MiB = 1024, 1024 * 1024


@pytest.fixture
def kit(github_kit: GithubKit) -> GithubKit:
    return github_kit


@pytest.fixture
async def built(kit: GithubKit) -> AsyncIterator[Backends]:
    made = Backends(kit)
    try:
        yield made
    finally:
        await made.aclose()


def build(
    built: Backends, config: dict[str, Any], credentials: base.Credentials
) -> github.GithubBackend:
    backend = built.build(config, credentials)
    assert isinstance(backend, github.GithubBackend)
    return backend


def log(kit: GithubKit, backend: base.Backend, *extra: str) -> list[str]:
    out = gitserver.git(
        "log", "--format=%H %P %s", *extra, kit.ref(backend), cwd=kit.repo_dir(backend)
    )
    return out.decode().splitlines()


@pytest.fixture
def clone(kit: GithubKit, tmp_path: pathlib.Path) -> Iterator[Any]:
    """Another writer: the git CLI with a clone of its own, pushing over HTTP."""

    def push_file(backend: base.Backend, path: str, data: bytes) -> None:
        where = tmp_path / uuid.uuid4().hex
        name = kit.repo_dir(backend).name.removesuffix(".git")
        gitserver.git("clone", "-q", kit.server.repo_url(name, credentials=True), str(where))
        (where / path).parent.mkdir(parents=True, exist_ok=True)
        (where / path).write_bytes(data)
        gitserver.git("add", path, cwd=where)
        gitserver.git("commit", "-q", "-m", f"someone else adds {path}", cwd=where)
        gitserver.git("push", "-q", "origin", "HEAD:main", cwd=where)

    yield push_file


async def test_another_writers_push_between_two_batches_is_kept(
    built: Backends, kit: GithubKit, clone: Any
) -> None:
    backend = build(built, *kit.good())
    first = [Blob(10 * KiB) for _ in range(3)]
    second = [Blob(10 * KiB) for _ in range(3)]
    results = await backend.put_pins([upload(blob) for blob in first])
    assert all(isinstance(r, base.PinInfo) for r in results), results
    clone(backend, "README.md", b"not pinsync's\n")
    results = await backend.put_pins([upload(blob) for blob in second])
    assert all(isinstance(r, base.PinInfo) for r in results), results

    assert sorted(await pins(backend)) == sorted(b.cid for b in first + second)
    history = log(kit, backend)
    assert [line.split(" ", 2)[-1] for line in history] == [
        "pinsync: add 3 pins",
        "someone else adds README.md",
        "pinsync: add 3 pins",
    ]
    # Linear: every commit's one parent is the next line's commit (no force push, no merge).
    for newer, older in itertools.pairwise(history):
        assert newer.split()[1] == older.split()[0]
    readme = gitserver.git("show", f"{kit.ref(backend)}:README.md", cwd=kit.repo_dir(backend))
    assert readme == b"not pinsync's\n"


def after_each_refresh(backend: github.GithubBackend, then: Callable[[int], Any]) -> list[int]:
    """Another writer racing the backend: ``then(n)`` runs after its n-th refresh of the head,
    before it pushes; the list returned holds the count."""
    repo = backend.repo()
    real = repo.refresh
    calls = [0]

    def refresh(branch: str) -> bytes | None:
        head = real(branch)
        calls[0] += 1
        then(calls[0])
        return head

    repo.refresh = refresh  # type: ignore[method-assign]
    return calls


async def test_a_branch_that_moves_during_a_push_gets_the_commit_rebuilt_on_its_new_head(
    built: Backends, kit: GithubKit, clone: Any
) -> None:
    backend = build(built, *kit.good())
    await backend.put_pin(Blob(KiB).meta(), chunks(Blob(KiB).data))

    def someone_pushes(call: int) -> None:
        if call == 1:  # after our refresh, before our push
            clone(backend, "other.txt", b"racing\n")

    calls = after_each_refresh(backend, someone_pushes)
    blob = Blob(4 * KiB)
    info = await backend.put_pin(blob.meta(), chunks(blob.data))
    assert info.sha256 == blob.sha256
    assert calls == [2]  # refused once, rebuilt on the new head, pushed
    subjects = [line.split(" ", 2)[-1] for line in log(kit, backend)]
    assert subjects[:2] == [f"pinsync: add {blob.cid}", "someone else adds other.txt"]
    assert blob.cid in await pins(backend)


async def test_a_pin_over_the_hosts_file_limit_is_stored_as_parts_and_read_back_joined(
    built: Backends, kit: GithubKit
) -> None:
    config, credentials = kit.good()
    backend = build(built, config, credentials)
    repo_dir = kit.repo_dir(backend)
    gitserver.git("config", "pinsync.maxfilesize", str(300 * KiB), cwd=repo_dir)

    blob = Blob(MiB + 123)
    unparted = build(built, config, credentials)
    with pytest.raises(errors.BackendError) as caught:
        await unparted.put_pin(blob.meta(), chunks(blob.data, 64 * KiB))
    assert caught.value.reason == reasons.FILE_TOO_LARGE.name
    assert "GH001" in str(caught.value)
    assert await pins(backend) == {}

    backend.part_size = 256 * KiB
    info = await backend.put_pin(blob.meta(), chunks(blob.data, 64 * KiB))
    assert (info.size, info.sha256) == (blob.size, blob.sha256)
    raw = kit.list_raw(backend)
    assert sorted(raw) == [f"{blob.cid}.car.{n:04d}" for n in range(5)] + [f"{blob.cid}.json"]
    assert max(size for name, size in raw.items() if ".car." in name) == 256 * KiB
    assert await pins(backend) == {blob.cid: blob.size}
    assert await fetch(backend, blob.cid) == blob.data
    assert (await backend.verify_pin(blob.cid, deep=True)).sha256 == blob.sha256
    # A part replaced behind the backend's back: same size passes shallow, fails deep.
    damaged = bytearray(blob.data[256 * KiB : 512 * KiB])
    damaged[0] ^= 1
    kit.write_raw(backend, f"{blob.cid}.car.0001", bytes(damaged))
    assert (await backend.verify_pin(blob.cid)).size == blob.size
    with pytest.raises(errors.Damaged):
        await backend.verify_pin(blob.cid, deep=True)
    await backend.remove_pin(blob.cid)
    assert kit.list_raw(backend) == {}


def files_at(kit: GithubKit, backend: base.Backend, commit: str) -> list[str]:
    out = gitserver.git("ls-tree", "-r", "--name-only", commit, cwd=kit.repo_dir(backend))
    return [path.rsplit("/", 1)[-1] for path in out.decode().split()]


async def test_a_pin_over_max_bytes_is_pushed_as_several_commits_parts_first_sidecar_last(
    built: Backends, kit: GithubKit
) -> None:
    config, credentials = kit.good()
    backend = build(built, {**config, "batch": {"maxBytes": 600 * KiB}}, credentials)
    backend.part_size = 256 * KiB
    repo_dir = kit.repo_dir(backend)
    gitserver.git("config", "pinsync.maxpushsize", str(700 * KiB), cwd=repo_dir)

    blob = Blob(2 * MiB)
    whole = build(built, config, credentials)  # maxBytes 1 GiB: the pin in one push
    whole.part_size = 256 * KiB
    with pytest.raises(errors.BackendError) as caught:
        await whole.put_pin(blob.meta(), chunks(blob.data, 64 * KiB))
    assert caught.value.reason == reasons.PUSH_TOO_LARGE.name
    assert "pack exceeds maximum allowed size" in str(caught.value)
    assert kit.head(backend) is None

    info = await backend.put_pin(blob.meta(), chunks(blob.data, 64 * KiB))
    assert (info.size, info.sha256) == (blob.size, blob.sha256)
    history = log(kit, backend)  # newest first
    assert [line.split(" ", 2)[-1] for line in history] == [f"pinsync: add {blob.cid}"] + [
        f"pinsync: add {blob.cid}: parts, push {n} of 3" for n in (3, 2, 1)
    ]
    parts = [f"{blob.cid}.car.{n:04d}" for n in range(8)]
    for pushed, line in zip((6, 4, 2), history[1:], strict=True):  # 2 parts (512 KiB) each
        assert files_at(kit, backend, line.split()[0]) == parts[:pushed]  # no sidecar yet
    assert files_at(kit, backend, history[0].split()[0]) == [*parts, f"{blob.cid}.json"]

    # The branch as it was before the last push: the parts are there, the pin is not.
    gitserver.git("update-ref", "refs/heads/partial", history[1].split()[0], cwd=repo_dir)
    partial = build(built, {**config, "branch": "partial"}, credentials)
    assert await pins(partial) == {}
    with pytest.raises(errors.PinNotFound):
        await partial.verify_pin(blob.cid)

    listed = [p async for p in build(built, config, credentials).list_pins()]
    assert [(p.cid, p.size, p.sha256) for p in listed] == [(blob.cid, blob.size, blob.sha256)]
    assert await fetch(backend, blob.cid) == blob.data
    assert (await backend.verify_pin(blob.cid, deep=True)).sha256 == blob.sha256


async def test_a_branch_that_keeps_moving_fails_the_push_as_branch_moved(
    built: Backends, kit: GithubKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(commitstore, "COMMIT_ATTEMPTS", 3)
    config, credentials = kit.good()
    backend = build(built, config, credentials)
    calls = after_each_refresh(
        backend, lambda call: kit.commit_files(backend, {f"other-{call}.txt": b"racing\n"})
    )
    blob = Blob(KiB)
    with pytest.raises(errors.BranchMoved) as caught:
        await backend.put_pin(blob.meta(), chunks(blob.data))
    assert caught.value.reason == reasons.BRANCH_MOVED.name
    assert caught.value.retryable
    assert calls == [3]
    assert [line.split(" ", 2)[-1] for line in log(kit, backend)] == ["another writer"] * 3
    assert await pins(build(built, config, credentials)) == {}


def repo_bytes(path: pathlib.Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


async def test_adding_pins_to_a_repository_full_of_cars_downloads_none_of_them(
    built: Backends, kit: GithubKit
) -> None:
    """What a sync fetches, against the size of the repository (printed for README)."""
    config, credentials = kit.good()
    writer = build(built, config, credentials)
    rng = random.Random(7)
    blobs = [Blob(2 * MiB, seed=rng.randrange(1 << 30)) for _ in range(40)]
    await writer.put_pins([upload(blob) for blob in blobs])
    size = repo_bytes(kit.repo_dir(writer))
    assert size > 80 * MiB

    fresh = build(built, config, credentials)  # a new operator process: nothing cached
    listed = await pins(fresh)
    assert len(listed) == 40
    after_listing = fresh.bytes_fetched
    new = Blob(10 * KiB)
    await fresh.put_pin(new.meta(), chunks(new.data))
    await fresh.verify_pin(new.cid)
    after_put = fresh.bytes_fetched
    print(
        f"\ngithub: repository {size / MiB:.1f} MiB, 40 pins; first listing fetched "
        f"{after_listing / KiB:.1f} KiB, adding a pin {(after_put - after_listing) / KiB:.1f} KiB"
    )
    assert after_listing < 64 * KiB  # commit, trees and 40 sidecars: no CAR
    assert after_put - after_listing < 8 * KiB


async def test_a_repository_that_refuses_pushes_is_permission_denied(
    built: Backends, kit: GithubKit
) -> None:
    url = kit.fresh_repo(writable=False)
    backend = build(built, kit.config(url), kit.credentials())
    await _drain(backend.list_pins())  # reading is allowed
    for operation in (backend.health(), backend.put_pin(Blob(KiB).meta(), chunks(b"x"))):
        with pytest.raises(errors.PermissionDenied) as caught:
            await operation
        assert caught.value.reason == "PermissionDenied"
        assert not caught.value.retryable


async def _drain(stream: AsyncIterator[Any]) -> None:
    async for _ in stream:
        pass


async def test_a_token_is_sent_as_the_password_of_x_access_token(
    built: Backends, kit: GithubKit
) -> None:
    url = kit.fresh_repo()
    backend = build(built, kit.config(url), base.Credentials(data={"token": kit.server.token}))
    await backend.health()
    blob = Blob(KiB)
    await backend.put_pin(blob.meta(), chunks(blob.data))
    wrong = build(built, kit.config(url), base.Credentials(data={"token": "ghp_" + "0" * 36}))
    with pytest.raises(errors.AuthFailed) as caught:
        await wrong.health()
    assert "ghp_" not in str(caught.value)


async def test_an_absent_branch_is_created_beside_the_others(
    built: Backends, kit: GithubKit, clone: Any
) -> None:
    config, credentials = kit.good()
    main = build(built, config, credentials)
    clone(main, "README.md", b"the project\n")
    pins_branch = build(built, {**config, "branch": "pins", "basePath": ""}, credentials)
    blob = Blob(KiB)
    await pins_branch.put_pin(blob.meta(), chunks(blob.data))
    repo = kit.repo_dir(main)
    files = gitserver.git("ls-tree", "-r", "--name-only", "refs/heads/pins", cwd=repo).decode()
    assert files.split() == [
        f"{layout.shard(blob.cid)}/{blob.cid}.car",
        f"{layout.shard(blob.cid)}/{blob.cid}.json",
    ]
    assert (
        gitserver.git("ls-tree", "-r", "--name-only", "refs/heads/main", cwd=repo) == b"README.md\n"
    )


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({}, "url"),
        ({"url": "git@github.com:a/b.git"}, "url"),
        ({"url": "https://user:secret@github.com/a/b.git"}, "url"),
        ({"url": "https://github.com/a/b.git", "branch": "a..b"}, "branch"),
        ({"url": "https://github.com/a/b.git", "batch": {"maxBytes": 3 * 1024**3}}, "maxBytes"),
        ({"url": "https://github.com/a/b.git", "batch": {"maxPins": 0}}, "maxPins"),
    ],
)
async def test_a_bad_spec_is_invalid_config_naming_the_field(
    spec: dict[str, Any], field: str
) -> None:
    with pytest.raises(errors.InvalidConfig) as caught:
        github.GithubBackend.validate(spec, base.Credentials())
    assert caught.value.field == field
    assert "secret" not in str(caught.value)


async def test_defaults_keep_a_push_well_under_githubs_two_gib() -> None:
    conf = github.GithubBackend.validate({"url": "https://github.com/a/b.git"}, base.Credentials())
    assert (conf.branch, conf.base_path, conf.max_pins) == ("main", "pinsync", 500)
    assert conf.max_bytes == 1024**3
    assert github.PART_SIZE < 50 * 1000 * 1000  # below GitHub's warning, far below its limit


LIVE_URL = os.environ.get("PINSYNC_LIVE_GITHUB_URL")
LIVE_TOKEN = os.environ.get("PINSYNC_LIVE_GITHUB_TOKEN")

if LIVE_URL and LIVE_TOKEN:  # generated only with credentials: no skip in CI without them

    @pytest.mark.live
    async def test_live_github_stores_lists_verifies_and_removes_a_pin(built: Backends) -> None:
        branch = f"pinsync-live-{uuid.uuid4().hex[:8]}"
        config = {"url": LIVE_URL, "branch": branch, "basePath": "pinsync"}
        backend = build(built, config, base.Credentials(data={"token": LIVE_TOKEN or ""}))
        await backend.health()
        blob = Blob(64 * KiB)
        info = await backend.put_pin(blob.meta(), chunks(blob.data))
        assert info.sha256 == blob.sha256
        assert (await pins(backend))[blob.cid] == blob.size
        assert (await backend.verify_pin(blob.cid, deep=True)).sha256 == blob.sha256
        assert await fetch(backend, blob.cid) == blob.data
        await backend.remove_pin(blob.cid)
        assert blob.cid not in await pins(backend)
        await asyncio.to_thread(  # tidy up the branch (best effort, with the same token)
            subprocess.run,
            [
                "git",
                "push",
                "-q",
                LIVE_URL.replace("https://", f"https://x-access-token:{LIVE_TOKEN}@"),
                f":{branch}",
            ],
            capture_output=True,
            check=False,
        )


async def test_a_batch_over_max_bytes_is_split_into_commits_each_whole(
    built: Backends, kit: GithubKit
) -> None:
    config, credentials = kit.good()
    backend = build(built, {**config, "batch": {"maxBytes": 25 * KiB}}, credentials)
    blobs = [Blob(10 * KiB) for _ in range(5)]
    results = await backend.put_pins([upload(blob) for blob in blobs])
    assert [getattr(r, "sha256", r) for r in results] == [b.sha256 for b in blobs]
    subjects = [line.split(" ", 2)[-1] for line in log(kit, backend)]
    assert len(subjects) == 3  # 2 + 2 + 1 pins: each commit stays under 25 KiB of CARs
    assert sorted(await pins(backend)) == sorted(b.cid for b in blobs)


async def test_the_in_memory_object_store_is_pruned_to_what_the_head_needs(
    built: Backends, kit: GithubKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gitremote, "PRUNE_EVERY", 3)
    backend = build(built, *kit.good())
    blobs = [Blob(KiB) for _ in range(8)]
    sizes = []
    for blob in blobs:  # a commit each: superseded trees pile up until pruned
        await backend.put_pin(blob.meta(), chunks(blob.data))
        sizes.append(len(list(backend.repo().store)))
    assert max(sizes) < 8 + 3 * 6  # head commit, 3 trees, sidecars; + a few heads' leftovers
    await backend.remove_pin(blobs[0].cid)
    assert sorted(await pins(backend)) == sorted(b.cid for b in blobs[1:])
    assert (await backend.verify_pin(blobs[-1].cid, deep=True)).sha256 == blobs[-1].sha256
