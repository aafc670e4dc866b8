"""A real single-node Kubernetes cluster on this host, where Pods run from local images.

etcd and kube-apiserver (:class:`~pinsync.devenv.controlplane.ControlPlane` with a node IP),
containerd with runc and the bridge CNI plugin, kubelet, kube-proxy (iptables),
kube-controller-manager, kube-scheduler and CoreDNS; no image registry: the sandbox (pause)
image and any other image are imported into containerd from archives ``hack/build-image.sh``
builds. Every program's configuration, state and log is under the work directory.

What the programs change on the host outside it (sysctls, iptables, the ``pinsync0`` bridge,
cgroups, a few fixed paths) is snapshotted before the start (:mod:`.hoststate`) and restored by
:meth:`Node.stop`. The snapshot is also kept in ``/run`` while the node runs, so a run killed
before its teardown is cleaned up by the next start. One node per host at a time (a lock).

``python -m pinsync.devenv.realnode`` (``make cluster``): start, print the kubeconfig's path,
stop on Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import pathlib
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from typing import Any, TextIO

import yaml

from pinsync.devenv import tools
from pinsync.devenv.controlplane import ControlPlane, kubectl
from pinsync.devenv.hoststate import HostState, write_sysctl
from pinsync.devenv.processes import Process, free_port, http_ok

NODE_NAME = "pinsync-node"
POD_CIDR = "10.244.0.0/24"
DNS_IP = "10.0.0.10"  # in controlplane.SERVICE_CIDR
BRIDGE = "pinsync0"
RUN_DIR = pathlib.Path("/run/pinsync-node")  # the lock and the host snapshot of the running node


class NodeError(RuntimeError):
    pass


def node_ip() -> str:
    """The address Pods reach the host by: the source address of the default route."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.connect(("203.0.113.1", 9))  # TEST-NET-3; no packet is sent, this picks a route
        address: str = sock.getsockname()[0]
    if address.startswith("127."):
        raise NodeError("no non-loopback IPv4 address: Pods could not reach the host")
    return address


class Node:
    """A started node; :meth:`stop` (also after a failed :meth:`start`) undoes everything."""

    def __init__(self, workdir: pathlib.Path | None = None, ip: str | None = None) -> None:
        # containerd's socket path must fit a sockaddr_un (108 bytes): keep the directory short.
        self.workdir = workdir or pathlib.Path(tempfile.mkdtemp(prefix="pinsync-node-"))
        self.ip = ip or node_ip()
        self.plane = ControlPlane(self.workdir / "controlplane", node_ip=self.ip)
        self.kubeconfig = self.plane.kubeconfig
        self.socket = self.workdir / "containerd" / "containerd.sock"
        self.processes: list[Process] = []
        self._lock: TextIO | None = None
        self._host: HostState | None = None

    # -- start ------------------------------------------------------------------------------------

    def start(self) -> Node:
        try:
            self._take_host()
            self._pause = tools.image("pause")
            self.plane.start()
            self._containerd()
            self.import_image(self._pause)
            self._kubelet()
            self._kube_proxy()
            self._controllers()
            self._wait_ready()
            self._coredns()
        except BaseException:
            self.stop()
            raise
        return self

    def _take_host(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        self._lock = (RUN_DIR / "lock").open("w")
        deadline = time.monotonic() + 600
        while True:  # another test run's node: wait for it, not fight over iptables
            try:
                fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise NodeError(f"another node holds {RUN_DIR / 'lock'} for 10 min") from None
                time.sleep(2)
        stale = RUN_DIR / "host.json"
        if stale.exists():  # a run killed before its teardown: finish that teardown first
            record = json.loads(stale.read_text())
            _kill_processes_of(pathlib.Path(record["workdir"]))
            _unmount_under(pathlib.Path(record["workdir"]))
            left = HostState.from_json(record["host"]).restore()
            shutil.rmtree(record["workdir"], ignore_errors=True)
            if left:  # a snapshot taken now would take them for the host's own
                raise NodeError(
                    "a killed node's leftovers could not be undone:\n" + "\n".join(left)
                )
        self._host = HostState.snapshot()
        stale.write_text(json.dumps({"workdir": str(self.workdir), "host": self._host.to_json()}))
        write_sysctl("net/ipv4/ip_forward", "1")
        # Service traffic between two Pods on the bridge passes iptables (kube-proxy's DNAT)
        # only with this; without it the reply bypasses the un-DNAT and is dropped.
        write_sysctl("net/bridge/bridge-nf-call-iptables", "1")

    def _start(self, name: str, argv: list[str]) -> Process:
        process = Process(name, argv, workdir=self.workdir).start()
        self.processes.append(process)
        return process

    def _containerd(self) -> None:
        base = self.workdir / "containerd"
        cni = self.workdir / "cni"
        (cni / "net.d").mkdir(parents=True)
        (cni / "net.d" / "10-pinsync.conflist").write_text(
            json.dumps(
                {
                    "cniVersion": "1.0.0",
                    "name": "pinsync",
                    "plugins": [
                        {
                            "type": "bridge",
                            "bridge": BRIDGE,
                            "isGateway": True,
                            "ipMasq": True,
                            "hairpinMode": True,
                            "ipam": {
                                "type": "host-local",
                                "ranges": [[{"subnet": POD_CIDR}]],
                                "routes": [{"dst": "0.0.0.0/0"}],
                                "dataDir": str(cni / "ipam"),
                            },
                        },
                        {"type": "portmap", "capabilities": {"portMappings": True}},
                    ],
                }
            )
        )
        cri = 'plugins."io.containerd.grpc.v1.cri"'
        config = f"""version = 2
root = "{base / "root"}"
state = "{base / "state"}"
[grpc]
  address = "{self.socket}"
[plugins."io.containerd.internal.v1.opt"]
  path = "{base / "opt"}"
[{cri}]
  sandbox_image = "{self._pause.name}"
  # runc cannot write /proc/self/oom_score_adj here (no CAP_SYS_RESOURCE in the bounding set):
  # without this every sandbox fails with "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
[{cri}.containerd]
  default_runtime_name = "runc"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
[{cri}.containerd.runtimes.runc.options]
  SystemdCgroup = false
  Root = "{base / "runc"}"
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{cni / "net.d"}"
"""
        base.mkdir(parents=True, exist_ok=True)
        (base / "config.toml").write_text(config)
        process = self._start("containerd", ["containerd", f"--config={base / 'config.toml'}"])
        process.wait_until(
            lambda: self.ctr("version") is not None, timeout=60, what="containerd's socket"
        )

    def ctr(self, *args: str) -> str:
        """``ctr`` in containerd's Kubernetes namespace (where kubelet finds its images)."""
        done = subprocess.run(
            ["ctr", f"--address={self.socket}", "--namespace=k8s.io", *args],
            capture_output=True,
            text=True,
            check=False,
        )
        if done.returncode != 0:
            raise NodeError(f"ctr {' '.join(args)} failed: {done.stderr[-2000:]}")
        return done.stdout

    def import_image(self, built: tools.Image) -> str:
        """Make a built image available to Pods (``imagePullPolicy: Never``/``IfNotPresent``)."""
        if built.name not in self.ctr("images", "list", "--quiet").split():  # once per node
            self.ctr("images", "import", str(built.archive))
        return built.name

    def _kubelet(self) -> None:
        certs = self.plane.certs
        # The Node authorizer and NodeRestriction know a kubelet by this identity.
        certs.client("kubelet", f"system:node:{NODE_NAME}", "system:nodes")
        root = self.workdir / "kubelet"
        root.mkdir()
        (root / "kubeconfig").write_text(self.plane.kubeconfig_for(certs, "kubelet"))
        self.kubelet_port, healthz = free_port(), free_port()
        config: dict[str, Any] = {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.ip,
            "port": self.kubelet_port,
            "readOnlyPort": 0,
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": healthz,
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(certs.path("ca.crt"))},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": f"unix://{self.socket}",
            "cgroupDriver": "cgroupfs",  # PID 1 is not systemd
            "failCgroupV1": False,  # this host has the hybrid v1 layout
            "failSwapOn": False,
            "clusterDNS": [DNS_IP],
            "clusterDomain": "cluster.local",
            "podLogsDir": str(self.workdir / "pod-logs"),
            "volumePluginDir": str(self.workdir / "volume-plugins"),
            # The imported images cannot be pulled again: never garbage-collect them, and never
            # evict Pods because a shared test machine's disk is fuller than a node's should be.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {
                "memory.available": "1Mi",
                "nodefs.available": "1%",
                "imagefs.available": "1%",
            },
            "serializeImagePulls": False,
        }
        (root / "config.yaml").write_text(yaml.safe_dump(config))
        process = self._start(
            "kubelet",
            [
                str(tools.binary("kubelet")),
                f"--config={root / 'config.yaml'}",
                f"--kubeconfig={root / 'kubeconfig'}",
                f"--root-dir={root}",
                f"--cert-dir={root / 'pki'}",
                f"--hostname-override={NODE_NAME}",
                f"--node-ip={self.ip}",
            ],
        )
        process.wait_until(
            http_ok(f"http://127.0.0.1:{healthz}/healthz"), timeout=60, what="kubelet /healthz"
        )

    def _component_kubeconfig(self, name: str, user: str) -> pathlib.Path:
        self.plane.certs.client(name, user)
        path = self.workdir / f"{name}.kubeconfig"
        path.write_text(self.plane.kubeconfig_for(self.plane.certs, name))
        return path

    def _kube_proxy(self) -> None:
        healthz = free_port()
        process = self._start(
            "kube-proxy",
            [
                str(tools.binary("kube-proxy")),
                # Bound by the default RBAC to system:node-proxier.
                f"--kubeconfig={self._component_kubeconfig('kube-proxy', 'system:kube-proxy')}",
                "--proxy-mode=iptables",
                f"--cluster-cidr={POD_CIDR}",
                f"--hostname-override={NODE_NAME}",
                f"--healthz-bind-address=127.0.0.1:{healthz}",
                f"--metrics-bind-address=127.0.0.1:{free_port()}",
                # Leave the host's conntrack table sizes and timeouts alone.
                "--conntrack-max-per-core=0",
                "--conntrack-tcp-timeout-established=0",
                "--conntrack-tcp-timeout-close-wait=0",
            ],
        )
        process.wait_until(
            http_ok(f"http://127.0.0.1:{healthz}/livez"), timeout=60, what="kube-proxy /livez"
        )

    def _controllers(self) -> None:
        certs = self.plane.certs
        manager_port, scheduler_port = free_port(), free_port()
        manager = self._start(
            "kube-controller-manager",
            [
                str(tools.binary("kube-controller-manager")),
                "--kubeconfig="
                + str(
                    self._component_kubeconfig(
                        "controller-manager", "system:kube-controller-manager"
                    )
                ),
                "--use-service-account-credentials",
                f"--service-account-private-key-file={certs.path('sa.key')}",
                # Published to every namespace as kube-root-ca.crt, which Pods' tokens need.
                f"--root-ca-file={certs.path('ca.crt')}",
                "--allocate-node-cidrs=false",
                "--leader-elect=false",
                f"--flex-volume-plugin-dir={self.workdir / 'volume-plugins'}",
                "--bind-address=127.0.0.1",
                f"--secure-port={manager_port}",
            ],
        )
        scheduler = self._start(
            "kube-scheduler",
            [
                str(tools.binary("kube-scheduler")),
                "--kubeconfig="
                + str(self._component_kubeconfig("scheduler", "system:kube-scheduler")),
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                f"--secure-port={scheduler_port}",
            ],
        )
        for process, port in ((manager, manager_port), (scheduler, scheduler_port)):
            process.wait_until(
                http_ok(f"https://127.0.0.1:{port}/healthz", verify=False),
                timeout=60,
                what=f"{process.name} /healthz",
            )

    def _wait_ready(self, timeout: float = 90) -> None:
        kubelet = next(p for p in self.processes if p.name == "kubelet")

        def ready() -> bool:
            node = json.loads(self.kubectl("get", "node", NODE_NAME, "-o", "json"))
            conditions = {c["type"]: c["status"] for c in node["status"]["conditions"]}
            return conditions.get("Ready") == "True"

        kubelet.wait_until(ready, timeout=timeout, what=f"Node {NODE_NAME} Ready")

    def _coredns(self) -> None:
        """CoreDNS as a Deployment behind the ``kube-dns`` Service at ``DNS_IP``."""
        name = self.import_image(tools.image("coredns"))
        manifest = (pathlib.Path(__file__).parent / "coredns.yaml").read_text()
        self.kubectl("apply", "-f", "-", input=manifest.replace("IMAGE", name))
        self.wait_rollout("kube-system", "deployment/coredns")

    def wait_rollout(self, namespace: str, what: str, timeout: float = 120) -> None:
        """Until a workload's Pods are Ready; on time-out, fail with its Pods' state and
        events, and kubelet's log tail."""
        try:
            self.kubectl("rollout", "status", "-n", namespace, what, f"--timeout={timeout:.0f}s")
        except subprocess.CalledProcessError as exc:
            raise NodeError(
                f"{what} in {namespace} not ready: {exc.stderr}\n"
                + self.kubectl("describe", "pods", "-n", namespace)[-4000:]
                + "\nkubelet:\n"
                + next(p for p in self.processes if p.name == "kubelet").log_tail(20)
            ) from None

    def kubectl(self, *args: str, input: str | None = None) -> str:
        return kubectl(self.kubeconfig, *args, input=input)

    def kubectl_result(self, *args: str) -> subprocess.CompletedProcess[str]:
        """kubectl's exit code and output, for commands expected to fail."""
        return subprocess.run(
            ["kubectl", f"--kubeconfig={self.kubeconfig}", *args],
            capture_output=True,
            text=True,
            check=False,
        )

    # -- stop -------------------------------------------------------------------------------------

    def stop(self) -> None:
        """Stop everything and put the host back as it was; raise if something is left.

        Ctrl-C (or SIGTERM) during the teardown is held until it is complete: an interrupted
        teardown would leave the host's iptables, mounts and sysctls for the next run to undo.
        """
        with _signals_held():
            self._stop()

    def _stop(self) -> None:
        if self._lock is None:
            return
        leftovers: list[str] = []
        try:
            for process in reversed(self.processes):
                if process.name != "containerd":
                    process.stop()
            # Containers outlive kubelet and containerd (each shim is its own session).
            _kill_processes_of(self.workdir)
            for process in self.processes:
                process.stop()
            self.processes.clear()
            self.plane.stop()
            _unmount_under(self.workdir)
            if self._host is not None:
                leftovers = self._host.restore()
            (RUN_DIR / "host.json").unlink(missing_ok=True)
            if not os.environ.get("PINSYNC_KEEP_WORKDIR"):
                shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            fcntl.flock(self._lock, fcntl.LOCK_UN)
            self._lock.close()
            self._lock = None
        if leftovers:
            raise NodeError("the node left on the host:\n" + "\n".join(leftovers))


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Defer SIGINT and SIGTERM until the block ends, then act on the first one received."""
    if threading.current_thread() is not threading.main_thread():
        yield  # only the main thread can set handlers; signals go to it anyway
        return
    received: list[int] = []
    held = (signal.SIGINT, signal.SIGTERM)
    previous = {sig: signal.signal(sig, lambda sig, _: received.append(sig)) for sig in held}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            signal.raise_signal(received[0])


def _kill_processes_of(workdir: pathlib.Path) -> None:
    """SIGKILL every process whose command line names ``workdir`` (the node's programs, the
    containerd shims) and all their descendants (the containers)."""
    marker = str(workdir).encode()
    parents: dict[int, int] = {}
    roots: set[int] = set()
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            pid = int(entry.name)
            # The parent pid follows the command name, which may hold spaces: split after ")".
            parents[pid] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if marker in (entry / "cmdline").read_bytes() and pid != os.getpid():
                roots.add(pid)
    doomed = set(roots)
    grew = True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in doomed} - doomed
        grew = bool(more)
        doomed |= more
    for pid in doomed:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(_alive(pid) for pid in doomed):
        time.sleep(0.1)


def _alive(pid: int) -> bool:
    """Not gone and not a zombie (our own children stay zombies until their Popen waits)."""
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state != "Z"


def _unmount_under(workdir: pathlib.Path) -> None:
    """Lazily unmount every mount at or below ``workdir`` (overlay rootfs, netns, tmpfs
    volumes, shm), deepest first."""
    prefix = str(workdir) + "/"
    for _ in range(3):  # a mount may hide another under it
        with open("/proc/self/mountinfo") as info:
            points = [line.split()[4] for line in info]
        # mountinfo escapes spaces and the like as octal; our paths have none.
        mine = sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True)
        if not mine:
            return
        for point in mine:
            subprocess.run(["umount", "-l", point], capture_output=True, check=False)


@contextlib.contextmanager
def running(workdir: pathlib.Path | None = None) -> Iterator[Node]:
    node = Node(workdir)
    node.start()
    try:
        yield node
    finally:
        node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.parse_args()
    # Ctrl-C, and a plain kill, stop the node through its teardown (a shell starting this in
    # the background would have it ignore SIGINT otherwise).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    started = time.monotonic()
    with running() as node:
        print(f"node {NODE_NAME} Ready in {time.monotonic() - started:.1f}s ({node.ip})")
        print(f"export KUBECONFIG={node.kubeconfig}")
        print("Ctrl-C stops it and restores the host.", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            signal.pause()
    print("stopped; the host is as it was")


if __name__ == "__main__":
    main()
