"""What every reconciler needs, built once at operator start-up."""

from __future__ import annotations

import dataclasses
from typing import Any

from pinsync import conditions, kube, settings, wakeups


@dataclasses.dataclass(kw_only=True)
class Context:
    api: kube.Api
    settings: settings.Settings
    wakeups: wakeups.Wakeups = dataclasses.field(default_factory=wakeups.Wakeups)

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
            await self.api.patch_status(plural, meta["namespace"], meta["name"], patch)
        return {**status, **patch}
