"""The huggingface backend beyond the contract: rate limits, commits per batch, other writers,
damage behind its back, capacity, the repository's creation. Against the Hub contract fake of
the kit (``pinsync.devenv.hubfake``), whose ``/_fake`` controls reach behind the backend."""

from __future__ import annotations

import base64
import contextlib
import datetime
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import huggingface_hub
import pytest

from pinsync import planner, reasons
from pinsync.backends import base, errors, huggingface

from .conftest import Backends
from .kit_huggingface import HuggingfaceKit
from .test_contract import Blob, fetch, pins, put, upload

pytestmark = pytest.mark.asyncio(loop_scope="session")


@pytest.fixture
def kit(huggingface_kit: HuggingfaceKit) -> HuggingfaceKit:
    return huggingface_kit


@pytest.fixture
async def built(kit: HuggingfaceKit) -> AsyncIterator[Backends]:
    made = Backends(kit)
    try:
        yield made
    finally:
        await made.aclose()


def build(built: Backends, **extra: Any) -> huggingface.HuggingfaceBackend:
    repo = extra.pop("repo", None) or built.kit.fresh_repo()  # type: ignore[attr-defined]
    kit: HuggingfaceKit = built.kit  # type: ignore[assignment]
    backend = built.build(kit.config(repo, **extra), kit.credentials(extra.pop("token", None)))
    assert isinstance(backend, huggingface.HuggingfaceBackend)
    return backend


def state(kit: HuggingfaceKit, backend: huggingface.HuggingfaceBackend) -> dict[str, Any]:
    return kit.server.state(backend.conf.repo)


async def test_a_429_is_honoured_for_its_retry_after_without_asking_again(
    built: Backends, kit: HuggingfaceKit
) -> None:
    backend = build(built)
    await backend.health()
    kit.server.control("rate-limit", {"retryAfter": 120, "count": 1})
    with pytest.raises(errors.RateLimited) as caught:
        await put(backend, Blob(4096))
    assert caught.value.reason == "RateLimited" and caught.value.retryable
    assert 110 <= caught.value.retry_after <= 120
    # The fake would answer now (one 429 was injected), but the backend does not ask it:
    commits = state(kit, backend)["stats"]["commits"]
    with pytest.raises(errors.RateLimited):
        await put(backend, Blob(4096))
    with pytest.raises(errors.RateLimited):
        await backend.health()
    assert state(kit, backend)["stats"]["commits"] == commits
    # And the pin's backoff waits at least that long.
    now = datetime.datetime.now(datetime.UTC)
    failure = planner.failed(
        None, "cid", "RateLimited", "", now=now, at_least=caught.value.retry_after
    )
    assert failure.next_retry_at is not None
    assert failure.next_retry_at - now >= datetime.timedelta(seconds=110)


async def test_a_batch_is_one_commit_of_lfs_files_and_nothing_in_base64(
    built: Backends, kit: HuggingfaceKit
) -> None:
    backend = build(built)
    assert backend.batch_size == 100
    blobs = [Blob(4096) for _ in range(100)]
    before = state(kit, backend)["stats"]["commits"]
    results = await backend.put_pins([upload(blob) for blob in blobs])
    assert all(isinstance(r, base.PinInfo) and r.verified for r in results), results
    stats = state(kit, backend)["stats"]
    assert stats["commits"] == before + 1
    assert (stats["lfs_files"], stats["regular_files"], stats["regular_bytes"]) == (100, 0, 0)
    files = state(kit, backend)["files"]
    for blob in blobs[:3]:
        entry = files[f"pinsync/{huggingface.shard(blob.cid)}/{blob.cid}.car"]
        assert entry["lfs"] == {"oid": blob.sha256, "size": 4096, "pointerSize": 134}


async def test_the_fake_refuses_a_commit_over_the_per_commit_file_limit(
    kit: HuggingfaceKit,
) -> None:
    repo = kit.fresh_repo()
    api = huggingface_hub.HfApi(endpoint=kit.server.endpoint, token=kit.server.token)
    ops = [
        huggingface_hub.CommitOperationAdd(path_in_repo=f"f{i}.txt", path_or_fileobj=b"x")
        for i in range(101)
    ]
    with pytest.raises(huggingface_hub.errors.HfHubHTTPError) as caught:
        api.create_commit(repo, ops, commit_message="too many", repo_type="dataset")
    assert caught.value.response.status_code == 400


async def test_a_commit_built_on_a_moved_head_is_rebuilt_on_the_new_one(
    built: Backends, kit: HuggingfaceKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = build(built)
    stale = await backend.head()
    kit.server.control(
        "commit",
        {
            "repo": f"dataset/{backend.conf.repo}",
            "path": "README.md",
            "content": base64.b64encode(b"another writer").decode(),
        },
    )
    heads = [stale]
    real_head = backend.head

    async def first_stale() -> str:
        return heads.pop() if heads else await real_head()

    monkeypatch.setattr(backend, "head", first_stale)
    blob = Blob(4096)
    await put(backend, blob)
    after = state(kit, backend)
    assert after["stats"]["stale_parents"] == 1
    assert "README.md" in after["files"]  # the other writer's file kept
    assert await pins(backend) == {blob.cid: blob.size}


async def test_consecutive_commits_build_on_the_head_the_last_one_made(
    built: Backends, kit: HuggingfaceKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The head is asked for once, not before every commit (the refs call is cheap, but it is
    still a request per commit against the Hub's rate limit)."""
    backend = build(built)
    asked: list[str] = []
    real_head = backend.head

    async def counted() -> str:
        asked.append(await real_head())
        return asked[-1]

    monkeypatch.setattr(backend, "head", counted)
    for _ in range(3):
        await put(backend, Blob(1024))
    assert len(asked) == 1
    assert state(kit, backend)["stats"]["stale_parents"] == 0
    assert len(await pins(backend)) == 3


async def test_listing_an_unchanged_repository_again_costs_one_request(
    built: Backends, kit: HuggingfaceKit
) -> None:
    backend = build(built)
    blobs = [Blob(1024) for _ in range(3)]
    await backend.put_pins([upload(blob) for blob in blobs])
    assert len(await pins(backend)) == 3
    asked = kit.server.requests()
    assert (await backend.usage()).objects == 3  # the same head: no walk of the tree
    assert kit.server.requests() == asked + 1  # the refs list
    await put(backend, Blob(1024))  # a new head: walked again
    assert len(await pins(backend)) == 4


async def test_damage_behind_the_backend_fails_deep_verify_and_a_regular_file_any_verify(
    built: Backends, kit: HuggingfaceKit
) -> None:
    backend = build(built)
    blob, other = Blob(8192), Blob(8192)
    await put(backend, blob)
    await put(backend, other)
    corrupted = bytearray(blob.data)
    corrupted[100] ^= 0xFF
    kit.server.control(
        "corrupt", {"sha256": blob.sha256, "content": base64.b64encode(corrupted).decode()}
    )
    assert (await backend.verify_pin(blob.cid)).sha256 == blob.sha256  # pointer unchanged
    with pytest.raises(errors.Damaged):
        await backend.verify_pin(blob.cid, deep=True)
    path = f"pinsync/{huggingface.shard(other.cid)}/{other.cid}.car"
    kit.server.control(
        "commit",
        {"repo": f"dataset/{backend.conf.repo}", "path": path, "content": "bm90IGEgY2Fy"},
    )
    for deep in (False, True):
        with pytest.raises(errors.Damaged):
            await backend.verify_pin(other.cid, deep=deep)


async def test_commits_per_hour_are_bounded_without_asking_the_hub(
    built: Backends, kit: HuggingfaceKit
) -> None:
    backend = build(built, maxCommitsPerHour=2)
    await put(backend, Blob(1024))
    await put(backend, Blob(1024))
    commits = state(kit, backend)["stats"]["commits"]
    with pytest.raises(errors.RateLimited) as caught:
        await put(backend, Blob(1024))
    assert 3500 < caught.value.retry_after <= 3600
    assert state(kit, backend)["stats"]["commits"] == commits


async def test_a_full_repository_refuses_a_batch_before_the_hub_is_asked(
    built: Backends, kit: HuggingfaceKit
) -> None:
    backend = build(built, maxFiles=2)
    await backend.put_pins([upload(Blob(1024)), upload(Blob(1024))])
    results = await backend.put_pins([upload(Blob(1024))])
    assert isinstance(results[0], errors.BackendError)
    assert results[0].reason == reasons.REPOSITORY_FULL.name
    assert len(await pins(backend)) == 2


async def test_create_repo_creates_a_private_repository_and_the_revision(
    built: Backends, kit: HuggingfaceKit
) -> None:
    repo = f"{kit.server.user}/created-{uuid.uuid4().hex[:8]}"
    backend = build(built, repo=repo, createRepo=True, revision="mirror")
    await backend.health()
    blob = Blob(2048)
    await put(backend, blob)
    assert await fetch(backend, blob.cid) == blob.data
    api = huggingface_hub.HfApi(endpoint=kit.server.endpoint, token=kit.server.token)
    info = api.repo_info(repo, repo_type="dataset", revision="mirror")
    assert info.private
    anonymous = huggingface_hub.HfApi(endpoint=kit.server.endpoint, token=False)
    with pytest.raises(huggingface_hub.errors.RepositoryNotFoundError):
        anonymous.repo_info(repo, repo_type="dataset")


async def test_a_read_only_token_is_permission_denied_at_health(
    built: Backends, kit: HuggingfaceKit
) -> None:
    backend = build(built, token=kit.server.read_token)
    with pytest.raises(errors.PermissionDenied) as caught:
        await backend.health()
    assert kit.server.read_token not in str(caught.value)


async def test_the_library_client_carries_timeouts_and_the_429_hook() -> None:
    client = huggingface.huggingface_hub.get_session()
    assert huggingface._refuse_429 in client.event_hooks["response"]
    assert client.timeout.connect == huggingface.CONNECT_TIMEOUT


async def test_retry_after_reads_seconds_and_http_dates() -> None:
    assert huggingface.retry_after({"Retry-After": "30"}) == 30
    when = time.time() + 90
    date = datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 85 <= huggingface.retry_after({"Retry-After": date}) <= 90
    assert huggingface.retry_after({}) == huggingface.DEFAULT_RETRY_AFTER


@pytest.mark.parametrize(
    ("spec", "field"),
    [
        ({"repo": "no-slash"}, "repo"),
        ({"repo": "a/b", "repoType": "space"}, "repoType"),
        ({"repo": "a/b", "batch": {"maxPins": 101}}, "maxPins"),
        ({"repo": "a/b", "endpoint": "ftp://x"}, "endpoint"),
    ],
)
async def test_a_bad_field_is_invalid_config_naming_it(spec: dict[str, Any], field: str) -> None:
    with pytest.raises(errors.InvalidConfig) as caught:
        huggingface.HuggingfaceBackend.validate(spec, base.Credentials(data={"token": "t"}))
    assert caught.value.field == field


LIVE_TOKEN = os.environ.get("PINSYNC_LIVE_HF_TOKEN")
LIVE_REPO = os.environ.get("PINSYNC_LIVE_HF_REPO")

if LIVE_TOKEN and LIVE_REPO:  # generated only with credentials: no skip in CI without them

    @pytest.mark.live
    async def test_live_hub_stores_lists_verifies_fetches_and_removes_a_pin(
        built: Backends,
    ) -> None:
        """Against huggingface.co: a branch of its own in ``PINSYNC_LIVE_HF_REPO`` (a dataset
        the token may write; created if missing, private), deleted afterwards."""
        revision = f"pinsync-live-{uuid.uuid4().hex[:8]}"
        config = {"repo": LIVE_REPO, "revision": revision, "createRepo": True}
        backend = built.build(config, base.Credentials(data={"token": LIVE_TOKEN or ""}))
        assert isinstance(backend, huggingface.HuggingfaceBackend)
        try:
            await backend.health()
            blob = Blob(64 * 1024)
            info = await put(backend, blob)
            assert (info.size, info.sha256) == (blob.size, blob.sha256)
            assert (await pins(backend))[blob.cid] == blob.size
            assert (await backend.verify_pin(blob.cid, deep=True)).sha256 == blob.sha256
            assert await fetch(backend, blob.cid) == blob.data
            await backend.remove_pin(blob.cid)
            assert blob.cid not in await pins(backend)
        finally:
            api = huggingface_hub.HfApi(token=LIVE_TOKEN)
            with contextlib.suppress(Exception):
                api.delete_branch(LIVE_REPO, branch=revision, repo_type="dataset")
