"""The rules that decide when a backend becomes dirty, without Kubernetes."""

from __future__ import annotations

from typing import Any

from pinsync.reconciling import backends, sources

SOURCE = sources.Source(name="media", api_url="http://ipfs", pins=("bafkqaaa",))


def obj(
    status: dict[str, Any] | None = None, generation: int = 1, **annotations: str
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": "b",
            "namespace": "ns",
            "generation": generation,
            "annotations": annotations,
        },
        "status": status or {},
    }


def verdict(version: str = "7") -> backends.Verdict:
    return backends.Verdict([], credentials_version=version)


def marked(generation: int = 1, version: str = "7", **digests: str) -> dict[str, Any]:
    return {"marked": {"generation": generation, "credentialsVersion": version, "sources": digests}}


def test_a_new_backend_is_marked_created() -> None:
    reasons, record = backends.level_marks(obj(), verdict(), [SOURCE], on_start=False)
    assert reasons == ["created"]
    assert record["sources"] == {"media": SOURCE.digest}


def test_nothing_changed_marks_nothing() -> None:
    status = marked(media=SOURCE.digest)
    assert backends.level_marks(obj(status), verdict(), [SOURCE], on_start=False)[0] == []


def test_spec_secret_and_pinset_changes_each_mark_with_a_reason() -> None:
    status = marked(media="old", gone="x")
    reasons, _ = backends.level_marks(
        obj(status, generation=2), verdict("8"), [SOURCE], on_start=True
    )
    assert reasons == [
        "spec changed (generation 2)",
        "credentials Secret changed",
        "PinSet media changed",
        "PinSet gone no longer targets this backend",
        "operator started (markDirtyOnStartup)",
    ]


def test_a_mark_dirty_annotation_is_handled_once_and_echoed() -> None:
    fields = backends.annotation_marks(obj(None, **{backends.MARK_DIRTY: "disk swap"}))
    assert fields is not None and fields["lastHandledMarkDirty"] == "disk swap"
    assert fields["dirty"]["dirty"] and fields["dirty"]["reasons"] == ["requested: disk swap"]
    handled = obj({"lastHandledMarkDirty": "disk swap"}, **{backends.MARK_DIRTY: "disk swap"})
    assert backends.annotation_marks(handled) is None


def test_a_sync_request_asks_for_a_full_sync() -> None:
    fields = backends.annotation_marks(
        obj(None, **{backends.SYNC_REQUESTED_AT: "2026-11-24T00:00:00Z"})
    )
    assert fields is not None and fields["dirty"]["full"] is True
    assert fields["lastHandledSyncRequest"] == "2026-11-24T00:00:00Z"
