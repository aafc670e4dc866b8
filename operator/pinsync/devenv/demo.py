"""``make demo``: the whole product on one machine, from nothing, in about a minute.

Starts (building once, cached) etcd + kube-apiserver, Kubo and MinIO on loopback; installs the
CRDs; runs the operator; adds sample content to Kubo; applies ``examples/``; waits until the
backend and the PinSet are Ready; prints what ``kubectl get`` shows and the objects in MinIO;
then keeps running until Ctrl-C (``--once`` exits instead) and tears everything down.
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

from pinsync.devenv import controlplane, kubo, minio, tools
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
    args = parser.parse_args(argv)
    root = tools.repo_root()
    workdir = pathlib.Path(tempfile.mkdtemp(prefix="pinsync-demo-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    started: list[object] = []
    try:
        say("starting etcd + kube-apiserver (binaries are built once into ~/.cache/pinsync)")
        plane = controlplane.ControlPlane(workdir / "controlplane").start()
        started.append(plane)
        controlplane.install_crds(plane.kubeconfig, root / "crds")
        say("starting Kubo and MinIO")
        node = kubo.Kubo(workdir / "kubo").start()
        started.append(node)
        s3 = minio.MinIO(workdir / "minio").start()
        started.append(s3)
        s3.make_bucket("pinsync-demo")

        say("starting the operator (log: %s)" % (workdir / "operator.log"))
        operator = Process(
            "operator",
            [sys.executable, "-m", "pinsync", "run", f"--kubeconfig={plane.kubeconfig}"],
            workdir=workdir,
            env={"PINSYNC_IPFS_API_URL": node.api_url},
        ).start()
        started.append(operator)

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
            controlplane.kubectl(
                plane.kubeconfig, "apply", "-n", "default", "-f", "-", input=manifest
            )

        say("waiting until the backend and the PinSet are Ready")
        t0 = time.monotonic()
        wait_ready(plane.kubeconfig, "storagebackend/minio")
        wait_ready(plane.kubeconfig, "pinset/demo")
        say(f"Ready after {time.monotonic() - t0:.1f}s")
        print(controlplane.kubectl(plane.kubeconfig, "get", "pinsync", "-n", "default"))

        say("objects in MinIO bucket pinsync-demo")
        client = s3.client()
        for item in client.list_objects_v2(Bucket="pinsync-demo").get("Contents", ()):
            print(f"    {item['Size']:>9}  {item['Key']}")
        print()
        print(f"kubeconfig: {plane.kubeconfig}")
        print(f"try: kubectl --kubeconfig={plane.kubeconfig} describe storagebackend minio")
        if not args.once:
            say("running; press Ctrl-C to stop and tear down")
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


if __name__ == "__main__":
    main()
