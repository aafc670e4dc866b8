"""A Kubo (go-ipfs) daemon with a temporary repository on free loopback ports.

``host``: the address its RPC API listens on; a real node's Pods reach the host by its node IP.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import httpx

from pinsync.devenv import tools
from pinsync.devenv.processes import Process, free_port


class Kubo:
    def __init__(
        self, workdir: pathlib.Path, *, offline: bool = False, host: str = "127.0.0.1"
    ) -> None:
        self.workdir, self.host = workdir, host
        self.repo = workdir / "ipfs"
        self.offline = offline
        self.process: Process | None = None
        self.api_port = free_port()
        self.api_url = f"http://{host}:{self.api_port}"

    @property
    def env(self) -> dict[str, str]:
        return {"IPFS_PATH": str(self.repo)}

    def ipfs(self, *args: str, input: bytes | None = None) -> bytes:
        """Run the ``ipfs`` CLI against this node (through its API once the daemon runs)."""
        done = subprocess.run(
            [str(tools.binary("ipfs")), *args],
            input=input,
            capture_output=True,
            env={**self.env, "PATH": "/usr/bin:/bin"},
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(f"ipfs {' '.join(args)} failed: {done.stderr.decode()[-2000:]}")
        return done.stdout

    def start(self) -> Kubo:
        self.workdir.mkdir(parents=True, exist_ok=True)
        if not (self.repo / "config").exists():
            self.ipfs("init", "--profile=test", "--empty-repo")
        addresses = {
            "API": f"/ip4/{self.host}/tcp/{self.api_port}",
            "Gateway": f"/ip4/127.0.0.1/tcp/{free_port()}",
            "Swarm": [f"/ip4/127.0.0.1/tcp/{free_port()}"],
            "Announce": [],
            "AppendAnnounce": [],
            "NoAnnounce": [],
        }
        self.ipfs("config", "--json", "Addresses", json.dumps(addresses))
        argv = [str(tools.binary("ipfs")), "daemon"]
        if self.offline:
            argv.append("--offline")
        self.process = Process("kubo", argv, workdir=self.workdir, env=self.env).start()
        self.process.wait_until(
            lambda: httpx.post(f"{self.api_url}/api/v0/id", timeout=2).status_code == 200,
            timeout=60,
            what="Kubo /api/v0/id",
        )
        return self

    def add(self, data: bytes, *, pin: bool = True) -> str:
        """Add bytes (CIDv1, raw leaves) and return the root CID."""
        response = httpx.post(
            f"{self.api_url}/api/v0/add",
            params={"cid-version": "1", "pin": str(pin).lower(), "quieter": "true"},
            files={"file": ("data", data)},
            timeout=120,
        )
        response.raise_for_status()
        cid: str = response.json()["Hash"]
        return cid

    def export_car(self, cid: str) -> bytes:
        response = httpx.post(f"{self.api_url}/api/v0/dag/export", params={"arg": cid}, timeout=120)
        response.raise_for_status()
        return response.content

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
