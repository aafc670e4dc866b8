"""``make demo`` stays true: the demo runs end to end on its own servers and prints the table."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytestmark = pytest.mark.e2e


def test_demo_reaches_ready_and_prints_the_status_table() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "pinsync.devenv.demo", "--once"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "storagebackend.pinsync.io/minio   s3     True      True    false   4" in done.stdout
    assert "pinset.pinsync.io/demo   1          4      1/1      True" in done.stdout
    assert done.stdout.count(".car") == 4 and "tearing down" in done.stdout
