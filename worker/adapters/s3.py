"""S3 calls of the csv job: head, streaming get, put, multipart uploads that never linger."""

from __future__ import annotations

import asyncio
import contextlib
import urllib.parse
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from worker.adapters.aws_errors import error_code, http_status, mapped
from worker.errors import PermanentError, RetryableError

if TYPE_CHECKING:
    from types_aiobotocore_s3 import S3Client
    from types_aiobotocore_s3.type_defs import TagTypeDef

_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
# Parts carry their own CRC32 (S3 checks each one and composes the object's); it also
# spares a server the whole-object checksum it computes otherwise (moto's is slow).
CHECKSUM = "CRC32"


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    etag: str  # as S3 returns it, quotes included
    size: int
    version_id: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)


def _meaning(exc: ClientError, what: str) -> RetryableError | PermanentError | None:
    """What S3's answers mean to the csv job, beyond the general rules of aws_errors."""
    code = error_code(exc)
    if code == "NoSuchUpload":
        # Aborted under us: a retry of this job clears the uploads an earlier attempt left,
        # and this attempt was taken for dead (frozen past its lease). Trying again finds
        # the retry's output, or converts anew; it is no reason to give up the job.
        return RetryableError(f"{what}: the upload was aborted (by a retry of this job?)")
    if _missing(exc):
        return PermanentError(f"{what}: the object does not exist (deleted before conversion?)")
    if code in ("PreconditionFailed", "412") or http_status(exc) == 412:
        return RetryableError(f"{what}: the object changed while it was read")
    return None


def _missing(exc: ClientError) -> bool:
    return error_code(exc) in _MISSING or http_status(exc) == 404


class S3:
    """The S3 operations the csv job needs, on one shared aiobotocore client."""

    def __init__(self, client: S3Client) -> None:
        self._client = client

    async def head(self, bucket: str, key: str) -> ObjectInfo | None:
        """The object's facts, or None when it does not exist."""
        with mapped(f"HeadObject s3://{bucket}/{key}", _meaning):
            try:
                response = await self._client.head_object(Bucket=bucket, Key=key)
            except ClientError as exc:
                if not _missing(exc):
                    raise
                return None
        return ObjectInfo(
            bucket=bucket,
            key=key,
            etag=str(response.get("ETag", "")),
            size=int(response.get("ContentLength", 0)),
            version_id=response.get("VersionId"),
            metadata=dict(response.get("Metadata", {})),
        )

    async def tags(self, bucket: str, key: str) -> dict[str, str]:
        what = f"GetObjectTagging s3://{bucket}/{key}"
        with mapped(what, _meaning):
            response = await self._client.get_object_tagging(Bucket=bucket, Key=key)
        return {t["Key"]: t["Value"] for t in response.get("TagSet", [])}

    async def tag(self, bucket: str, key: str, tags: Mapping[str, str]) -> None:
        what = f"PutObjectTagging s3://{bucket}/{key}"
        tag_set: list[TagTypeDef] = [{"Key": k, "Value": v} for k, v in tags.items()]
        with mapped(what, _meaning):
            await self._client.put_object_tagging(
                Bucket=bucket, Key=key, Tagging={"TagSet": tag_set}
            )

    async def stream(
        self, source: ObjectInfo, *, chunk_bytes: int = 1024 * 1024
    ) -> AsyncIterator[bytes]:
        """The object's bytes in chunks, from the version `head` saw (or a RetryableError)."""
        what = f"GetObject s3://{source.bucket}/{source.key}"
        request: dict[str, Any] = {"Bucket": source.bucket, "Key": source.key}
        if source.version_id:
            request["VersionId"] = source.version_id
        elif source.etag:
            request["IfMatch"] = source.etag
        with mapped(what, _meaning):
            response = await self._client.get_object(**request)
            async with response["Body"] as body:
                while chunk := await body.read(chunk_bytes):
                    yield chunk

    async def abort_uploads(self, bucket: str, key: str) -> int:
        """Abort every incomplete multipart upload of exactly `key`; return how many."""
        what = f"ListMultipartUploads s3://{bucket}/{key}"
        aborted = 0
        with mapped(what, _meaning):
            response = await self._client.list_multipart_uploads(Bucket=bucket, Prefix=key)
            for upload in response.get("Uploads", []):
                if upload.get("Key") == key:
                    await self._client.abort_multipart_upload(
                        Bucket=bucket, Key=key, UploadId=upload["UploadId"]
                    )
                    aborted += 1
        return aborted

    def writer(
        self,
        bucket: str,
        key: str,
        *,
        part_bytes: int,
        metadata: Mapping[str, str],
        content_type: str,
        parts_in_flight: int = 2,
    ) -> OutputWriter:
        return OutputWriter(
            self._client,
            bucket,
            key,
            part_bytes=part_bytes,
            metadata=metadata,
            content_type=content_type,
            parts_in_flight=parts_in_flight,
        )


class OutputWriter:
    """Collects an output: full parts go up as a multipart upload while more is written; an
    output smaller than one part is a single PUT. `abort()` removes an unfinished upload."""

    def __init__(
        self,
        client: S3Client,
        bucket: str,
        key: str,
        *,
        part_bytes: int,
        metadata: Mapping[str, str],
        content_type: str,
        parts_in_flight: int,
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._key = key
        self._part_bytes = part_bytes
        self._metadata = dict(metadata)
        self._content_type = content_type
        self._limit = parts_in_flight
        self._buffer = bytearray()
        self._upload_id: str | None = None
        self._parts: dict[int, dict[str, Any]] = {}
        self._numbered = 0
        self._running: set[asyncio.Task[None]] = set()
        self.size = 0
        self.whole: bytes | None = None  # the output itself, when it went up in one PUT

    @property
    def where(self) -> str:
        return f"s3://{self._bucket}/{self._key}"

    @property
    def parts(self) -> int:
        """Parts uploaded so far (0: the output went up, or will, in one PUT)."""
        return self._numbered

    async def write(self, pieces: list[bytes]) -> None:
        for piece in pieces:
            self._buffer += piece
            self.size += len(piece)
        while len(self._buffer) >= self._part_bytes:
            part = bytes(self._buffer[: self._part_bytes])
            del self._buffer[: self._part_bytes]
            await self._send(part)

    async def close(self, tags: Mapping[str, str]) -> None:
        """Finish the object; `tags` (rows, columns) go on it as object tags."""
        tagging = urllib.parse.urlencode(tags)
        if self._upload_id is None:
            self.whole = bytes(self._buffer)
            await self._call(
                "PutObject",
                self._client.put_object,
                Bucket=self._bucket,
                Key=self._key,
                Body=self.whole,
                Metadata=self._metadata,
                ContentType=self._content_type,
                Tagging=tagging,
            )
            return
        if self._buffer:
            await self._send(bytes(self._buffer))
            self._buffer.clear()
        await self._wait(0)
        parts = [self._parts[n] for n in sorted(self._parts)]
        await self._call(
            "CompleteMultipartUpload",
            self._client.complete_multipart_upload,
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            MultipartUpload={"Parts": parts},
        )
        self._upload_id = None
        await S3(self._client).tag(self._bucket, self._key, tags)

    async def abort(self) -> None:
        """Stop sending parts and abort the upload, if one was started and not completed."""
        for task in self._running:
            task.cancel()
        if self._running:
            await asyncio.gather(*self._running, return_exceptions=True)
        self._running.clear()
        if self._upload_id is not None:
            upload_id, self._upload_id = self._upload_id, None
            with contextlib.suppress(RetryableError, PermanentError):
                await self._call(
                    "AbortMultipartUpload",
                    self._client.abort_multipart_upload,
                    Bucket=self._bucket,
                    Key=self._key,
                    UploadId=upload_id,
                )

    async def _send(self, data: bytes) -> None:
        if self._upload_id is None:
            response = await self._call(
                "CreateMultipartUpload",
                self._client.create_multipart_upload,
                Bucket=self._bucket,
                Key=self._key,
                Metadata=self._metadata,
                ContentType=self._content_type,
                ChecksumAlgorithm=CHECKSUM,
            )
            self._upload_id = str(response["UploadId"])
        await self._wait(self._limit - 1)
        self._numbered += 1
        task = asyncio.create_task(self._upload_part(self._numbered, data))
        self._running.add(task)

    async def _upload_part(self, number: int, data: bytes) -> None:
        response = await self._call(
            f"UploadPart {number}",
            self._client.upload_part,
            Bucket=self._bucket,
            Key=self._key,
            UploadId=self._upload_id,
            PartNumber=number,
            Body=data,
            ChecksumAlgorithm=CHECKSUM,
        )
        part = {"PartNumber": number, "ETag": response["ETag"]}
        if "ChecksumCRC32" in response:
            part["ChecksumCRC32"] = response["ChecksumCRC32"]
        self._parts[number] = part

    async def _wait(self, at_most: int) -> None:
        """Wait until no more than `at_most` parts are uploading; surface their failures."""
        while len(self._running) > at_most:
            done, _ = await asyncio.wait(self._running, return_when=asyncio.FIRST_COMPLETED)
            self._running -= done
            for task in done:
                task.result()

    async def _call(self, what: str, method: Any, **request: Any) -> Any:
        with mapped(f"{what} {self.where}", _meaning):
            return await method(**request)
