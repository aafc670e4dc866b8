"""S3 and S3-compatible stores (AWS, MinIO, Ceph RGW, ...), through aiobotocore.

Small CARs go up in one PutObject; larger ones as a streamed multipart upload, holding one part
in memory at a time. S3 makes an object visible only when PutObject or CompleteMultipartUpload
returns, so uploads are atomic without temporary names; an interrupted multipart upload is
aborted (and a bucket lifecycle rule should clean up any a crash left behind).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
from collections.abc import AsyncIterator, Mapping
from typing import Any, ClassVar

import aiobotocore.session
import botocore.exceptions
from aiobotocore.config import AioConfig

from pinsync import reasons
from pinsync.backends import base, errors, objectstore

PART_SIZE = 8 * 1024 * 1024
"""Multipart part size, give or take one chunk (S3's minimum is 5 MiB); about the most one upload
holds in memory."""

AUTH_CODES = {"InvalidAccessKeyId", "SignatureDoesNotMatch", "InvalidToken", "ExpiredToken"}
PERMISSION_CODES = {"AccessDenied", "403", "AllAccessDisabled"}
MISSING_BUCKET_CODES = {"NoSuchBucket"}
FULL_CODES = {"QuotaExceeded", "XMinioStorageFull", "EntityTooLarge"}
BARE_HEAD_CODES = {"400", "403", "404"}
"""What botocore calls a HEAD request's error: the bare status, as the answer has no body."""


def error_code(exc: botocore.exceptions.ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def translate(exc: Exception, what: str) -> errors.BackendError:
    """Map botocore's exceptions onto the backend error vocabulary (messages carry no secrets)."""
    if isinstance(exc, botocore.exceptions.ClientError):
        code = error_code(exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        text = f"{what}: {code or status}"
        if code in AUTH_CODES:
            return errors.AuthFailed(f"{what}: the server rejected the credentials ({code})")
        if code in MISSING_BUCKET_CODES or (code == "404" and what.startswith("bucket")):
            return errors.LocationNotFound(text, reason=reasons.BUCKET_NOT_FOUND)
        if code in PERMISSION_CODES:
            return errors.PermissionDenied(text)
        if code in {"NoSuchKey", "404", "NotFound"}:
            return errors.PinNotFound(text)
        if code in FULL_CODES:
            return errors.StorageFull(text)
        return errors.BackendError(text)
    if isinstance(
        exc,
        # Connect failures (refused, DNS, TLS, timeouts) and transport failures after connecting
        # (connection closed, read timeout, a body cut off mid-stream, aiobotocore's catch-all).
        botocore.exceptions.ConnectionError | botocore.exceptions.HTTPClientError | OSError,
    ):
        return errors.Unreachable(f"{what}: {type(exc).__name__}")
    if isinstance(exc, botocore.exceptions.NoCredentialsError):
        return errors.AuthFailed(f"{what}: no credentials found")
    return errors.BackendError(f"{what}: {type(exc).__name__}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class S3Config(base.Config):
    bucket: str
    prefix: str
    """Without leading or trailing slashes; empty: the bucket's root."""
    endpoint: str
    """Empty: AWS."""
    region: str
    force_path_style: bool


class S3Backend(objectstore.ObjectStoreBackend):
    credential_keys: ClassVar[base.CredentialKeys] = base.CredentialKeys(
        alternatives=(frozenset({"accessKeyId", "secretAccessKey"}),), optional_secret=True
    )
    conf: S3Config

    @classmethod
    def validate(cls, spec: Mapping[str, Any], credentials: base.Credentials) -> S3Config:
        fields = base.Fields("s3", spec)
        return S3Config(
            bucket=fields.text("bucket", empty=False),
            prefix=fields.text("prefix", "pinsync").strip("/"),
            endpoint=fields.url("endpoint", ""),
            region=fields.text("region", "") or "us-east-1",
            force_path_style=fields.flag("forcePathStyle", False),
        )

    def __init__(self, config: Mapping[str, Any], credentials: base.Credentials) -> None:
        super().__init__(config, credentials)
        self.bucket = self.conf.bucket
        self.prefix = self.conf.prefix
        self._stack = contextlib.AsyncExitStack()
        self._client: Any = None

    @property
    def location(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}" if self.prefix else f"s3://{self.bucket}"

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def translate(self, exc: Exception, what: str, *, writing: bool = False) -> errors.BackendError:
        return translate(exc, what)

    async def client(self) -> Any:
        if self._client is None:
            session = aiobotocore.session.get_session()
            config = AioConfig(
                s3={"addressing_style": "path" if self.conf.force_path_style else "auto"},
                retries={"max_attempts": 2, "mode": "standard"},
                connect_timeout=5,
                read_timeout=60,
                max_pool_connections=32,
                # Integrity is ours (sidecar sha256, CAR block hashes, size check after upload)
                # and the payload signature's (botocore SHA-256s every body it signs). Its
                # default CRC32 would hash each byte once more, and over HTTPS it sends that as
                # an aws-chunked trailer, which many S3-compatible stores reject.
                request_checksum_calculation="when_required",
                response_checksum_validation="when_required",
            )
            kwargs: dict[str, Any] = {"region_name": self.conf.region, "config": config}
            if self.conf.endpoint:
                kwargs["endpoint_url"] = self.conf.endpoint
            if self.credentials.get("accessKeyId"):
                kwargs["aws_access_key_id"] = self.credentials.get("accessKeyId")
                kwargs["aws_secret_access_key"] = self.credentials.get("secretAccessKey")
                kwargs["aws_session_token"] = self.credentials.get("sessionToken")
            self._client = await self._stack.enter_async_context(
                session.create_client("s3", **kwargs)
            )
        return self._client

    async def aclose(self) -> None:
        await self._stack.aclose()
        self._client = None

    async def _reach(self) -> None:
        client = await self.client()
        # Not HeadBucket: a HEAD answer has no body, so a bare 403 could not tell rejected
        # credentials from a denied bucket. A one-key listing's error names its code.
        with self.translating(f"bucket {self.bucket}"):
            await client.list_objects_v2(Bucket=self.bucket, Prefix=self.key(""), MaxKeys=1)

    async def _put_object(self, key: str, content: AsyncIterator[bytes]) -> int | None:
        client, full = await self.client(), self.key(key)
        # Chunks are collected until they make a part and joined once (a part's size need not
        # be exact: S3 only wants every part but the last to be at least 5 MiB).
        pending: list[bytes] = []
        pending_size = 0
        upload_id: str | None = None
        parts: list[dict[str, Any]] = []

        async def upload_part(body: bytes) -> None:
            number = len(parts) + 1
            done = await client.upload_part(
                Bucket=self.bucket, Key=full, UploadId=upload_id, PartNumber=number, Body=body
            )
            parts.append({"PartNumber": number, "ETag": done["ETag"]})

        try:
            async for chunk in content:
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= PART_SIZE:
                    if upload_id is None:
                        created = await client.create_multipart_upload(Bucket=self.bucket, Key=full)
                        upload_id = created["UploadId"]
                    body, pending, pending_size = b"".join(pending), [], 0
                    await upload_part(body)
            if upload_id is None:
                body = b"".join(pending)
                done = await client.put_object(Bucket=self.bucket, Key=full, Body=body)
                # A single-part PutObject's ETag is the MD5 of what the server stored (not
                # under SSE-KMS or SSE-C, where it is opaque: then the caller stats the object).
                etag = str(done.get("ETag", "")).strip('"')
                return len(body) if etag == hashlib.md5(body).hexdigest() else None
            if pending:
                await upload_part(b"".join(pending))
            await client.complete_multipart_upload(
                Bucket=self.bucket, Key=full, UploadId=upload_id, MultipartUpload={"Parts": parts}
            )
            upload_id = None
            return None  # a multipart ETag is not a digest of the content
        finally:
            if upload_id is not None:
                with contextlib.suppress(Exception):
                    await client.abort_multipart_upload(
                        Bucket=self.bucket, Key=full, UploadId=upload_id
                    )

    async def _get_object(self, key: str) -> AsyncIterator[bytes]:
        client = await self.client()
        response = await client.get_object(Bucket=self.bucket, Key=self.key(key))
        async with response["Body"] as body:
            async for chunk in body.iter_chunks(1024 * 1024):
                yield chunk

    async def _list_objects(self) -> AsyncIterator[tuple[str, int]]:
        client = await self.client()
        start = self.key("")
        paginator = client.get_paginator("list_objects_v2")
        async for page in paginator.paginate(Bucket=self.bucket, Prefix=start):
            for item in page.get("Contents", ()):
                yield item["Key"][len(start) :], int(item["Size"])

    async def _stat_object(self, key: str) -> int | None:
        client, full = await self.client(), self.key(key)
        try:
            head = await client.head_object(Bucket=self.bucket, Key=full)
        except botocore.exceptions.ClientError as exc:
            if error_code(exc) not in BARE_HEAD_CODES:
                raise
            # A HEAD answer has no body: its bare 404 cannot tell a missing key from a missing
            # bucket, nor its 403 rejected credentials from a denied read. Ask again with a GET
            # (same permission), whose error names its code.
            return await self._stat_by_get(client, key)
        return int(head["ContentLength"])

    async def _stat_by_get(self, client: Any, key: str) -> int | None:
        try:
            response = await client.get_object(Bucket=self.bucket, Key=self.key(key))
        except Exception as exc:
            error = translate(exc, f"stat {self.where(key)}")
            if isinstance(error, errors.PinNotFound):
                return None
            raise error from None
        async with response["Body"]:  # it appeared meanwhile: close without reading it
            return int(response["ContentLength"])

    async def _delete_object(self, key: str) -> None:
        client = await self.client()
        await client.delete_object(Bucket=self.bucket, Key=self.key(key))
