"""A real single-peer IPFS Cluster (``ipfs-cluster-service``) in front of a harness Kubo.

The backend for ``type: ipfsCluster`` talks to the cluster's REST API, and the cluster pins on
the Kubo it is connected to; testing it against a fake REST server would test our reading of
the docs, not the cluster. So the harness runs the real daemon: ``init`` (CRDT consensus, so a
single peer needs no Raft bootstrap) in a temporary directory, then every listener is moved to a
free loopback port (the defaults, 9094-9097, would collide with a second cluster or with a
developer's own), the IPFS connector pointed at the given Kubo API, and optionally basic-auth
credentials put on the REST API and the Pinning Service API (``pinsvcapi``, which the
``pinningService`` backend is tested against; both also take the JWT of :meth:`token`) so
that authentication failures can be tested for real.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import secrets
import subprocess
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx

from pinsync.devenv import tools
from pinsync.devenv.processes import Process, free_port


def loopback(port: int) -> str:
    return f"/ip4/127.0.0.1/tcp/{port}"


class IpfsCluster:
    """One cluster peer; ``api_url`` is its REST API, ``auth`` the (user, password) it wants."""

    def __init__(
        self,
        workdir: pathlib.Path,
        kubo_api_url: str,
        *,
        username: str | None = None,
        password: str | None = None,
        pin_timeout: str = "2m0s",
    ) -> None:
        self.workdir = workdir
        self.pin_timeout = pin_timeout
        """How long a CID nobody provides stays "pinning" before it turns "pin_error"."""
        self.config_dir = workdir / "config"
        kubo = urlsplit(kubo_api_url)
        if kubo.hostname is None or kubo.port is None:
            raise ValueError(f"Kubo API URL needs a host and a port: {kubo_api_url!r}")
        self.kubo_multiaddr = f"/ip4/{kubo.hostname}/tcp/{kubo.port}"
        if (username is None) != (password is None):
            raise ValueError("give both username and password, or neither")
        self.username, self.password = username, password
        self.secret = secrets.token_hex(32)
        """The cluster secret (private network key); random so no two test clusters peer."""
        self.api_port = free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.pinsvc_port = free_port()
        self.pinsvc_url = f"http://127.0.0.1:{self.pinsvc_port}"
        """The cluster's IPFS Pinning Service API (``pinsvcapi``), with the same credentials."""
        self.process: Process | None = None

    @property
    def auth(self) -> tuple[str, str] | None:
        if self.username is None or self.password is None:
            return None
        return self.username, self.password

    def service(self, *args: str) -> None:
        """Run ``ipfs-cluster-service`` once (not the daemon) against this peer's config."""
        done = subprocess.run(
            [str(tools.binary("ipfs-cluster-service")), "--config", str(self.config_dir), *args],
            capture_output=True,
            env={"PATH": "/usr/bin:/bin", "HOME": str(self.workdir), "CLUSTER_SECRET": self.secret},
            check=False,
        )
        if done.returncode != 0:
            raise RuntimeError(
                f"ipfs-cluster-service {' '.join(args)} failed: {done.stderr.decode()[-2000:]}"
            )

    def configure(self, config: dict[str, Any]) -> None:
        """Rewrite ``service.json`` in place: loopback-only listeners, our Kubo, our auth."""
        cluster = config["cluster"]
        cluster["listen_multiaddress"] = [loopback(free_port())]
        cluster["announce_multiaddress"] = []
        cluster["peer_addresses"] = []
        cluster["enable_relay_hop"] = False
        cluster["mdns_interval"] = "0s"  # no LAN discovery: tests must not find other peers
        cluster["monitor_ping_interval"] = "2s"  # metrics (freespace, peers) fresh quickly
        apis = config["api"]
        apis["restapi"]["http_listen_multiaddress"] = loopback(self.api_port)
        apis["pinsvcapi"]["http_listen_multiaddress"] = loopback(self.pinsvc_port)
        apis["ipfsproxy"]["listen_multiaddress"] = loopback(free_port())
        apis["ipfsproxy"]["node_multiaddress"] = self.kubo_multiaddr
        credentials = None if self.auth is None else {self.auth[0]: self.auth[1]}
        apis["restapi"]["basic_auth_credentials"] = credentials
        apis["pinsvcapi"]["basic_auth_credentials"] = credentials
        connector = config["ipfs_connector"]["ipfshttp"]
        connector["node_multiaddress"] = self.kubo_multiaddr
        connector["pin_timeout"] = self.pin_timeout
        for informer in config["informer"].values():
            informer["metric_ttl"] = "10s"
        pebble = config.get("datastore", {}).get("pebble", {}).get("pebble_options")
        if pebble is not None:  # the defaults (1 GiB cache, 64 MiB memtables) are for servers
            pebble["cache_size_bytes"] = 16 << 20
            pebble["mem_table_size"] = 4 << 20

    def start(self) -> IpfsCluster:
        self.workdir.mkdir(parents=True, exist_ok=True)
        service_json = self.config_dir / "service.json"
        if not service_json.exists():
            self.service("init", "--consensus", "crdt")
        config = json.loads(service_json.read_text())
        self.configure(config)
        service_json.write_text(json.dumps(config, indent=2))
        argv = [
            str(tools.binary("ipfs-cluster-service")),
            "--config",
            str(self.config_dir),
            "daemon",
        ]
        self.process = Process(
            "ipfs-cluster", argv, workdir=self.workdir, env={"HOME": str(self.workdir)}
        ).start()
        self.process.wait_until(self.answers_id, timeout=60, what="cluster REST /id")
        return self

    def answers_id(self) -> bool:
        """The REST API answers ``/id`` and the peer sees its IPFS daemon."""
        response = httpx.get(f"{self.api_url}/id", auth=self.auth, timeout=2)
        if response.status_code != 200:
            return False
        ipfs = response.json().get("ipfs") or {}
        return not ipfs.get("error")

    def token(self) -> str:
        """A bearer token for both APIs: the JWT that ``POST /token`` issues for the basic-auth
        user (HS256, signed with its password), as a Pinning Service API client sends it."""
        response = httpx.post(f"{self.api_url}/token", auth=self.auth, timeout=10)
        response.raise_for_status()
        token: str = response.json()["token"]
        return token

    def get(self, path: str, **params: str) -> httpx.Response:
        """A GET on the REST API with the peer's own credentials (for tests to look behind)."""
        return httpx.get(f"{self.api_url}{path}", params=params, auth=self.auth, timeout=30)

    def status(self, cid: str) -> dict[str, Any]:
        """``GET /pins/<cid>``: the global status, with a ``peer_map`` of per-peer statuses."""
        response = self.get(f"/pins/{cid}")
        response.raise_for_status()
        status: dict[str, Any] = response.json()
        return status

    def allocation(self, cid: str) -> dict[str, Any] | None:
        """``GET /allocations/<cid>``: the pin as the shared state has it, or None."""
        response = self.get(f"/allocations/{cid}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        pin: dict[str, Any] = response.json()
        return pin

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop(timeout=20)
            self.process = None


@contextlib.contextmanager
def running(
    workdir: pathlib.Path, kubo_api_url: str, *, pin_timeout: str = "2m0s"
) -> Iterator[IpfsCluster]:
    """A started peer whose APIs want basic auth (user ``pinsync``, a random password), stopped
    when the block ends."""
    peer = IpfsCluster(
        workdir,
        kubo_api_url,
        username="pinsync",
        password=secrets.token_urlsafe(18),
        pin_timeout=pin_timeout,
    )
    try:
        yield peer.start()
    finally:
        peer.stop()
