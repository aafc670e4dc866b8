"""Prometheus metrics (``pinsync run --metrics-port``), for dashboards and alerts.

Status conditions say how each object is now; these say how much and how fast over time. Labels
stay low-cardinality: namespace/backend names, never CIDs.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

BYTES_UPLOADED = Counter(
    "pinsync_uploaded_bytes_total",
    "Bytes of CAR content written to backends",
    ["namespace", "backend"],
)
PINS_UPLOADED = Counter(
    "pinsync_uploaded_pins_total", "Pins written to backends and verified", ["namespace", "backend"]
)
PIN_FAILURES = Counter(
    "pinsync_pin_failures_total",
    "Failed pin transfers by reason",
    ["namespace", "backend", "reason"],
)
SYNCS = Counter(
    "pinsync_syncs_total", "Finished sync passes by result", ["namespace", "backend", "result"]
)
DIRTY = Gauge(
    "pinsync_backend_dirty", "1 while a backend is marked dirty", ["namespace", "backend"]
)
MISSING = Gauge(
    "pinsync_backend_missing_pins", "Desired pins not on the backend", ["namespace", "backend"]
)
PINS_RESTORED = Counter(
    "pinsync_restored_pins_total",
    "Pins the node had lost, restored from a backend and pinned again",
    ["namespace", "backend"],
)
BYTES_RESTORED = Counter(
    "pinsync_restored_bytes_total",
    "Bytes of CAR content read back from backends to restore lost pins",
    ["namespace", "backend"],
)
RESTORE_FAILURES = Counter(
    "pinsync_restore_failures_total",
    "Restores of a lost pin that failed on every usable backend, by reason",
    ["namespace", "reason"],
)


def forget_backend(namespace: str, backend: str) -> None:
    """Stop exporting a backend's gauges (its loop ended: deleted, or this replica paused)."""
    for gauge in (DIRTY, MISSING):
        gauge.remove(namespace, backend)
