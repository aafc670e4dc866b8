"""What a real node changes on its host, recorded before it starts and put back after it stops.

kubelet, kube-proxy, containerd and the CNI plugins write outside any directory they are given:
sysctls, iptables chains, a bridge, cgroups, a few fixed paths (``/var/lib/cni``,
``/var/log/containers``, ``/run/containerd/s`` for shim sockets). :class:`HostState` is a
snapshot of exactly those (JSON, so a later run can restore it after a crash);
:meth:`HostState.restore` undoes what differs and :meth:`HostState.leftovers` says what still
does.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import re
import shutil
import subprocess
from typing import Any

SYSCTLS = [
    "net/ipv4/ip_forward",  # set by us: Pods route through the host
    "net/ipv4/conf/all/route_localnet",  # kube-proxy, for NodePorts on 127.0.0.1
    "net/bridge/bridge-nf-call-iptables",  # set by us: Service replies between Pods on the bridge
    "net/bridge/bridge-nf-call-ip6tables",
    "kernel/panic",  # kubelet's "kernel defaults"
    "kernel/panic_on_oops",
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
]
# Paths the node's programs create whatever their flags say.
PATHS = [
    "/var/lib/cni",
    "/var/log/containers",
    "/var/log/pods",
    "/var/lib/kubelet",
    "/run/containerd",
    "/var/lib/containerd",
    "/opt/containerd",
    "/etc/kubernetes",
    "/var/run/kubernetes",
]
CGROUP_ROOT = pathlib.Path("/sys/fs/cgroup")
CGROUP_NAME = "kubepods"  # kubelet's cgroupfs driver: <hierarchy>/kubepods/...
IPTABLES = {"ipv4": "iptables", "ipv6": "ip6tables"}


def _sysctl_path(key: str) -> pathlib.Path:
    return pathlib.Path("/proc/sys") / key


def read_sysctl(key: str) -> str | None:
    with contextlib.suppress(OSError):
        return _sysctl_path(key).read_text().strip()
    return None


def write_sysctl(key: str, value: str) -> None:
    _sysctl_path(key).write_text(value + "\n")


def _iptables_save(family: str) -> dict[str, list[str]]:
    """``<table>: [chain and rule lines]`` without counters (they change on their own)."""
    done = subprocess.run([f"{IPTABLES[family]}-save"], capture_output=True, text=True, check=False)
    tables: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in done.stdout.splitlines():
        if line.startswith("*"):
            current = tables.setdefault(line[1:], [])
        elif current is not None and line.startswith(":"):
            current.append(re.sub(r" \[\d+:\d+\]$", "", line))
        elif current is not None and line.startswith("-A "):
            current.append(line)
    return tables


def _chains(lines: list[str]) -> set[str]:
    return {line[1:].split()[0] for line in lines if line.startswith(":")}


def _targets(rule: str) -> set[str]:
    return set(re.findall(r" -[jg] (\S+)", rule))


def _links() -> set[str]:
    done = subprocess.run(["ip", "-o", "link", "show"], capture_output=True, text=True, check=False)
    return {line.split(": ")[1].split("@")[0] for line in done.stdout.splitlines()}


def _cgroups() -> list[str]:
    return sorted(str(p) for p in CGROUP_ROOT.glob(f"*/{CGROUP_NAME}"))


@dataclasses.dataclass
class HostState:
    sysctls: dict[str, str | None]
    iptables: dict[str, dict[str, list[str]]]
    links: list[str]
    paths: list[str]  # those of PATHS that existed
    cgroups: list[str]

    @classmethod
    def snapshot(cls) -> HostState:
        return cls(
            sysctls={key: read_sysctl(key) for key in SYSCTLS},
            iptables={family: _iptables_save(family) for family in IPTABLES},
            links=sorted(_links()),
            paths=[p for p in PATHS if pathlib.Path(p).exists()],
            cgroups=_cgroups(),
        )

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> HostState:
        data: dict[str, Any] = json.loads(text)
        return cls(**data)

    def restore(self) -> list[str]:
        """Undo every difference from the snapshot; return what could not be undone."""
        for cgroup in set(_cgroups()) - set(self.cgroups):
            _remove_cgroup_tree(pathlib.Path(cgroup))
        for link in _links() - set(self.links):
            subprocess.run(["ip", "link", "delete", link], capture_output=True, check=False)
        for family, before in self.iptables.items():
            _restore_iptables(family, before)
        for path in set(PATHS) - set(self.paths):
            target = pathlib.Path(path)
            if target.is_symlink() or target.is_file():
                target.unlink()
            elif target.exists():
                shutil.rmtree(target, ignore_errors=True)
        for key, value in self.sysctls.items():
            if value is not None and read_sysctl(key) != value:
                with contextlib.suppress(OSError):
                    write_sysctl(key, value)
        return self.leftovers()

    def leftovers(self) -> list[str]:
        """What differs from the snapshot, one line each (empty: the host is as it was)."""
        now = HostState.snapshot()
        found = [
            f"sysctl {key} = {now.sysctls[key]} (was {value})"
            for key, value in self.sysctls.items()
            if now.sysctls[key] != value
        ]
        for family, tables in now.iptables.items():
            for table, lines in tables.items():
                before = set(self.iptables.get(family, {}).get(table, []))
                # A table the node created keeps its empty built-in chains (ACCEPT): harmless.
                found += [
                    f"{IPTABLES[family]} -t {table}: {x}"
                    for x in lines
                    if x not in before and not re.fullmatch(r":\S+ ACCEPT", x)
                ]
        found += [f"link {link}" for link in set(now.links) - set(self.links)]
        found += [f"path {path}" for path in set(now.paths) - set(self.paths)]
        found += [f"cgroup {path}" for path in set(now.cgroups) - set(self.cgroups)]
        return sorted(found)


def _restore_iptables(family: str, before: dict[str, list[str]]) -> None:
    script = restore_script(_iptables_save(family), before)
    if script:
        subprocess.run(
            [f"{IPTABLES[family]}-restore"],
            input="\n".join(script) + "\n",
            text=True,
            capture_output=True,
            check=False,
        )


def restore_script(now: dict[str, list[str]], before: dict[str, list[str]]) -> list[str]:
    """``iptables-restore`` input that drops the chains added since ``before`` and every rule
    in or jumping to them, and nothing else (another program's rules made meanwhile stay).
    Only the changed tables are in it: ``iptables-restore`` replaces just the tables it is
    given."""
    script: list[str] = []
    for table, lines in now.items():
        added = _chains(lines) - _chains(before.get(table, []))
        if not added:
            continue
        script.append(f"*{table}")
        for line in lines:
            if line.startswith(":"):
                if line[1:].split()[0] not in added:
                    script.append(line + " [0:0]")
            elif line.split()[1] not in added and not _targets(line) & added:
                script.append(line)
        script.append("COMMIT")
    return script


def _remove_cgroup_tree(top: pathlib.Path) -> None:
    """rmdir a cgroup and its children, deepest first (a cgroup is removed only when empty)."""
    for path in sorted(top.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        if path.is_dir():
            with contextlib.suppress(OSError):
                path.rmdir()
    with contextlib.suppress(OSError):
        top.rmdir()
