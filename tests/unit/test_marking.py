"""The rules that decide when a backend becomes dirty, without Kubernetes."""

from __future__ import annotations

from typing import Any

from pinsync import conditions, dirty, status
from pinsync.reconciling import marking, sources

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


def marked(generation: int = 1, version: str = "7", **digests: str) -> dict[str, Any]:
    return {"marked": {"generation": generation, "credentialsVersion": version, "sources": digests}}


def test_a_new_backend_is_marked_created() -> None:
    reasons, record = marking.level_marks(obj(), "7", [SOURCE], on_start=False)
    assert reasons == ["created"]
    assert record["sources"] == {"media": SOURCE.digest}


def test_nothing_changed_marks_nothing() -> None:
    status = marked(media=SOURCE.digest)
    assert marking.level_marks(obj(status), "7", [SOURCE], on_start=False)[0] == []


def test_spec_secret_and_pinset_changes_each_mark_with_a_reason() -> None:
    status = marked(media="old", gone="x")
    reasons, _ = marking.level_marks(obj(status, generation=2), "8", [SOURCE], on_start=True)
    assert reasons == [
        "spec changed (generation 2)",
        "credentials Secret changed",
        "PinSet media changed",
        "PinSet gone no longer targets this backend",
        "operator started (markDirtyOnStartup)",
    ]


def test_a_mark_dirty_annotation_is_handled_once_and_echoed() -> None:
    fields = marking.annotation_marks(obj(None, **{status.MARK_DIRTY: "disk swap"}))
    assert fields is not None and fields["lastHandledMarkDirty"] == "disk swap"
    assert fields["dirty"]["dirty"] and fields["dirty"]["reasons"] == ["requested: disk swap"]
    handled = obj({"lastHandledMarkDirty": "disk swap"}, **{status.MARK_DIRTY: "disk swap"})
    assert marking.annotation_marks(handled) is None


def test_a_sync_request_asks_for_a_full_sync() -> None:
    fields = marking.annotation_marks(
        obj(None, **{status.SYNC_REQUESTED_AT: "2026-11-24T00:00:00Z"})
    )
    assert fields is not None and fields["dirty"]["full"] is True
    assert fields["lastHandledSyncRequest"] == "2026-11-24T00:00:00Z"


def merge_patch(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386, as the API server applies status patches: null removes, absent keeps."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge_patch(out[key], value)
        else:
            out[key] = value
    return out


def test_a_deleted_pinset_is_forgotten_once_it_has_marked_the_backend() -> None:
    status = marked(media=SOURCE.digest, gone="x")
    reasons, record = marking.level_marks(obj(status), "7", [SOURCE], on_start=False)
    assert reasons == ["PinSet gone no longer targets this backend"]
    after = merge_patch(status, {"marked": record})
    assert after["marked"]["sources"] == {"media": SOURCE.digest}
    assert marking.level_marks(obj(after), "7", [SOURCE], on_start=False)[0] == []


def test_a_mark_and_its_synced_condition_are_one_write() -> None:
    fields = marking.marked(obj({}), ["PinSet media changed"])
    assert fields["dirty"]["dirty"] is True
    synced = conditions.find(fields["conditions"], "Synced")
    assert synced is not None and synced["status"] == "False" and synced["reason"] == "Dirty"
    state = marking.state_of({"status": fields})
    cleared = marking.dirty_fields(obj(fields), dirty.clear(state, state.token), "ok")
    assert cleared["dirty"]["dirty"] is False
    assert conditions.find(cleared["conditions"], "Synced")["status"] == "True"  # type: ignore[index]
