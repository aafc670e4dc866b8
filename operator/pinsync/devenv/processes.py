"""Starting and stopping server processes without leaving strays behind."""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence

import httpx
from aiohttp import web


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class Process:
    """A server in its own session (process group), logging to ``<workdir>/<name>.log``."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        workdir: pathlib.Path,
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.name, self.argv, self.workdir = name, list(argv), workdir
        self.env = {**os.environ, **(env or {})}
        self.log_path = workdir / f"{name}.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        log = self.log_path.open("ab")
        self.popen = subprocess.Popen(
            self.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=self.env,
            cwd=self.workdir,
            start_new_session=True,
        )
        log.close()
        return self

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def log_tail(self, lines: int = 30) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        return ""

    def stop(self, timeout: float = 10.0, sig: int = signal.SIGTERM) -> None:
        """Signal the whole group; escalate to SIGKILL after ``timeout`` seconds."""
        if self.popen is None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)
        try:
            self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()
        with contextlib.suppress(ProcessLookupError):  # children that outlived the leader
            os.killpg(self.popen.pid, signal.SIGKILL)
        self.popen = None

    def kill(self) -> None:
        self.stop(timeout=5, sig=signal.SIGKILL)

    def wait_until(self, check: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll ``check`` until true; fail with the log tail if the process dies or times out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running:
                raise RuntimeError(
                    f"{self.name} exited while waiting for {what}:\n{self.log_tail()}"
                )
            with contextlib.suppress(Exception):
                if check():
                    return
            time.sleep(0.2)
        raise TimeoutError(f"{self.name}: no {what} after {timeout}s:\n{self.log_tail()}")


def http_ok(url: str, **kwargs: object) -> Callable[[], bool]:
    def check() -> bool:
        return httpx.get(url, timeout=2, **kwargs).status_code == 200  # type: ignore[arg-type]

    return check


class Server:
    """A test server run as one :class:`Process`: whether it runs, and stopping it."""

    process: Process | None = None

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
        self.process = None


async def serve(app: web.Application, port: int) -> None:
    """Serve an aiohttp app on a loopback port until the process is stopped."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    await asyncio.Event().wait()


def pinsync_worker(
    name: str,
    *,
    kubeconfig: pathlib.Path,
    namespace: str,
    workdir: pathlib.Path,
    env: Mapping[str, str],
    identity: str | None = None,
    args: Sequence[str] = (),
) -> Process:
    """``pinsync worker`` serving ``namespace`` as ``identity`` (default ``name``), started."""
    workdir.mkdir(parents=True, exist_ok=True)
    argv = [
        sys.executable,
        "-m",
        "pinsync",
        "worker",
        f"--kubeconfig={kubeconfig}",
        f"--identity={identity or name}",
        "-n",
        namespace,
        "-v",
        *args,
    ]
    return Process(name, argv, workdir=workdir, env=env).start()
