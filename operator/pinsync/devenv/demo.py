"""``make demo``: the whole product on one machine, from nothing, in about a minute.

Starts (building once, cached) etcd + kube-apiserver, Kubo and MinIO on loopback; installs the
CRDs; runs the operator; adds sample content to Kubo; applies ``examples/``; waits until the
backend and the PinSet are Ready; prints what ``kubectl get`` shows and the objects in MinIO;
then keeps running until Ctrl-C (``--once`` exits instead) and tears everything down.

``--cluster`` (``make demo CLUSTER=1``): the same on a real node (:mod:`.realnode`), the operator
built into its image and installed by Helm as two Pods; Kubo and MinIO listen on the node IP.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import signal
import string
import subprocess
import sys
import tempfile
import time

from pinsync.devenv import controlplane, kubo, minio, realnode, tools
from pinsync.devenv.processes import Process

SAMPLES = {
    "demo/readme": b"pinsync keeps IPFS pins replicated to storage backends.\n" * 64,
    "demo/blob-1mib": os.urandom(1024 * 1024),
    "demo/blob-3mib": os.urandom(3 * 1024 * 1024),
}


def say(message: str) -> None:
    print(f"==> {message}", flush=True)


def wait_ready(kubeconfig: pathlib.Path, what: str, timeout: int = 180) -> None:
    controlplane.kubectl(
        kubeconfig, "wait", "--for=condition=Ready", what, "-n", "default", f"--timeout={timeout}s"
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="pinsync-demo", description=__doc__)
    parser.add_argument("--once", action="store_true", help="exit after printing the status")
    parser.add_argument(
        "--cluster", action="store_true", help="a real node; the operator as Pods, by Helm"
    )
    args = parser.parse_args(argv)
    root = tools.repo_root()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="pinsync-demo-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    started: list[object] = []
    try:
        host = "127.0.0.1"
        if args.cluster:
            say("starting a real node (kubelet, containerd, ...; built once into ~/.cache/pinsync)")
            cluster = realnode.Node(workdir / "node")
            started.append(cluster)
            cluster.start()
            kubeconfig, host = cluster.kubeconfig, cluster.ip
        else:
            say("starting etcd + kube-apiserver (binaries are built once into ~/.cache/pinsync)")
            plane = controlplane.ControlPlane(workdir / "controlplane").start()
            started.append(plane)
            kubeconfig = plane.kubeconfig
            controlplane.install_crds(kubeconfig, root / "crds")
        say(f"starting Kubo and MinIO on {host}")
        node = kubo.Kubo(workdir / "kubo", host=host).start()
        started.append(node)
        s3 = minio.MinIO(workdir / "minio", host=host).start()
        started.append(s3)
        s3.make_bucket("pinsync-demo")

        if args.cluster:
            say("building the operator's image (buildah) and installing it with Helm")
            install_by_helm(cluster, root, node.api_url, workdir)
            logs = f"kubectl --kubeconfig={kubeconfig} logs -n pinsync-system deploy/pinsync"
        else:
            say("starting the operator (log: %s)" % (workdir / "operator.log"))
            operator = Process(
                "operator",
                [sys.executable, "-m", "pinsync", "run", f"--kubeconfig={kubeconfig}"],
                workdir=workdir,
                env={"PINSYNC_IPFS_API_URL": node.api_url},
            ).start()
            started.append(operator)
            logs = str(workdir / "operator.log")

        say("adding sample content to Kubo")
        for name, data in SAMPLES.items():
            cid = node.add(data, pin=False)
            node.ipfs("pin", "add", "--name", name, cid)
            print(f"    {name:16} {cid}")
        extra = node.add(b"an explicitly listed CID\n")

        say("applying examples/")
        values = {
            "MINIO_ENDPOINT": s3.endpoint,
            "MINIO_ACCESS_KEY": s3.access_key,
            "MINIO_SECRET_KEY": s3.secret_key,
            "EXTRA_CID": extra,
        }
        for path in sorted((root / "examples").glob("*.yaml")):
            manifest = string.Template(path.read_text()).substitute(values)
            controlplane.kubectl(kubeconfig, "apply", "-n", "default", "-f", "-", input=manifest)

        say("waiting until the backend and the PinSet are Ready")
        t0 = time.monotonic()
        wait_ready(kubeconfig, "storagebackend/minio")
        wait_ready(kubeconfig, "pinset/demo")
        say(f"Ready after {time.monotonic() - t0:.1f}s")
        print(controlplane.kubectl(kubeconfig, "get", "pinsync", "-n", "default"))
        if args.cluster:
            print(controlplane.kubectl(kubeconfig, "get", "pods", "-n", "pinsync-system"))

        say("objects in MinIO bucket pinsync-demo")
        client = s3.client()
        for item in client.list_objects_v2(Bucket="pinsync-demo").get("Contents", ()):
            print(f"    {item['Size']:>9}  {item['Key']}")
        print()
        print(f"kubeconfig: {kubeconfig}")
        print(f"try: kubectl --kubeconfig={kubeconfig} describe storagebackend minio")
        print(f"the operator's log: {logs}")
        if not args.once:
            say("running; press Ctrl-C to stop and tear down")
            if args.cluster:  # Kubernetes restarts the Pods; nothing to watch here
                signal.pause()
            else:
                while operator.running:
                    time.sleep(1)
                print(operator.log_tail(), file=sys.stderr)
                raise SystemExit("the operator exited")
    except KeyboardInterrupt:
        pass
    except subprocess.CalledProcessError as exc:
        print(exc.stderr, file=sys.stderr)
        raise
    finally:
        say("tearing down")
        for thing in reversed(started):
            thing.stop()  # type: ignore[attr-defined]
        shutil.rmtree(workdir, ignore_errors=True)


def install_by_helm(
    cluster: realnode.Node, root: pathlib.Path, ipfs_url: str, workdir: pathlib.Path
) -> None:
    """The chart with its default values but for the local image and where Kubo is."""
    repository, tag = cluster.import_image(tools.image("operator")).rsplit(":", 1)
    home = workdir / "helm-home"  # helm's cache and config, kept out of $HOME
    subprocess.run(
        [str(tools.binary("helm")), "install", "pinsync", str(root / "helm" / "pinsync"),
         "-n", "pinsync-system", "--create-namespace", f"--kubeconfig={cluster.kubeconfig}",
         "--set", f"image.repository={repository}", "--set", f"image.tag={tag}",
         "--set", "image.pullPolicy=Never", "--set", f"ipfsApiUrl={ipfs_url}"],
        env={**os.environ, "HELM_CACHE_HOME": str(home / "cache"),
             "HELM_CONFIG_HOME": str(home / "config"), "HELM_DATA_HOME": str(home / "data")},
        check=True, capture_output=True, text=True,
    )  # fmt: skip
    cluster.wait_rollout("pinsync-system", "deployment/pinsync", timeout=180)


if __name__ == "__main__":
    main()
