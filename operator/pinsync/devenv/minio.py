"""A MinIO server on a free loopback port, with its data in the work directory.

``host``: the address it listens on; a real node's Pods reach the host by its node IP.
"""

from __future__ import annotations

import pathlib
import secrets
from typing import Any

from pinsync.devenv import tools
from pinsync.devenv.processes import Process, free_port, http_ok


class MinIO:
    def __init__(self, workdir: pathlib.Path, host: str = "127.0.0.1") -> None:
        self.workdir, self.host = workdir, host
        self.port = free_port()
        self.endpoint = f"http://{host}:{self.port}"
        self.access_key = "pinsync-admin"
        self.secret_key = secrets.token_urlsafe(24)
        self.process: Process | None = None

    def start(self) -> MinIO:
        (self.workdir / "data").mkdir(parents=True, exist_ok=True)
        self.process = Process(
            "minio",
            [
                str(tools.binary("minio")),
                "server",
                str(self.workdir / "data"),
                f"--address={self.host}:{self.port}",
                f"--console-address=127.0.0.1:{free_port()}",
                "--quiet",
            ],
            workdir=self.workdir,
            env={
                "MINIO_ROOT_USER": self.access_key,
                "MINIO_ROOT_PASSWORD": self.secret_key,
                "MINIO_BROWSER": "off",
                "MINIO_UPDATE": "off",
            },
        ).start()
        self.process.wait_until(
            http_ok(f"{self.endpoint}/minio/health/ready"), timeout=60, what="MinIO ready"
        )
        return self

    def client(self) -> Any:
        """A synchronous botocore S3 client with the root credentials (for set-up and checks)."""
        import botocore.session
        from botocore.config import Config

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            config=Config(s3={"addressing_style": "path"}, retries={"max_attempts": 1}),
        )

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def stop(self) -> None:
        if self.process is not None:
            self.process.stop()
