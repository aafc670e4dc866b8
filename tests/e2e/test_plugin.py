"""``kubectl pinsync`` through the real kubectl, against the real API server and operator.

kubectl finds the plugin as ``kubectl-pinsync`` on PATH. The package is not installed from this
checkout (an editable install would repoint the shared interpreter), so a shim written per test
stands in for the console script: the same entry point, run by the same interpreter.
"""

from __future__ import annotations

import json
import os
import pathlib
import pty
import subprocess
import sys
import time
from typing import Any

import kubernetes
import pytest
import yaml

from pinsync.devenv import controlplane
from tests.e2e.conftest import World
from tests.e2e.test_cost import unfetchable
from tests.kubetools import eventually

pytestmark = pytest.mark.e2e

UNREACHABLE = {"endpoint": "http://127.0.0.1:9", "bucket": "nowhere", "forcePathStyle": True}


class Plugin:
    def __init__(self, world: World, bindir: pathlib.Path) -> None:
        self.world = world
        shim = bindir / "kubectl-pinsync"
        shim.write_text(
            f"#!{sys.executable}\nimport sys\nfrom pinsync.cli import main\nsys.exit(main())\n"
        )
        shim.chmod(0o755)
        self.env = {**os.environ, "PATH": f"{bindir}{os.pathsep}{os.environ['PATH']}"}
        self.kubeconfig = world.operator.kubeconfig

    def argv(self, args: tuple[str, ...], namespaced: bool) -> list[str]:
        where = ["-n", self.world.namespace] if namespaced else []
        return ["kubectl", "pinsync", *args, f"--kubeconfig={self.kubeconfig}", *where]

    def __call__(
        self, *args: str, code: int = 0, namespaced: bool = True, timeout: float = 180
    ) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            self.argv(args, namespaced),
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            stdin=subprocess.DEVNULL,
        )
        assert done.returncode == code, (done.returncode, done.stdout, done.stderr)
        return done

    def json(self, *args: str, code: int = 0) -> Any:
        return json.loads(self(*args, "-o", "json", code=code).stdout)

    def on_a_terminal(self, *args: str) -> tuple[int, str]:
        """Run with stdout and stderr on a pseudo-terminal, as in an interactive shell."""
        controller, terminal = pty.openpty()
        env = {**self.env, "TERM": "xterm-256color", "COLUMNS": "160"}
        running = subprocess.Popen(
            self.argv(args, True),
            env=env,
            stdout=terminal,
            stderr=terminal,
            stdin=subprocess.DEVNULL,
        )
        os.close(terminal)
        chunks = []
        while True:
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the program exited and the terminal closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        os.close(controller)
        return running.wait(timeout=60), b"".join(chunks).decode(errors="replace")

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            self.argv(args, True),
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            stdin=subprocess.DEVNULL,
        )


@pytest.fixture
def plugin(world: World, tmp_path: pathlib.Path) -> Plugin:
    return Plugin(world, tmp_path)


def unreachable(world: World, name: str = "down") -> None:
    """A backend that stays dirty: valid, but its server never answers."""
    world.backends.create(
        name, {"type": "s3", "s3": UNREACHABLE, "credentialsSecretRef": {"name": "minio"}}
    )
    world.backends.wait_condition(name, "Healthy", "False", "Unreachable")


def lines(text: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines()]


def test_status_shows_backends_and_pinsets_as_a_table_json_and_yaml(
    world: World, plugin: Plugin, tmp_path: pathlib.Path
) -> None:
    world.backend()
    cids = world.add(2, 3000)
    world.pinsets.create("media", {"cids": cids, "backends": ["minio"]})
    world.wait_synced(present=2)
    world.pinsets.wait_condition("media", "Ready", "True")

    shown = plugin("status").stdout
    table = lines(shown)
    assert table[0] == ["#", "StorageBackends"]
    assert table[1][:4] == ["NAME", "TYPE", "READY", "HEALTH"]
    minio = next(row for row in table if row[0] == "minio")
    assert minio[1:4] == ["s3", "True", "Reachable"] and minio[4].endswith("ms")
    assert "2/2" in minio and "Succeeded" in minio
    media = next(row for row in table if row[0] == "media")
    assert media[1:5] == ["2", "1/1", "0", "True"]

    # Usage is measured by the audit after the sync.
    eventually(lambda: (world.status().get("usage") or {}).get("objects") == 4)
    data = plugin.json("status")
    (backend,) = data["backends"]
    assert backend["pins"] == {"present": 2, "desired": 2, "missing": 0, "failed": 0}
    assert backend["health"]["healthy"] is True and backend["health"]["latencyMs"] > 0
    assert backend["lastSync"]["result"] == "Succeeded" and backend["usage"]["objects"] == 4
    assert data["pinsets"][0]["synced"] == "1/1"
    named = yaml.safe_load(plugin("status", "minio", "-o", "yaml").stdout)
    assert [b["name"] for b in named["backends"]] == ["minio"]
    assert named["backends"][0]["pins"] == backend["pins"]
    assert [p["name"] for p in named["pinsets"]] == ["media"]

    missing = plugin("status", "nosuch", code=1)
    assert 'storagebackend "nosuch" not found' in missing.stderr

    # -A: every namespace, with a NAMESPACE column; --context: the context's namespace.
    everywhere = lines(plugin("status", "-A", namespaced=False).stdout)
    assert everywhere[1][0] == "NAMESPACE"
    assert [world.namespace, "minio"] in [row[:2] for row in everywhere]
    config = yaml.safe_load(pathlib.Path(plugin.kubeconfig).read_text())
    context = dict(config["contexts"][0])
    config["contexts"].append(
        {"name": "media", "context": {**context["context"], "namespace": world.namespace}}
    )
    other = tmp_path / "kubeconfig"
    other.write_text(yaml.safe_dump(config))
    plugin.kubeconfig = other
    in_context = plugin("status", "--context", "media", "-o", "json", namespaced=False)
    assert json.loads(in_context.stdout)["backends"][0]["namespace"] == world.namespace


def test_status_watch_prints_rows_as_they_change(world: World, plugin: Plugin) -> None:
    unreachable(world)
    watching = plugin.popen("status", "-w")
    try:
        assert watching.stdout is not None
        first = [watching.stdout.readline() for _ in range(3)]
        assert first[0].startswith("# StorageBackends") and first[2].startswith("down")
        annotation = {"pinsync.io/mark-dirty": "watch me"}
        world.backends.patch("down", {"metadata": {"annotations": annotation}})
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = watching.stdout.readline()
            if line.split()[1:3] == ["storagebackend", "down"] and "requested: watch me" in line:
                break
        else:
            pytest.fail("no changed row printed")
    finally:
        watching.terminate()
        watching.wait(timeout=10)


def test_mark_dirty_by_name_selector_or_all_and_dirty_lists_only_dirty_ones(
    world: World, plugin: Plugin
) -> None:
    world.backend()
    world.backends.patch("minio", {"metadata": {"labels": {"tier": "archive"}}})
    unreachable(world)
    world.wait_synced()
    before = world.status("down")["dirty"]["token"]

    marked = plugin("mark-dirty", "down", "--reason", "disk swap").stdout
    assert marked.strip() == "storagebackend/down marked dirty: disk swap"
    eventually(lambda: world.status("down").get("lastHandledMarkDirty") == "disk swap")
    # The same reason again is a new request (the operator acts on new values only).
    again = plugin("mark-dirty", "down", "--reason", "disk swap").stdout
    assert again.startswith("storagebackend/down marked dirty: disk swap (")
    eventually(lambda: world.status("down")["dirty"]["token"] == before + 2)

    table = plugin("dirty").stdout.splitlines()
    assert table[0].split() == ["NAME", "SINCE", "TOKEN", "FULL", "REASONS"]
    assert [row.split()[0] for row in table[1:]] == ["down"]
    assert "requested: disk swap (" in table[1] and "; requested: disk swap;" in table[1]
    (listed,) = plugin.json("dirty")
    assert listed["name"] == "down" and listed["dirty"]["reasons"][1] == "requested: disk swap"

    token = world.status()["dirty"]["token"]
    assert (
        "minio marked dirty" in plugin("mark-dirty", "-l", "tier=archive", "--reason", "x").stdout
    )
    eventually(lambda: world.status().get("lastHandledMarkDirty") == "x")
    assert world.wait_synced()["dirty"]["token"] == token + 1
    assert len(plugin("mark-dirty", "--all", "--reason", "all").stdout.splitlines()) == 2

    assert "--all or -l" in plugin("mark-dirty", "--reason", "r", code=2).stderr
    assert '"nosuch" not found' in plugin("mark-dirty", "nosuch", "--reason", "r", code=1).stderr
    assert "--reason" in plugin("mark-dirty", "down", code=2).stderr


def test_sync_wait_follows_a_sync_to_ready_and_a_full_sync_repairs(
    world: World, plugin: Plugin
) -> None:
    world.backend()
    world.wait_synced()
    cids = world.add(3, 200_000)
    world.pinsets.create("media", {"cids": cids, "backends": ["minio"]})
    world.wait_synced(present=3)
    token = world.status()["dirty"]["token"]

    done = plugin("sync", "minio", "--wait")
    assert done.stdout.splitlines()[0] == "storagebackend/minio: sync requested"
    assert done.stdout.splitlines()[-1].startswith("storagebackend/minio: done (3/3 pins")
    status = world.status()
    assert status["lastSync"]["token"] > token and not status["dirty"]["dirty"]
    assert status["lastHandledMarkDirty"].startswith("sync at ")

    key = f"pins/{cids[0]}.car"
    world.bucket.write(key, world.bucket.read(key)[:100])  # listed, but truncated
    full = plugin("sync", "--all", "--full", "--wait", "--timeout", "2m")
    assert "full sync requested" in full.stdout and "done" in full.stdout.splitlines()[-1]
    assert world.status()["lastSync"]["uploaded"] == 1
    world.assert_objects_match_kubo(cids)


def test_on_a_terminal_tables_and_progress_bars_are_drawn(world: World, plugin: Plugin) -> None:
    world.backend()
    world.pinsets.create("media", {"cids": world.add(2, 1000), "backends": ["minio"]})
    world.wait_synced(present=2)
    code, shown = plugin.on_a_terminal("status")
    assert code == 0 and "─" * 20 in shown and "# StorageBackends" not in shown
    assert "StorageBackends" in shown and "Reachable" in shown
    code, shown = plugin.on_a_terminal("sync", "minio", "--wait")
    assert code == 0 and "━" in shown and "2/2 pins" in shown
    assert "done" in shown and "storagebackend/minio: done" not in shown  # a bar, not lines


def test_sync_wait_exits_non_zero_naming_failures_stalls_and_timeouts(
    world: World, plugin: Plugin
) -> None:
    world.backend()
    lost = unfetchable(1)
    world.pinsets.create(
        "lost", {"cids": lost, "backends": ["minio"], "ipfs": {"pinTimeout": "500ms"}}
    )
    eventually(lambda: world.status().get("failures"), timeout=60)
    failed = plugin("sync", "minio", "--wait", code=1)
    assert (
        f"error: storagebackend/minio: sync failed: 1 pin(s) failed ({lost[0]}: " in failed.stderr
    )

    world.backends.create(
        "nosecret", {"type": "s3", "s3": UNREACHABLE, "credentialsSecretRef": {"name": "absent"}}
    )
    world.backends.wait_condition("nosecret", "Stalled", "True", "SecretNotFound")
    stalled = plugin("sync", "nosecret", "--wait", "-o", "json", code=1)
    assert "storagebackend/nosecret: Stalled: SecretNotFound: " in stalled.stderr
    (record,) = json.loads(stalled.stdout)
    assert record["annotation"] == "pinsync.io/mark-dirty" and record["result"] == "Failed"
    assert record["message"].startswith("Stalled: SecretNotFound: ")

    unreachable(world)
    late = plugin("sync", "down", "--wait", "--timeout", "3s", code=3)
    assert (
        "storagebackend/down: timed out after 3s: unhealthy, retrying: Unreachable" in late.stderr
    )


def test_health_asks_for_a_check_now_and_prints_latency(world: World, plugin: Plugin) -> None:
    world.backend()
    world.wait_synced()
    checked = world.status()["lastHealthCheck"]
    time.sleep(1)  # status times have whole seconds: a new check must show a later one

    table = lines(plugin("health", "minio", "--wait").stdout)
    assert table[0] == ["NAME", "HEALTHY", "REASON", "LATENCY", "CHECKED", "MESSAGE"]
    assert table[1][:3] == ["minio", "True", "Reachable"] and table[1][3].endswith("ms")
    status = world.status()
    assert (
        status["lastHandledHealthRequest"]
        == world.backends.get("minio")["metadata"]["annotations"]["pinsync.io/health-requested-at"]
    )
    assert status["lastHealthCheck"]["finishedAt"] > checked["finishedAt"]
    assert 0 < status["lastHealthCheck"]["latencyMs"] < 10_000

    unreachable(world)
    down = plugin("health", "down", "--wait", code=1)
    assert "error: storagebackend/down: unhealthy: Unreachable: " in down.stderr
    assert lines(down.stdout)[1][:3] == ["down", "False", "Unreachable"]
    # Both at once (polled with one list): each result, and the exit status of the worse.
    both = plugin.json("health", "--all", "--wait", code=1)
    assert [(s["name"], s["health"]["healthy"]) for s in both] == [("down", False), ("minio", True)]
    assert all(s["health"]["latencyMs"] > 0 for s in both)
    requested = plugin("health", "--all").stdout
    assert requested.startswith("health check requested; the last results:")
    assert "--all or -l" in plugin("health", code=2).stderr


def restore_contract(world: World) -> bool:
    """Whether the operator under test implements restore (its PinSet status has the field)."""
    crd = kubernetes.client.ApiextensionsV1Api(world.k8s).read_custom_resource_definition(
        "pinsets.pinsync.io"
    )
    status = crd.spec.versions[0].schema.open_apiv3_schema.properties["status"]
    return "restoreRequestedAt" in (status.properties or {})


def test_restore_brings_back_pins_the_node_lost(world: World, plugin: Plugin) -> None:
    if not restore_contract(world):
        pytest.skip("the operator does not echo status.restoreRequestedAt (restore not merged)")
    world.backend()
    cids = world.add(2, 50_000)
    world.pinsets.create("media", {"cids": cids, "backends": ["minio"]})
    world.wait_synced(present=2)
    cars = {cid: world.ipfs.export_car(cid) for cid in cids}
    for cid in cids:
        world.ipfs.ipfs("pin", "rm", cid)
    world.ipfs.ipfs("repo", "gc")

    done = plugin("restore", "media", "--wait", "--timeout", "3m")
    assert "pinset/media: restore requested" in done.stdout
    assert "pinset/media: done" in done.stdout.splitlines()[-1]
    status = world.pinsets.get("media")["status"]
    assert status["restoreRequestedAt"] and status["counts"]["restored"] == 2
    assert {cid: world.ipfs.export_car(cid) for cid in cids} == cars


def test_a_user_without_rights_is_told_what_the_api_server_refused(
    world: World, plugin: Plugin, tmp_path: pathlib.Path
) -> None:
    world.backend()
    core = kubernetes.client.CoreV1Api(world.k8s)
    core.create_namespaced_service_account(world.namespace, {"metadata": {"name": "nobody"}})
    admin = pathlib.Path(plugin.kubeconfig)
    token = controlplane.kubectl(admin, "create", "token", "nobody", "-n", world.namespace)
    config = yaml.safe_load(admin.read_text())
    config["users"] = [{"name": config["users"][0]["name"], "user": {"token": token.strip()}}]
    plugin.kubeconfig = tmp_path / "nobody"
    plugin.kubeconfig.write_text(yaml.safe_dump(config))

    refused = plugin("status", code=1).stderr
    assert refused.startswith("error: the API server answered 403: storagebackends.pinsync.io is")
    assert "forbidden" in refused and f"system:serviceaccount:{world.namespace}:nobody" in refused
    assert "403" in plugin("mark-dirty", "minio", "--reason", "r", code=1).stderr
    assert "pinsync.io/mark-dirty" not in (
        world.backends.get("minio")["metadata"].get("annotations") or {}
    )
