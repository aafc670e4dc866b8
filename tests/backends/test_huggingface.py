"""The huggingface backend beyond the contract: rate limits, commits per batch, other writers,
damage behind its back, capacity, the repository's creation. Against the Hub contract fake of
the kit (``pinsync.devenv.hubfake``), whose ``/_fake`` controls reach behind the backend.

Quotas are per account and the backend keeps them per token for the whole process, so a test
that uses a quota up runs on an account of its own (:func:`account`)."""

from __future__ import annotations

import base64
import contextlib
import dataclasses
import datetime
import os
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import huggingface_hub
import pytest

from pinsync import planner, reasons
from pinsync.backends import base, commitstore, errors, huggingface, layout

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
    token = extra.pop("token", None)
    backend = built.build(kit.config(repo, **extra), kit.credentials(token))
    assert isinstance(backend, huggingface.HuggingfaceBackend)
    return backend


@dataclasses.dataclass
class Account:
    """A Hub account of one test: its name, a write token, and a fresh private repository."""

    name: str
    token: str
    repo: str

    def another_repo(self, kit: HuggingfaceKit) -> str:
        repo = f"{self.name}/more-{uuid.uuid4().hex[:8]}"
        kit.server.make_repo(repo, token=self.token)
        return repo


def account(kit: HuggingfaceKit, **quotas: int) -> Account:
    name = f"user-{uuid.uuid4().hex[:8]}"
    token = kit.server.account(name, **quotas)
    made = Account(name=name, token=token, repo="")
    made.repo = made.another_repo(kit)
    return made


def state(kit: HuggingfaceKit, backend: huggingface.HuggingfaceBackend) -> dict[str, Any]:
    return kit.server.state(backend.conf.repo)


async def test_a_429_is_waited_out_until_its_ratelimit_reset_by_every_backend_of_the_token(
    built: Backends, kit: HuggingfaceKit
) -> None:
    """The Hub names the reset in ``RateLimit`` only (no Retry-After), and the quota is the
    account's: another backend with the same token on another repository waits too."""
    owner = account(kit)
    backend = build(built, repo=owner.repo, token=owner.token)
    await backend.health()
    kit.server.control("rate-limit", {"retryAfter": 120, "count": 1})
    with pytest.raises(errors.RateLimited) as caught:
        await put(backend, Blob(4096))
    assert caught.value.reason == "RateLimited" and caught.value.retryable
    assert 110 <= caught.value.retry_after <= 120
    # The fake would answer now (one 429 was injected), but no backend of the token asks it:
    other = build(built, repo=owner.another_repo(kit), token=owner.token)
    asked = kit.server.requests()
    for attempt in (lambda: put(backend, Blob(4096)), backend.health, other.health):
        with pytest.raises(errors.RateLimited):
            await attempt()
    assert kit.server.requests() == asked
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
        entry = files[f"pinsync/{layout.shard(blob.cid)}/{blob.cid}.car"]
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


async def moved_behind(kit: HuggingfaceKit, backend: huggingface.HuggingfaceBackend) -> str:
    """The revision's head, then moved by another writer: the head a commit would be stale on."""
    stale = await backend.head()
    kit.server.control(
        "commit",
        {
            "repo": f"dataset/{backend.conf.repo}",
            "path": "README.md",
            "content": base64.b64encode(b"another writer").decode(),
        },
    )
    return stale


async def test_a_branch_that_keeps_moving_is_branch_moved_as_for_github(
    built: Backends, kit: HuggingfaceKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = build(built)
    stale = await moved_behind(kit, backend)

    async def always_stale() -> str:
        return stale

    monkeypatch.setattr(backend, "head", always_stale)
    monkeypatch.setattr(backend, "_head", None)
    with pytest.raises(errors.BranchMoved) as caught:
        await put(backend, Blob(1024))
    assert caught.value.reason == reasons.BRANCH_MOVED.name and caught.value.retryable
    assert state(kit, backend)["stats"]["stale_parents"] == commitstore.COMMIT_ATTEMPTS


async def test_a_commit_built_on_a_moved_head_is_rebuilt_on_the_new_one(
    built: Backends, kit: HuggingfaceKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    backend = build(built)
    stale = await moved_behind(kit, backend)
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
    path = f"pinsync/{layout.shard(other.cid)}/{other.cid}.car"
    kit.server.control(
        "commit",
        {"repo": f"dataset/{backend.conf.repo}", "path": path, "content": "bm90IGEgY2Fy"},
    )
    for deep in (False, True):
        with pytest.raises(errors.Damaged):
            await backend.verify_pin(other.cid, deep=deep)


async def test_no_remaining_requests_waits_for_the_window_before_any_429(
    built: Backends, kit: HuggingfaceKit
) -> None:
    """``RateLimit: "api";r=0;t=…`` on a success: the next request would be refused, so the
    backend waits for the window's reset instead of asking."""
    owner = account(kit, api=6)
    backend = build(built, repo=owner.repo, token=owner.token)
    with pytest.raises(errors.RateLimited) as caught:
        for _ in range(7):
            await backend.head()
    assert 250 < caught.value.retry_after <= 300  # the fake's 5-minute window, just begun
    used = kit.server.account_state(owner.name)
    assert (used["used"]["api"], used["refused"]) == (6, 0)


async def test_commits_per_hour_are_bounded_per_token_without_asking_the_hub(
    built: Backends, kit: HuggingfaceKit
) -> None:
    """``maxCommitsPerHour`` counts the token's commits, whichever backend made them."""
    owner = account(kit)
    one = build(built, repo=owner.repo, token=owner.token, maxCommitsPerHour=2)
    two = build(built, repo=owner.another_repo(kit), token=owner.token, maxCommitsPerHour=2)
    await put(one, Blob(1024))
    await put(two, Blob(1024))
    asked = kit.server.requests()
    for backend in (one, two):
        with pytest.raises(errors.RateLimited) as caught:
            await put(backend, Blob(1024))
        assert 3500 < caught.value.retry_after <= 3600
    assert kit.server.requests() == asked
    assert kit.server.account_state(owner.name)["commits"] == 2


async def test_the_commit_quota_429_is_known_by_its_text_and_waited_out_for_the_hour(
    built: Backends, kit: HuggingfaceKit
) -> None:
    """The Hub's commit quota answers 429 with no Retry-After and a RateLimit header that still
    has requests left: only the body says it is the commit quota."""
    owner = account(kit, commits_per_hour=2)
    backend = build(built, repo=owner.repo, token=owner.token)
    await put(backend, Blob(1024))
    await put(backend, Blob(1024))
    with pytest.raises(errors.RateLimited) as caught:
        await put(backend, Blob(1024))
    assert "commit quota" in str(caught.value)
    assert 3500 < caught.value.retry_after <= 3600  # when this process's first commit ages out
    with pytest.raises(errors.RateLimited):
        await put(backend, Blob(1024))  # refused here: no upload, no commit asked
    assert kit.server.account_state(owner.name)["refused"] == 1


async def test_a_full_private_storage_quota_is_a_capacity_reason_and_a_prune_makes_room(
    built: Backends, kit: HuggingfaceKit
) -> None:
    owner = account(kit, private_storage=12_000)
    backend = build(built, repo=owner.repo, token=owner.token)
    first, second = Blob(8192), Blob(8192)
    await put(backend, first)
    with pytest.raises(errors.StorageFull) as caught:
        await put(backend, second)
    assert caught.value.reason == reasons.QUOTA_EXCEEDED.name and caught.value.retryable
    assert "storage" in str(caught.value)
    await backend.remove_pin(first.cid)
    await put(backend, second)
    assert await pins(backend) == {second.cid: second.size}


async def test_prune_is_one_commit_and_frees_the_lfs_storage(
    built: Backends, kit: HuggingfaceKit
) -> None:
    owner = account(kit)
    backend = build(built, repo=owner.repo, token=owner.token)
    blobs = [Blob(4096) for _ in range(5)]
    await backend.put_pins([upload(blob) for blob in blobs])
    before = kit.server.state(owner.repo)
    assert before["private_usage"] == 5 * 4096
    gone = [blob.cid for blob in blobs[:3]]
    assert await backend.remove_pins([*gone, Blob(10).cid]) == [None] * 4  # absent: no error
    after = kit.server.state(owner.repo)
    assert after["stats"]["commits"] == before["stats"]["commits"] + 1
    assert after["stats"]["lfs_deleted"] == 3
    assert after["private_usage"] == 2 * 4096
    assert await pins(backend) == {blob.cid: 4096 for blob in blobs[3:]}
    assert await fetch(backend, blobs[4].cid) == blobs[4].data
    await put(backend, Blob(1024))  # the rewritten history's new head: no stale parent
    assert kit.server.state(owner.repo)["stats"]["stale_parents"] == 0


async def test_prune_keeps_the_lfs_object_another_branch_holds(
    built: Backends, kit: HuggingfaceKit
) -> None:
    """Two backends on one repository, on two revisions, holding the same pin: one prunes it,
    the other still serves it."""
    owner = account(kit)
    main = build(built, repo=owner.repo, token=owner.token)
    mirror = build(built, repo=owner.repo, token=owner.token, revision="mirror", createRepo=True)
    await mirror.health()
    blob = Blob(4096)
    await put(main, blob)
    await put(mirror, blob)
    await main.remove_pin(blob.cid)
    assert kit.server.state(owner.repo)["stats"]["lfs_deleted"] == 0
    assert await pins(main) == {}
    assert await fetch(mirror, blob.cid) == blob.data


async def test_storage_not_freed_at_a_prune_is_freed_at_the_next_unless_the_pin_is_back(
    built: Backends, kit: HuggingfaceKit, monkeypatch: pytest.MonkeyPatch
) -> None:
    owner = account(kit)
    backend = build(built, repo=owner.repo, token=owner.token)
    back, gone, later = Blob(4096), Blob(4096), Blob(4096)
    await backend.put_pins([upload(back), upload(gone), upload(later)])
    deleting = backend.api.permanently_delete_lfs_files

    def unreachable(*args: Any, **kwargs: Any) -> None:
        raise ConnectionResetError("the Hub went away")

    monkeypatch.setattr(backend.api, "permanently_delete_lfs_files", unreachable)
    assert await backend.remove_pins([back.cid, gone.cid]) == [None, None]  # removed anyway
    assert kit.server.state(owner.repo)["private_usage"] == 3 * 4096
    await put(backend, back)  # wanted again meanwhile: its object is in use once more
    monkeypatch.setattr(backend.api, "permanently_delete_lfs_files", deleting)
    await backend.remove_pin(later.cid)
    assert kit.server.state(owner.repo)["stats"]["lfs_deleted"] == 2  # gone's and later's
    assert await fetch(backend, back.cid) == back.data


async def test_the_hub_stand_in_frees_storage_only_when_lfs_objects_are_deleted_for_good(
    kit: HuggingfaceKit,
) -> None:
    owner = account(kit)
    api = huggingface_hub.HfApi(endpoint=kit.server.endpoint, token=owner.token)
    api.upload_file(
        path_or_fileobj=b"\0" * 5000, path_in_repo="a.bin", repo_id=owner.repo, repo_type="dataset"
    )
    api.delete_file("a.bin", repo_id=owner.repo, repo_type="dataset")
    assert kit.server.state(owner.repo)["private_usage"] == 5000  # the pointer only
    listed = list(api.list_lfs_files(owner.repo, repo_type="dataset"))
    assert [(f.filename, f.size) for f in listed] == [("a.bin", 5000)]
    api.permanently_delete_lfs_files(owner.repo, listed, repo_type="dataset")
    assert kit.server.state(owner.repo)["private_usage"] == 0
    assert list(api.list_lfs_files(owner.repo, repo_type="dataset")) == []


async def test_a_large_car_goes_through_the_multipart_lfs_transfer(
    built: Backends, kit: HuggingfaceKit
) -> None:
    backend = build(built)
    blob = Blob(11 * 1024 * 1024)  # over the fake's 5 MiB part size: three parts
    await put(backend, blob)
    assert state(kit, backend)["stats"]["multipart_uploads"] == 1
    assert (await backend.verify_pin(blob.cid, deep=True)).sha256 == blob.sha256


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


async def test_the_library_client_carries_timeouts_and_the_quota_hook() -> None:
    client = huggingface.huggingface_hub.get_session()
    assert huggingface._observe in client.event_hooks["response"]
    assert client.timeout.connect == huggingface.CONNECT_TIMEOUT


def limited(headers: dict[str, str], body: str = "", path: str = "/api/x") -> float:
    token = f"hf_{uuid.uuid4().hex}"
    found = huggingface.rate_limit(429, headers, path, token, body)
    assert found is not None
    return found.retry_after


async def test_a_429_waits_for_the_ratelimit_reset_else_retry_after_else_the_default() -> None:
    assert limited({"RateLimit": '"api";r=0;t=55', "RateLimit-Policy": "q=1000;w=300"}) == 55
    assert limited({"ratelimit": '"api";r=0;t=55', "Retry-After": "9"}) == 55  # the library's
    assert limited({"RateLimit": '"api";r=3;t=55', "Retry-After": "9"}) == 9
    when = time.time() + 90
    date = datetime.datetime.fromtimestamp(when, datetime.UTC).strftime("%a, %d %b %Y %H:%M:%S GMT")
    assert 85 <= limited({"Retry-After": date}) <= 90
    assert limited({}) == huggingface.DEFAULT_RETRY_AFTER


async def test_the_commit_quota_is_read_from_the_text_and_its_count_kept_for_the_token() -> None:
    token = f"hf_{uuid.uuid4().hex}"
    said = "You have exceeded the rate limit of 128 commits per hour"
    found = huggingface.rate_limit(429, {"RateLimit": '"api";r=900;t=200'}, "/c", token, said)
    assert found is not None and found.retry_after == huggingface.COMMIT_QUOTA_WAIT
    budget = huggingface.budget(token)
    assert budget.hub_commits_per_hour == 128 and budget.wait("api") == 0
    other = "You have exceeded our hourly quotas for action: commit. We invite you to retry later."
    assert limited({}, other) == huggingface.COMMIT_QUOTA_WAIT


async def test_quotas_are_kept_per_token_under_a_hash_that_never_shows_the_token() -> None:
    token = f"hf_{uuid.uuid4().hex}"
    budget = huggingface.budget(token)
    assert huggingface.budget(token) is budget
    assert huggingface.budget(token + "x") is not budget
    assert token not in repr(budget) and token[3:] not in budget.key


async def test_a_429_under_the_librarys_wrapping_of_an_lfs_upload_is_rate_limited(
    built: Backends,
) -> None:
    backend = build(built)
    try:
        try:
            raise huggingface.HubRateLimited(30, "the api rate limit is reached")
        except huggingface.HubRateLimited as exc:
            raise RuntimeError("Error while uploading 'x' to the Hub.") from exc
    except RuntimeError as wrapped:
        translated = backend.translate(wrapped, "upload")
    assert isinstance(translated, errors.RateLimited) and translated.retry_after == 30


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
        the token may write; created if missing, private), deleted afterwards. Removing the pin
        deletes its LFS object for good, which rewrites the repository's history: use a
        repository kept for this test."""
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
            stored = huggingface_hub.HfApi(token=LIVE_TOKEN).list_lfs_files(
                LIVE_REPO, repo_type="dataset"
            )
            assert blob.sha256 not in {f.file_oid for f in stored}  # its storage given back
        finally:
            api = huggingface_hub.HfApi(token=LIVE_TOKEN)
            with contextlib.suppress(Exception):
                api.delete_branch(LIVE_REPO, branch=revision, repo_type="dataset")
