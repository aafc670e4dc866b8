"""What every reconciler needs, built once at operator start-up."""

from __future__ import annotations

import dataclasses
from typing import Any

from pinsync import conditions, kube, settings
from pinsync.wakeups import Echoes, Wakeups


@dataclasses.dataclass(kw_only=True)
class Context:
    api: kube.Api
    settings: settings.Settings
    wakeups: Wakeups = dataclasses.field(default_factory=Wakeups)
    echoes: Echoes = dataclasses.field(default_factory=Echoes)

    async def write_status(
        self,
        plural: str,
        obj: dict[str, Any],
        updates: list[conditions.Condition],
        **fields: Any,
    ) -> dict[str, Any]:
        """Merge condition updates and fields into the status, writing only what changed.

        Returns the status as it now is, so callers can chain decisions on it.
        """
        meta, status = obj["metadata"], obj.get("status") or {}
        generation = meta.get("generation")
        desired = {
            "observedGeneration": generation,
            "conditions": conditions.merge(
                status.get("conditions"), updates, generation=generation
            ),
            **fields,
        }
        patch = conditions.changes(status, desired)
        if patch:
            written = await self.api.patch_status(plural, meta["namespace"], meta["name"], patch)
            if written is not None:
                key = (plural, meta["namespace"], meta["name"])
                self.echoes.record(key, written["metadata"].get("resourceVersion"))
        return {**status, **patch}
