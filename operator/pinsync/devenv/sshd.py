"""A real OpenSSH ``sshd`` on a free loopback port, for the SFTP backend's tests and demos.

It runs with its own configuration, host key, authorized keys and PID file in the work
directory (``-D -e -f <config>``), never touching the system's ``/etc/ssh``. Logins are
restricted to one user and to SFTP (``ForceCommand internal-sftp``).

Password logins need a real account (``UsePAM no`` checks ``/etc/shadow``), and permission
tests need a user that, unlike root, is bound by file modes. So when run as root (CI, dev
containers) the login user is a dedicated local account, ``pinsync-test``: created if missing,
with no shell, and a random password generated once per machine and kept in a root-only file,
so that concurrent test sessions on one machine agree on it and it is published nowhere. Run
as any other user, the login user is that user and there is no password (password tests skip).

``stop`` kills the server *and* the per-connection processes it forked: sshd puts each
connection in its own session, so they would otherwise outlive it, and a test that stops the
server wants open connections to drop as if the machine went away.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import hashlib
import os
import pathlib
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile

from pinsync.devenv.processes import Process, free_port

SSHD_BINARY = "/usr/sbin/sshd"
TEST_USER = "pinsync-test"
STATE_DIR = pathlib.Path("/var/lib/pinsync-test")
"""Root-only directory keeping the test user's password, shared by every session on the host."""
PRIVSEP_DIR = pathlib.Path("/run/sshd")
"""sshd (as root) refuses to start without its privilege-separation directory."""


class SSHDError(RuntimeError):
    pass


def sshd_binary() -> str:
    path = os.environ.get("PINSYNC_SSHD") or shutil.which("sshd") or SSHD_BINARY
    if not os.access(path, os.X_OK):
        raise SSHDError(
            f"{path} not found: install OpenSSH's server (apt-get install openssh-server)"
        )
    return path


def fingerprint(public_key_line: str) -> str:
    """OpenSSH's SHA256 fingerprint of a public key line (``<type> <base64> [comment]``)."""
    blob = base64.b64decode(public_key_line.split()[1])
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


def keygen(path: pathlib.Path, comment: str) -> None:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", str(path)],
        check=True,
        capture_output=True,
    )


def ensure_test_user() -> tuple[str, str]:
    """Create the ``pinsync-test`` account if missing and return (name, password).

    Under an exclusive lock, so that concurrent sessions neither race ``useradd`` nor set
    different passwords under each other's feet; ``chpasswd`` runs every time (same password)
    so an account whose password was changed or locked meanwhile is repaired.
    """
    STATE_DIR.mkdir(mode=0o700, parents=True, exist_ok=True)
    with (STATE_DIR / ".lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            pwd.getpwnam(TEST_USER)
        except KeyError:
            subprocess.run(
                [
                    "useradd",
                    "--create-home",
                    "--shell",
                    "/usr/sbin/nologin",
                    "--comment",
                    "pinsync SFTP tests",
                    TEST_USER,
                ],
                check=True,
                capture_output=True,
            )
        password_file = STATE_DIR / "password"
        if not password_file.exists():
            fd = os.open(password_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(24))
        password = password_file.read_text().strip()
        subprocess.run(["chpasswd"], input=f"{TEST_USER}:{password}\n", text=True, check=True)
    return TEST_USER, password


class SSHD:
    """An OpenSSH server serving SFTP; ``root`` is a directory the login user may write."""

    def __init__(self, workdir: pathlib.Path) -> None:
        self.workdir = workdir
        self.host = "127.0.0.1"
        self.port = free_port()
        self.username = pwd.getpwuid(os.geteuid()).pw_name
        self.password: str | None = None
        self.private_key = ""
        """The login user's private key, OpenSSH PEM text (unencrypted)."""
        self.public_key = ""
        self.host_public_key = ""
        self.known_hosts = ""
        """A known_hosts line for this server (``[127.0.0.1]:<port> ssh-ed25519 ...``)."""
        self.host_key_fingerprint = ""
        self.root = pathlib.Path()
        """A directory the login user owns: base paths go here."""
        self.shared = pathlib.Path()
        """Holds ``root`` and authorized_keys; readable by the login user, writable by us only."""
        self.uid, self.gid = os.geteuid(), os.getegid()
        self.process: Process | None = None

    # -- set-up (once) -------------------------------------------------------------------------

    def prepare(self) -> None:
        """Keys, user, data directory and configuration; idempotent, so restarts reuse them."""
        if self.private_key:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            self.username, self.password = ensure_test_user()
            PRIVSEP_DIR.mkdir(mode=0o755, parents=True, exist_ok=True)
        entry = pwd.getpwnam(self.username)
        self.uid, self.gid = entry.pw_uid, entry.pw_gid

        client_key = self.workdir / "client_ed25519"
        keygen(client_key, "pinsync-test")
        self.private_key = client_key.read_text()
        self.public_key = client_key.with_suffix(".pub").read_text().strip()
        self.make_host_key()

        # Outside the work directory (which may be root-only, 0700): the login user must reach
        # the data directory, and sshd reads authorized_keys with the user's rights.
        self.shared = pathlib.Path(tempfile.mkdtemp(prefix="pinsync-sftp-"))
        self.shared.chmod(0o755)
        (self.shared / "authorized_keys").write_text(self.public_key + "\n")
        (self.shared / "authorized_keys").chmod(0o644)
        self.root = self.shared / "data"
        self.root.mkdir(mode=0o755)
        os.chown(self.root, self.uid, self.gid)
        self.write_config()

    def make_host_key(self) -> None:
        host_key = self.workdir / "ssh_host_ed25519_key"
        for path in (host_key, host_key.with_suffix(".pub")):
            path.unlink(missing_ok=True)
        keygen(host_key, "pinsync-test-host")
        self.host_public_key = host_key.with_suffix(".pub").read_text().strip()
        key_type, key_data = self.host_public_key.split()[:2]
        self.known_hosts = f"[{self.host}]:{self.port} {key_type} {key_data}"
        self.host_key_fingerprint = fingerprint(self.host_public_key)

    def rotate_host_key(self) -> None:
        """A new host key at the same address, as after a reinstall (or a man in the middle)."""
        running = self.running
        self.stop()
        self.make_host_key()
        if running:
            self.start()

    def write_config(self) -> None:
        lines = [
            f"Port {self.port}",
            f"ListenAddress {self.host}",
            f"HostKey {self.workdir / 'ssh_host_ed25519_key'}",
            f"PidFile {self.workdir / 'sshd.pid'}",
            f"AuthorizedKeysFile {self.shared / 'authorized_keys'}",
            f"AllowUsers {self.username}",
            f"PermitRootLogin {'yes' if self.username == 'root' else 'no'}",
            "PubkeyAuthentication yes",
            f"PasswordAuthentication {'yes' if self.password else 'no'}",
            "KbdInteractiveAuthentication no",
            "PermitEmptyPasswords no",
            "StrictModes no",
            "UsePAM no",
            "UseDNS no",
            "Subsystem sftp internal-sftp",
            "ForceCommand internal-sftp",
            "AllowTcpForwarding no",
            "AllowAgentForwarding no",
            "X11Forwarding no",
            "PermitTTY no",
            "LoginGraceTime 30",
            "MaxStartups 100",
            "MaxAuthTries 6",
            "LogLevel VERBOSE",
        ]
        config = self.workdir / "sshd_config"
        # Newer OpenSSH (9.8+) penalises addresses that fail to log in by refusing them for a
        # while: the wrong-credentials tests would lock every later test out of 127.0.0.1.
        with_penalties = [*lines, "PerSourcePenalties no"]
        config.write_text("\n".join(with_penalties) + "\n")
        if subprocess.run(
            [sshd_binary(), "-t", "-f", str(config)], capture_output=True, check=False
        ).returncode:
            config.write_text("\n".join(lines) + "\n")
            checked = subprocess.run(
                [sshd_binary(), "-t", "-f", str(config)], capture_output=True, text=True
            )
            if checked.returncode:
                raise SSHDError(f"sshd rejects its configuration:\n{checked.stderr}")

    # -- running -------------------------------------------------------------------------------

    def start(self) -> SSHD:
        self.prepare()
        self.process = Process(
            "sshd",
            [sshd_binary(), "-D", "-e", "-f", str(self.workdir / "sshd_config")],
            workdir=self.workdir,
        ).start()
        self.process.wait_until(self.banner, timeout=30, what="the SSH banner")
        return self

    def banner(self) -> bool:
        with socket.create_connection((self.host, self.port), timeout=2) as sock:
            return sock.recv(64).startswith(b"SSH-")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.running

    def stop(self) -> None:
        """Stop the server and drop every open connection; the keys and data stay."""
        if self.process is None or self.process.popen is None:
            self.process = None
            return
        sessions = descendants(self.process.popen.pid)
        self.process.stop()
        for pid in sessions:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.process = None

    def cleanup(self) -> None:
        """Stop, and remove the data directory (the work directory is the caller's)."""
        self.stop()
        if self.shared != pathlib.Path():
            shutil.rmtree(self.shared, ignore_errors=True)

    # -- helpers for tests ---------------------------------------------------------------------

    def make_dir(self, name: str, mode: int = 0o755) -> pathlib.Path:
        """A directory under ``root`` owned by the login user (as if the user had made it)."""
        path = self.root / name
        path.mkdir(parents=True, exist_ok=True)
        os.chown(path, self.uid, self.gid)
        path.chmod(mode)
        return path


def descendants(pid: int) -> list[int]:
    """Every process below ``pid`` (from /proc), children before grandchildren."""
    children: dict[int, list[int]] = {}
    for entry in pathlib.Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # The command name is in parentheses and may contain spaces: split after the last ")".
        fields = stat.rpartition(")")[2].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
    found: list[int] = []
    queue = [pid]
    while queue:
        for child in children.get(queue.pop(0), []):
            found.append(child)
            queue.append(child)
    return found
