"""kube-apiserver + etcd, started the way controller-runtime's envtest starts them.

No kubelet, scheduler or controller-manager: enough for CRDs, RBAC, Secrets, Events and watches,
which is all an operator talks to. Or, with ``PINSYNC_TEST_KUBECONFIG``, an existing cluster.
With ``node_ip``, the API server a real node (:mod:`pinsync.devenv.realnode`) joins: reachable from
Pods, Node authorization, ServiceAccount tokens.
"""

from __future__ import annotations

import base64
import pathlib
import ssl
import subprocess
import time

import yaml

from pinsync.devenv import pki, tools
from pinsync.devenv.processes import Process, free_port, http_ok

SERVICE_CIDR = "10.0.0.0/24"
SVC_NAMES = [f"kubernetes.default{s}" for s in ("", ".svc", ".svc.cluster.local")]
KUBERNETES_SERVICE_IP = "10.0.0.1"  # the first address of SERVICE_CIDR


class ControlPlane:
    def __init__(self, workdir: pathlib.Path, node_ip: str | None = None) -> None:
        self.workdir = workdir
        self.node_ip = node_ip
        self.kubeconfig = workdir / "kubeconfig"
        self.processes: list[Process] = []

    def _node_flags(self, certs: pki.Pki) -> list[str]:
        """API server flags for a real node; without one, envtest's (no ServiceAccount tokens,
        no endpoints for the ``kubernetes`` Service, loopback only)."""
        if self.node_ip is None:
            return [
                "--bind-address=127.0.0.1",
                "--disable-admission-plugins=ServiceAccount",
                "--authorization-mode=RBAC",
                "--endpoint-reconciler-type=none",
            ]
        certs.client("kubelet-client", "kube-apiserver-kubelet-client", "system:masters")
        return [
            # Pods reach it as the `kubernetes` Service, whose endpoint is the advertised address.
            "--bind-address=0.0.0.0",
            f"--advertise-address={self.node_ip}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={certs.path('kubelet-client.crt')}",
            f"--kubelet-client-key={certs.path('kubelet-client.key')}",
            # For logs and exec: the node's name is in no DNS, its address is.
            "--kubelet-preferred-address-types=InternalIP",
        ]

    def start(self) -> ControlPlane:
        self.workdir.mkdir(parents=True, exist_ok=True)
        names = [] if self.node_ip is None else [self.node_ip, KUBERNETES_SERVICE_IP, *SVC_NAMES]
        certs = self.certs = pki.Pki(self.workdir / "pki", serving_names=names)
        etcd_port, apiserver_port = free_port(), free_port()
        etcd_url = f"http://127.0.0.1:{etcd_port}"
        etcd = Process(
            "etcd",
            [
                str(tools.binary("etcd")),
                f"--data-dir={self.workdir / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                "--listen-peer-urls=http://localhost:0",
                "--unsafe-no-fsync",  # a throw-away store; fsync only costs test time
            ],
            workdir=self.workdir,
        ).start()
        self.processes.append(etcd)
        etcd.wait_until(http_ok(f"{etcd_url}/health"), timeout=60, what="etcd /health")

        apiserver = Process(
            "kube-apiserver",
            [
                str(tools.binary("kube-apiserver")),
                f"--etcd-servers={etcd_url}",
                f"--cert-dir={self.workdir / 'pki'}",
                f"--tls-cert-file={certs.path('serving.crt')}",
                f"--tls-private-key-file={certs.path('serving.key')}",
                f"--client-ca-file={certs.path('ca.crt')}",
                f"--secure-port={apiserver_port}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                "--service-account-issuer=https://pinsync.local",
                f"--service-account-key-file={certs.path('sa.key')}",
                f"--service-account-signing-key-file={certs.path('sa.key')}",
                *self._node_flags(certs),
            ],
            workdir=self.workdir,
        ).start()
        self.processes.append(apiserver)
        self.server = f"https://127.0.0.1:{apiserver_port}"
        self._write_kubeconfig(certs)
        apiserver.wait_until(
            http_ok(f"{self.server}/readyz", verify=self.admin_tls(certs)),
            timeout=120,
            what="kube-apiserver /readyz",
        )
        return self

    @staticmethod
    def admin_tls(certs: pki.Pki) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(certs.path("ca.crt")))
        context.load_cert_chain(str(certs.path("admin.crt")), str(certs.path("admin.key")))
        return context

    def _write_kubeconfig(self, certs: pki.Pki) -> None:
        self.kubeconfig.write_text(self.kubeconfig_for(certs, "admin"))
        self.kubeconfig.chmod(0o600)

    def kubeconfig_for(self, certs: pki.Pki, stem: str) -> str:
        """A kubeconfig (YAML) authenticating with the client cert ``<stem>.{crt,key}``."""

        def b64(name: str) -> str:
            return base64.b64encode(certs.path(name).read_bytes()).decode()

        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "local",
                    "cluster": {"server": self.server, "certificate-authority-data": b64("ca.crt")},
                }
            ],
            "users": [
                {
                    "name": stem,
                    "user": {
                        "client-certificate-data": b64(f"{stem}.crt"),
                        "client-key-data": b64(f"{stem}.key"),
                    },
                }
            ],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": stem}}],
            "current-context": "local",
        }
        return yaml.safe_dump(config)

    def stop(self) -> None:
        for process in reversed(self.processes):
            process.stop()
        self.processes.clear()


def kubectl(kubeconfig: pathlib.Path, *args: str, input: str | None = None) -> str:
    """Run kubectl against the given cluster; raise with its stderr on failure."""
    done = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        input=input,
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise subprocess.CalledProcessError(done.returncode, done.args, done.stdout, done.stderr)
    return done.stdout


def kubectl_status(kubeconfig: pathlib.Path, *args: str) -> str:
    """kubectl's stdout whatever its exit code (``auth can-i`` answers "no" with exit code 1)."""
    done = subprocess.run(
        ["kubectl", f"--kubeconfig={kubeconfig}", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip()


def install_crds(kubeconfig: pathlib.Path, crds_dir: pathlib.Path, timeout: float = 60) -> None:
    """Apply the CRDs and wait until the API server serves them."""
    kubectl(kubeconfig, "apply", "--server-side", "-f", str(crds_dir))
    deadline = time.monotonic() + timeout
    for path in sorted(crds_dir.glob("*.yaml")):
        name = yaml.safe_load(path.read_text())["metadata"]["name"]
        remaining = max(1, int(deadline - time.monotonic()))
        kubectl(
            kubeconfig,
            "wait",
            "--for=condition=Established",
            f"crd/{name}",
            f"--timeout={remaining}s",
        )
