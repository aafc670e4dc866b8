"""A real IPFS Cluster (``ipfs-cluster-service``): one peer in front of a harness Kubo, or two.

The backend for ``type: ipfsCluster`` talks to the cluster's REST API, and the cluster pins on
the Kubo it is connected to; testing it against a fake REST server would test our reading of
the docs, not the cluster. So the harness runs the real daemon: ``init`` (CRDT consensus, so a
single peer needs no Raft bootstrap) in a temporary directory, then every listener is moved to a
free loopback port (the defaults, 9094-9097, would collide with a second cluster or with a
developer's own), the IPFS connector pointed at the given Kubo API, and optionally basic-auth
credentials put on the REST API and the Pinning Service API (``pinsvcapi``, which the
``pinningService`` backend is tested against; both also take the JWT of :meth:`token`) so
that authentication failures can be tested for real.

A second peer joins the first with ``IpfsCluster(..., join=first)``: the same cluster secret,
CRDT with ``trusted_peers: ["*"]``, and the first peer's cluster multiaddress as its bootstrap
(``peer_addresses``). :func:`two_peers` starts such a pair, each peer in front of a Kubo of its
own (the two Kubos swarm-connected, so a pin allocated to one peer can fetch content added to
the other's node), and waits until both list each other in ``GET /peers``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import pathlib
import secrets
import subprocess
import time
from collections.abc import Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

import httpx

from pinsync import clusterpins
from pinsync.devenv import kubo, tools
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
        peername: str | None = None,
        join: IpfsCluster | None = None,
    ) -> None:
        """``join``: a started peer whose cluster this one joins (its secret, its address as
        the bootstrap). ``peername`` defaults to the work directory's name (``init`` would use
        the host name: every peer of a test cluster would be called the same)."""
        self.workdir = workdir
        self.peername = peername or workdir.name
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
        self.secret: str = join.secret if join is not None else secrets.token_hex(32)
        """The cluster secret (private network key); random so no two test clusters peer."""
        self.bootstrap = [join.cluster_multiaddr] if join is not None else []
        """Cluster multiaddresses (with ``/p2p/<id>``) of peers to join at start."""
        self.cluster_port = free_port()
        """The libp2p port of the cluster peer itself (kept across restarts)."""
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

    @property
    def peer_id(self) -> str:
        """The cluster peer ID (``identity.json``, written by ``init`` in :meth:`start`)."""
        identity = json.loads((self.config_dir / "identity.json").read_text())
        peer_id: str = identity["id"]
        return peer_id

    @property
    def cluster_multiaddr(self) -> str:
        """Where other peers reach this one: ``/ip4/127.0.0.1/tcp/<port>/p2p/<peer ID>``."""
        return f"{loopback(self.cluster_port)}/p2p/{self.peer_id}"

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
        cluster["peername"] = self.peername
        cluster["secret"] = self.secret
        cluster["listen_multiaddress"] = [loopback(self.cluster_port)]
        cluster["announce_multiaddress"] = []
        cluster["peer_addresses"] = self.bootstrap
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
        config["consensus"]["crdt"]["trusted_peers"] = ["*"]  # every peer may pin (the default)
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

    def peers(self) -> list[dict[str, Any]]:
        """``GET /peers``: one ID object per cluster peer this peer knows (a JSON stream)."""
        response = self.get("/peers")
        response.raise_for_status()
        decoder = clusterpins.JsonValues("cluster /peers")
        found = decoder.feed(response.text)
        decoder.close()
        return found

    def sees(self, count: int) -> bool:
        """This peer lists ``count`` peers in ``/peers``, none with an error, and has every
        metric (``freespace``, ``tags``, ``ping``...) of each: the allocator ignores a peer it
        lacks one for, so a pin allocated to it before would go to another peer."""
        listed = self.peers()
        if len(listed) != count or any(peer.get("error") for peer in listed):
            return False
        names = self.get("/monitor/metrics").json() or []
        if "freespace" not in names:
            return False
        for name in names:
            metrics = self.get(f"/monitor/metrics/{name}").json() or []
            if len({metric["peer"] for metric in metrics if metric.get("valid")}) < count:
                return False
        return True

    def wait_for_peers(self, count: int, *, timeout: float = 60) -> None:
        """Until this peer lists ``count`` healthy peers (itself included) with their metrics."""
        assert self.process is not None, "not started"
        self.process.wait_until(
            lambda: self.sees(count), timeout=timeout, what=f"{count} peers in /peers"
        )

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

    def pin(self, cid: str, **params: str) -> dict[str, Any]:
        """``POST /pins/<cid>`` with the peer's credentials; ``params`` are the cluster's pin
        options as query parameters (``name``, ``replication-min``, ``user-allocations``,
        ``meta-<key>``...). The pin as the cluster stored it."""
        response = httpx.post(
            f"{self.api_url}/pins/{cid}", params=params, auth=self.auth, timeout=30
        )
        response.raise_for_status()
        pin: dict[str, Any] = response.json()
        return pin

    def statuses(self, cid: str) -> dict[str, str]:
        """{peername: status} of ``cid`` on every peer (``GET /pins/<cid>``)."""
        return {
            str(info.get("peername")): str(info.get("status"))
            for info in self.status(cid)["peer_map"].values()
        }

    def wait_for_statuses(
        self, expected: Mapping[str, Mapping[str, str]], *, timeout: float = 60
    ) -> None:
        """Until every CID of ``expected`` has the {peername: status} given there."""
        deadline = time.monotonic() + timeout
        while (found := {cid: self.statuses(cid) for cid in expected}) != expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"pin statuses after {timeout}s: {found}, not {expected}")
            time.sleep(0.3)

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


@dataclasses.dataclass(frozen=True)
class Member:
    """One peer of a multi-peer test cluster and the Kubo it pins on (its own)."""

    peer: IpfsCluster
    kubo: kubo.Kubo


@contextlib.contextmanager
def two_peers(
    workdir: pathlib.Path,
    *,
    username: str | None = "pinsync",
    password: str | None = None,
    pin_timeout: str = "2m0s",
) -> Iterator[tuple[Member, Member]]:
    """Two peers of one CRDT cluster, each in front of a Kubo of its own; stopped on exit.

    Both REST APIs want the same basic-auth user (``username``, ``password``: a random one
    unless given; ``username=None`` turns auth off). The Kubos are swarm-connected, so a pin
    allocated to one peer fetches content that was added to the other's node. Returns once each
    peer lists both in ``GET /peers``. Peer names are ``peer-0`` and ``peer-1``.
    """
    if username is not None and password is None:
        password = secrets.token_urlsafe(18)
    nodes: list[kubo.Kubo] = []
    peers: list[IpfsCluster] = []
    try:
        for index in range(2):
            node = kubo.Kubo(workdir / f"kubo-{index}")
            nodes.append(node)
            node.start()
            peer = IpfsCluster(
                workdir / f"peer-{index}",
                node.api_url,
                username=username,
                password=password,
                pin_timeout=pin_timeout,
                peername=f"peer-{index}",
                join=peers[0] if peers else None,
            )
            peers.append(peer)
            peer.start()
        nodes[1].ipfs("swarm", "connect", swarm_address(nodes[0]))
        for peer in peers:
            peer.wait_for_peers(2)
        yield Member(peers[0], nodes[0]), Member(peers[1], nodes[1])
    finally:
        for peer in reversed(peers):
            peer.stop()
        for node in reversed(nodes):
            node.stop()


def swarm_address(node: kubo.Kubo) -> str:
    """A loopback swarm address of ``node``, with its ``/p2p/`` peer ID."""
    identity = httpx.post(f"{node.api_url}/api/v0/id", timeout=30).json()
    return next(str(a) for a in identity["Addresses"] if a.startswith("/ip4/127.0.0.1/"))
