"""Locating server and tool binaries: an environment override, else the cached build."""

from __future__ import annotations

import dataclasses
import os
import pathlib
import subprocess

ENV = {
    "kube-apiserver": "PINSYNC_KUBE_APISERVER",
    "etcd": "PINSYNC_ETCD",
    "ipfs": "PINSYNC_IPFS",
    "minio": "PINSYNC_MINIO",
    "ipfs-cluster-service": "PINSYNC_IPFS_CLUSTER_SERVICE",
    "helm": "PINSYNC_HELM",
    "kstatus": "PINSYNC_KSTATUS",
    "servicemonitor-crd": "PINSYNC_SERVICEMONITOR_CRD",
    "kubelet": "PINSYNC_KUBELET",
    "kube-controller-manager": "PINSYNC_KUBE_CONTROLLER_MANAGER",
    "kube-scheduler": "PINSYNC_KUBE_SCHEDULER",
    "kube-proxy": "PINSYNC_KUBE_PROXY",
}


class ToolError(RuntimeError):
    pass


def repo_root() -> pathlib.Path:
    here = pathlib.Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "hack" / "build-tool.sh").exists():
            return parent
    raise ToolError("hack/build-tool.sh not found; set the PINSYNC_<TOOL> variables instead")


def binary(tool: str) -> pathlib.Path:
    """Path of a server binary; builds it (cached, keyed by version) on first use."""
    override = os.environ.get(ENV[tool])
    if override:
        return pathlib.Path(override)
    script = repo_root() / "hack" / "build-tool.sh"
    done = subprocess.run([str(script), tool], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ToolError(f"could not build {tool}:\n{done.stderr[-4000:]}")
    return pathlib.Path(done.stdout.strip().splitlines()[-1])


@dataclasses.dataclass(frozen=True)
class Image:
    """A container image as a docker-archive, and the name it carries."""

    archive: pathlib.Path
    name: str


def image(what: str) -> Image:
    """An image ``hack/build-image.sh`` builds (``base``, ``pause``, ``coredns``, ``operator``);
    built on first use, then reused while its inputs are unchanged."""
    script = repo_root() / "hack" / "build-image.sh"
    done = subprocess.run([str(script), what], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise ToolError(f"could not build the {what} image:\n{done.stderr[-4000:]}")
    archive = pathlib.Path(done.stdout.strip().splitlines()[-1])
    return Image(archive, archive.with_name(archive.name + ".name").read_text().strip())
