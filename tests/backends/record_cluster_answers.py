"""Records the answers of a real two-peer IPFS Cluster that ``tests/unit/test_clusterpins.py``
replays: ``python -m tests.backends.record_cluster_answers [OUT]`` (default
``tests/unit/data/cluster_answers.json``).

The cluster is :func:`pinsync.devenv.cluster.two_peers` (``ipfs-cluster-service`` v1.1.6, CRDT,
basic auth on), holding four pins: ``media/a`` allocated to peer-0 only, ``media/b`` to peer-1
only (more metadata), ``archive/c`` on both, and ``media/nowhere``, whose content no node has
(``pinning`` on both). Recorded, as status and body text: ``GET /pins``, ``/pins?filter=pinned``,
``/peers``, ``/allocations``, ``/pins`` with a wrong password; then ``/pins`` once peer-1's
Kubo is stopped, and ``/pins`` and ``/allocations`` once both Kubos are.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import sys
import tempfile
from typing import Any

import httpx
from multiformats import CID, multihash

from pinsync.devenv import cluster

DEFAULT_OUT = pathlib.Path(__file__).resolve().parents[1] / "unit/data/cluster_answers.json"


def record(peer: cluster.IpfsCluster, path: str, **kwargs: Any) -> dict[str, Any]:
    kwargs.setdefault("auth", peer.auth)
    response = httpx.get(f"{peer.api_url}{path}", timeout=60, **kwargs)
    return {"request": f"GET {path}", "status": response.status_code, "body": response.text}


def pin_examples(first: cluster.Member, second: cluster.Member) -> dict[str, str]:
    """Pins the four example pins of the module docstring through ``first``'s REST API and
    waits until the three that can be fetched are pinned where allocated; {name: CID}."""
    ids = [first.peer.peer_id, second.peer.peer_id]
    cids = {
        "media/a": first.kubo.add(b"recorded: media/a", pin=False),
        "media/b": second.kubo.add(b"recorded: media/b", pin=False),
        "archive/c": first.kubo.add(b"recorded: archive/c", pin=False),
        "media/nowhere": str(CID("base32", 1, "raw", multihash.digest(os.urandom(32), "sha2-256"))),
    }
    one = {"replication-min": "1", "replication-max": "1"}
    media = {"meta-team": "media"}
    first.peer.pin(cids["media/a"], name="media/a", **media, **one, **{"user-allocations": ids[0]})
    hot = {"meta-tier": "hot", "user-allocations": ids[1]}
    first.peer.pin(cids["media/b"], name="media/b", **media, **one, **hot)
    first.peer.pin(cids["archive/c"], name="archive/c")
    first.peer.pin(cids["media/nowhere"], name="media/nowhere", **media)
    first.peer.wait_for_statuses(
        {
            cids["media/a"]: {"peer-0": "pinned", "peer-1": "remote"},
            cids["media/b"]: {"peer-0": "remote", "peer-1": "pinned"},
            cids["archive/c"]: {"peer-0": "pinned", "peer-1": "pinned"},
        }
    )
    return cids


def main(out: pathlib.Path) -> None:
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="pinsync-record-cluster-"))
    with cluster.two_peers(workdir) as (first, second):
        ids = [first.peer.peer_id, second.peer.peer_id]
        cids = pin_examples(first, second)
        answers = {
            "pins": record(first.peer, "/pins"),
            "pins_filter_pinned": record(first.peer, "/pins?filter=pinned"),
            "peers": record(first.peer, "/peers"),
            "allocations": record(first.peer, "/allocations"),
            "pins_wrong_password": record(first.peer, "/pins", auth=("pinsync", "wrong-password")),
        }
        second.kubo.stop()
        answers["pins_one_kubo_down"] = record(first.peer, "/pins")
        first.kubo.stop()
        answers["pins_all_kubos_down"] = record(first.peer, "/pins")
        answers["allocations_all_kubos_down"] = record(first.peer, "/allocations")
    recorded = {
        "source": "ipfs-cluster-service v1.1.6, two CRDT peers (peer-0, peer-1), each in front "
        "of its own Kubo 0.39: tests/backends/record_cluster_answers.py",
        "peers": {"peer-0": ids[0], "peer-1": ids[1]},
        "cids": cids,
        "answers": answers,
    }
    shutil.rmtree(workdir, ignore_errors=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(recorded, indent=1) + "\n")
    print(f"recorded {len(answers)} answers into {out}")


if __name__ == "__main__":
    main(pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_OUT)
