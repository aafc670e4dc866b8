"""kopf state storage sized for big PinSets.

kopf keeps the last handled spec in an annotation by default. A PinSet with 20,000 inline CIDs
has a ~1.2 MB spec, far over the 256 KiB limit for all annotations of an object (and storing it in
status instead would double the object past etcd's 1.5 MiB request limit). Our loops are
level-based and never need a field-level diff of ``spec.cids``, so the stored essence keeps a
digest and a count of each long list instead of the list itself: change detection still works,
and the annotation stays a few hundred bytes.

Today every handler is a daemon, an event handler or an index, for which kopf keeps no diff-base
at all; this configuration is what keeps a future create/update handler from breaking big
PinSets. The finalizer and progress annotations get the ``pinsync.io`` prefix either way.
"""

from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Iterable
from typing import Any

import kopf

PREFIX = "pinsync.io"
LONG_LIST = 64
"""Lists longer than this are stored as a digest."""


def digest_long_lists(value: Any) -> Any:
    if isinstance(value, list):
        if len(value) > LONG_LIST:
            blob = json.dumps(value, sort_keys=True).encode()
            return {"sha256": hashlib.sha256(blob).hexdigest(), "count": len(value)}
        return [digest_long_lists(v) for v in value]
    if isinstance(value, dict):
        return {k: digest_long_lists(v) for k, v in value.items()}
    return value


class CompactDiffBaseStorage(kopf.AnnotationsDiffBaseStorage):  # type: ignore[misc]
    """kopf's annotation diff-base, with long lists replaced by their digest."""

    def build(
        self, *, body: kopf.Body, extra_fields: Iterable[Any] | None = None
    ) -> kopf.BodyEssence:
        essence = super().build(body=body, extra_fields=extra_fields)
        compact: kopf.BodyEssence = digest_long_lists(copy.deepcopy(dict(essence)))
        return compact


def configure(settings: kopf.OperatorSettings) -> None:
    settings.persistence.finalizer = f"{PREFIX}/finalizer"
    settings.persistence.progress_storage = kopf.AnnotationsProgressStorage(prefix=PREFIX)
    settings.persistence.diffbase_storage = CompactDiffBaseStorage(
        prefix=PREFIX, key="last-handled-configuration"
    )
