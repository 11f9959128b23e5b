"""An in-memory S3 endpoint (REST, path-style) for benchmarks, and a shaping TCP proxy for it.

`serve` (the default) answers S3's REST protocol closely enough that botocore, boto3 and
aiobotocore clients work against it unmodified, path-style (`/{bucket}/{key}`, as botocore
addresses an endpoint_url on an IP address or with `addressing_style: path`). Objects are bytes
in memory; a benchmark then measures the client, not the server. It answers:

  buckets   ListBuckets, CreateBucket (again by its owner: 200, as us-east-1 does), HeadBucket,
            DeleteBucket (409 BucketNotEmpty), GetBucketLocation;
  objects   PutObject, CopyObject (within this server), HeadObject, GetObject, DeleteObject,
            DeleteObjects, ListObjects (v1) and ListObjectsV2 (prefix, delimiter, max-keys,
            start-after/marker, continuation-token, encoding-type=url);
  tags      PutObjectTagging, GetObjectTagging, DeleteObjectTagging, x-amz-tagging on
            PutObject, CreateMultipartUpload and CopyObject (10 tags at most, as S3);
  multipart CreateMultipartUpload, UploadPart, ListParts (part-number-marker, max-parts),
            CompleteMultipartUpload, AbortMultipartUpload, ListMultipartUploads (prefix,
            key-marker, upload-id-marker, max-uploads).

Objects keep Content-Type (binary/octet-stream unless given), Content-Encoding, -Disposition,
-Language, Cache-Control, Expires and x-amz-meta-* metadata; answers carry ETag (quoted md5;
a multipart object's is md5 of the parts' md5s with "-N"), Last-Modified, Content-Length,
Accept-Ranges, x-amz-tagging-count and the response-* overrides of GetObject. GetObject takes
`Range: bytes=a-b`, `bytes=a-` and `bytes=-n` (206 + Content-Range; 416 InvalidRange beyond
the end; a range S3 would ignore, e.g. several, gives the whole object), and If-Match (412),
If-None-Match (304), If-Modified-Since, If-Unmodified-Since with S3's precedence; PutObject and
CompleteMultipartUpload take If-None-Match: * and If-Match. Errors are S3's XML
(`<Error><Code>NoSuchKey</Code>...`) with its status codes; HEAD errors have no body.

Request bodies: `Content-Encoding: aws-chunked` (or an x-amz-content-sha256 of STREAMING-*) is
decoded, signed chunks (`size;chunk-signature=`) and trailers included; the checksum the client
sent (x-amz-checksum-* header or trailer) is verified when it is CRC32, SHA1, SHA256, SHA512
or MD5 (400 BadDigest), kept and returned as S3 does: on PutObject and UploadPart, and with
`x-amz-checksum-mode: ENABLED` on a GetObject of the whole object and on HeadObject. An upload
created with x-amz-checksum-algorithm keeps a COMPOSITE checksum (the parts' checksums hashed,
"-N") unless x-amz-checksum-type is FULL_OBJECT, and its Complete must name every part's
checksum, as S3 requires. Content-MD5 is verified. Signatures and x-amz-content-sha256 are not
checked; no default CRC64NVME is computed for a PUT that sent no checksum (S3 now does).
Requests with a subresource it does not know (acl, versioning, partNumber on GET, ...) get
501 NotImplemented rather than a wrong answer. Hashes of large bodies run on a thread.

`GET /_bench/stats` returns JSON counters: requests per operation (counted when answered),
errors per operation and code, the bytes GetObject served, the request body bytes received,
how request bodies were framed and checksummed, what is stored, and the process's CPU time.
`DELETE /_bench/stats` returns them and zeroes them (not the objects).

`proxy` forwards TCP connections to `--target` and shapes each connection on its own: bytes
back to the client at most `--mbps` MB/s (1 MB = 1,000,000 bytes; token bucket), bytes to the
server at most `--up-mbps` (default: --mbps; 0: no cap), and the first byte of each response
held back by `--first-byte-ms`. It does not parse HTTP: a new response is the first bytes from
the server after the client sent some (request/response alternation on a keep-alive
connection; an interim `100 Continue` counts as a response too). On SIGUSR1 it prints its
counters as one JSON line.

`selftest` starts both as child processes and checks them with boto3 and aiobotocore (the
worker's own S3 adapter), then times GETs through the proxy. Both servers print
`listening URL` on stdout once they accept connections (`--port 0` picks a free port).

    python bench/s3_memory.py [serve] [--host 127.0.0.1] [--port 0]
    python bench/s3_memory.py proxy --target URL [--mbps 90] [--up-mbps N] [--first-byte-ms 30]
    python bench/s3_memory.py selftest
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import contextlib
import email.utils
import hashlib
import json
import re
import resource
import secrets
import signal
import subprocess
import sys
import time
import traceback
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from xml.etree import ElementTree
from xml.sax.saxutils import escape

from aiohttp import web

NS = "http://s3.amazonaws.com/doc/2006-03-01/"
MiB = 1024 * 1024
MIN_PART = 5 * MiB  # every part but the last
MAX_BODY = 5 * 1024 * MiB  # a single PUT, a part
WRITE_BYTES = MiB  # an answer goes out in writes of this size
THREAD_HASH_BYTES = 256 * 1024  # hash larger bodies on a thread, off the event loop
OWNER = (
    "<ID>75aa57f09aa0c8caeab4f8c24e99d10f8e7faeebf76c078efc7c6caea54ba06a</ID>"
    "<DisplayName>bench</DisplayName>"
)
STORED_HEADERS = (
    "Content-Type",
    "Content-Encoding",
    "Content-Disposition",
    "Content-Language",
    "Cache-Control",
    "Expires",
)
CHECKSUMS = (
    "crc32",
    "crc32c",
    "crc64nvme",
    "sha1",
    "sha256",
    "sha512",
    "md5",
    "xxhash64",
    "xxhash3",
    "xxhash128",
)
# Keys of a bucket or object request that name a configuration this server does not keep.
UNSUPPORTED = frozenset(
    {
        "accelerate",
        "acl",
        "analytics",
        "attributes",
        "cors",
        "encryption",
        "intelligent-tiering",
        "inventory",
        "legal-hold",
        "lifecycle",
        "logging",
        "metadataTable",
        "metrics",
        "notification",
        "object-lock",
        "ownershipControls",
        "policy",
        "policyStatus",
        "publicAccessBlock",
        "replication",
        "requestPayment",
        "restore",
        "retention",
        "select",
        "session",
        "torrent",
        "versioning",
        "versions",
        "website",
    }
)
_BUCKET_NAME = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


class S3Error(Exception):
    """An error answer: status, S3's code and message, extra XML fields and headers."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        headers: dict[str, str] | None = None,
        **fields: Any,
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message
        self.headers = headers or {}
        self.fields = fields


def _invalid(code: str, message: str, **fields: Any) -> S3Error:
    return S3Error(400, code, message, **fields)


@dataclass(eq=False)
class Obj:
    data: bytes
    etag: str  # quoted, as S3 sends it
    modified: float
    headers: dict[str, str]  # the STORED_HEADERS given, Content-Type always
    metadata: dict[str, str]  # x-amz-meta-* without the prefix, lower-cased
    tags: dict[str, str]
    checksum: tuple[str, str, str] | None = None  # algorithm, base64 value, type


@dataclass(eq=False)
class Part:
    data: bytes
    etag: str
    modified: float
    checksum: tuple[str, str] | None  # algorithm, base64 value


@dataclass(eq=False)
class Upload:
    key: str
    upload_id: str
    initiated: float
    headers: dict[str, str]
    metadata: dict[str, str]
    tags: dict[str, str]
    algorithm: str | None
    checksum_type: str | None
    parts: dict[int, Part] = field(default_factory=dict)


@dataclass(eq=False)
class Bucket:
    name: str
    created: float
    objects: dict[str, Obj] = field(default_factory=dict)
    uploads: dict[str, Upload] = field(default_factory=dict)
    _sorted: list[str] | None = None

    def keys(self) -> list[str]:
        """The keys in S3's order (UTF-8 bytes, the same as code points)."""
        if self._sorted is None:
            self._sorted = sorted(self.objects)
        return self._sorted

    def put(self, key: str, obj: Obj) -> None:
        if key not in self.objects:
            self._sorted = None
        self.objects[key] = obj

    def delete(self, key: str) -> bool:
        if self.objects.pop(key, None) is None:
            return False
        self._sorted = None
        return True


@dataclass
class Req:
    method: str
    bucket: str
    key: str
    query: dict[str, str]
    headers: Any  # aiohttp's CIMultiDictProxy: case-insensitive
    request: web.Request


Answer = tuple[int, dict[str, str], bytes | memoryview]


def _operation(req: Req) -> str:
    """The S3 operation a request is, from its method, path and query keys."""
    method, query, headers = req.method, req.query, req.headers
    if not req.bucket:
        return "ListBuckets" if method == "GET" else "NotImplemented"
    if UNSUPPORTED & query.keys():
        return "NotImplemented"
    if not req.key:
        if method == "GET":
            if "uploads" in query:
                return "ListMultipartUploads"
            if "location" in query:
                return "GetBucketLocation"
            if query.get("list-type") == "2":
                return "ListObjectsV2"
            return "ListObjects"
        if method == "POST" and "delete" in query:
            return "DeleteObjects"
        if query.keys() - {"x-id"}:
            return "NotImplemented"
        return {"PUT": "CreateBucket", "HEAD": "HeadBucket", "DELETE": "DeleteBucket"}.get(
            method, "NotImplemented"
        )
    upload = "uploadId" in query
    tagging = "tagging" in query
    if method == "PUT":
        if upload:
            return "NotImplemented" if "x-amz-copy-source" in headers else "UploadPart"
        if tagging:
            return "PutObjectTagging"
        return "CopyObject" if "x-amz-copy-source" in headers else "PutObject"
    if method in ("GET", "HEAD") and "partNumber" in query:
        return "NotImplemented"  # GetObject / HeadObject of one part
    if method == "GET":
        return "ListParts" if upload else "GetObjectTagging" if tagging else "GetObject"
    if method == "HEAD":
        return "HeadObject"
    if method == "DELETE":
        if upload:
            return "AbortMultipartUpload"
        return "DeleteObjectTagging" if tagging else "DeleteObject"
    if method == "POST":
        if "uploads" in query:
            return "CreateMultipartUpload"
        if upload:
            return "CompleteMultipartUpload"
    return "NotImplemented"


class MemoryS3:
    """The buckets and the operations on them, one method per S3 operation."""

    def __init__(self) -> None:
        self.buckets: dict[str, Bucket] = {}
        self.reset()

    def reset(self) -> None:
        self.requests: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.payloads: Counter[str] = Counter()
        self.checksums: Counter[str] = Counter()
        self.served = 0
        self.received = 0

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        objects = [o for b in self.buckets.values() for o in b.objects.values()]
        return {
            "requests": dict(self.requests),
            "errors": dict(self.errors),
            "get_bytes_served": self.served,
            "bytes_received": self.received,
            "request_payloads": dict(self.payloads),
            "request_checksums": dict(self.checksums),
            "buckets": len(self.buckets),
            "objects": len(objects),
            "stored_bytes": sum(len(o.data) for o in objects),
            "uploads": sum(len(b.uploads) for b in self.buckets.values()),
            "cpu_s": usage.ru_utime + usage.ru_stime,
        }

    # The HTTP shell.

    async def handle(self, request: web.Request) -> web.StreamResponse:
        raw_path = request.raw_path.split("?", 1)[0]
        if raw_path == "/_bench/stats":
            stats = self.stats()
            if request.method == "DELETE":
                self.reset()
            return web.json_response(stats)
        bucket, _, key = urllib.parse.unquote(raw_path)[1:].partition("/")
        query = {k: request.query.getone(k) for k in request.query}
        req = Req(request.method, bucket, key, query, request.headers, request)
        operation = _operation(req)
        try:
            status, headers, body = await getattr(self, "op_" + operation)(req)
        except S3Error as exc:
            self.errors[f"{operation} {exc.code}"] += 1
            status, headers, body = exc.status, exc.headers, _error_xml(exc, req)
            headers = {"Content-Type": "application/xml", **headers}
        except Exception as exc:  # a bug here: answer as S3 does, and say what it was
            traceback.print_exc()
            error = S3Error(500, "InternalError", f"{type(exc).__name__}: {exc}")
            self.errors[f"{operation} InternalError"] += 1
            status, headers, body = 500, {"Content-Type": "application/xml"}, _error_xml(error, req)
        self.requests[operation] += 1
        return await self._write(request, operation, status, headers, body)

    async def _write(
        self,
        request: web.Request,
        operation: str,
        status: int,
        headers: dict[str, str],
        body: bytes | memoryview,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers=headers)
        response.headers["Server"] = "AmazonS3"
        response.headers["x-amz-request-id"] = secrets.token_hex(8).upper()
        response.headers["x-amz-id-2"] = base64.b64encode(secrets.token_bytes(24)).decode()
        empty = request.method == "HEAD" or status in (204, 304)
        if "Content-Length" not in headers and status not in (204, 304):
            response.content_length = 0 if request.method == "HEAD" else len(body)
        await response.prepare(request)
        if not empty:
            view = memoryview(body)
            for start in range(0, len(view), WRITE_BYTES):
                piece = view[start : start + WRITE_BYTES]
                await response.write(piece)
                if operation == "GetObject":
                    self.served += len(piece)
        await response.write_eof()
        return response

    # Lookups and request bodies.

    def _bucket(self, req: Req) -> Bucket:
        bucket = self.buckets.get(req.bucket)
        if bucket is None:
            raise S3Error(
                404, "NoSuchBucket", "The specified bucket does not exist", BucketName=req.bucket
            )
        return bucket

    def _object(self, req: Req) -> tuple[Bucket, Obj]:
        bucket = self._bucket(req)
        version = req.query.get("versionId")
        if version is not None and version != "null":
            raise _invalid(
                "InvalidArgument",
                "Invalid version id specified",
                ArgumentName="versionId",
                ArgumentValue=version,
            )
        obj = bucket.objects.get(req.key)
        if obj is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=req.key)
        return bucket, obj

    def _upload(self, req: Req) -> tuple[Bucket, Upload]:
        bucket = self._bucket(req)
        upload_id = req.query.get("uploadId", "")
        upload = bucket.uploads.get(upload_id)
        if upload is None or upload.key != req.key:
            raise S3Error(
                404,
                "NoSuchUpload",
                "The specified upload does not exist. The upload ID may be invalid, or the "
                "upload may have been aborted or completed.",
                UploadId=upload_id,
            )
        return bucket, upload

    async def _read(self, req: Req) -> bytes:
        body = await req.request.read()
        self.received += len(body)
        return body

    async def _payload(self, req: Req) -> tuple[bytes, str, tuple[str, str] | None]:
        """The body of a PUT or part, decoded and verified: data, md5 hex, checksum given."""
        raw = await self._read(req)
        headers = req.headers
        sha = headers.get("x-amz-content-sha256", "")
        encodings = [e.strip().lower() for e in headers.get("Content-Encoding", "").split(",")]
        trailers: dict[str, str] = {}
        if "aws-chunked" in encodings or sha.startswith("STREAMING-"):
            data, trailers = _decode_aws_chunked(raw)
            decoded = headers.get("x-amz-decoded-content-length")
            if decoded is not None and decoded != str(len(data)):
                raise _invalid(
                    "IncompleteBody",
                    "You did not provide the number of bytes specified by the "
                    "x-amz-decoded-content-length HTTP header",
                )
            self.payloads[f"aws-chunked ({sha or 'no x-amz-content-sha256'})"] += 1
        else:
            data = raw
            kind = "signed" if re.fullmatch(r"[0-9a-f]{64}", sha) else sha or "none"
            self.payloads[f"plain (x-amz-content-sha256: {kind})"] += 1
        if len(data) > MAX_BODY:
            raise _invalid(
                "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size"
            )
        given: dict[str, tuple[str, str]] = {}
        for where, items in (("header", headers.items()), ("trailer", trailers.items())):
            for name, value in items:
                algorithm = name.lower().removeprefix("x-amz-checksum-")
                if algorithm != name.lower() and algorithm in CHECKSUMS:
                    given[algorithm] = (value.strip(), where)
        if len(given) > 1:
            raise _invalid(
                "InvalidRequest",
                "Expecting a single x-amz-checksum- header. Multiple checksum Types are not "
                "allowed.",
            )
        sdk = headers.get("x-amz-sdk-checksum-algorithm", "").lower()
        if sdk and sdk not in given:
            raise _invalid(
                "InvalidRequest",
                "x-amz-sdk-checksum-algorithm specified, but no corresponding x-amz-checksum-* "
                "or x-amz-trailer headers were found.",
            )
        algorithm, (value, where) = next(iter(given.items())) if given else (None, ("", ""))
        md5, computed = await _hashes(data, algorithm)
        self.checksums[f"{algorithm} ({where})" if algorithm else "none"] += 1
        if "Content-MD5" in headers:
            try:
                wanted = base64.b64decode(headers["Content-MD5"], validate=True)
            except ValueError:
                wanted = b""
            if len(wanted) != 16:
                raise _invalid("InvalidDigest", "The Content-MD5 you specified was invalid.")
            if wanted != md5:
                raise _invalid(
                    "BadDigest", "The Content-MD5 you specified did not match what we received."
                )
        if algorithm is not None and computed is not None and computed != value:
            raise _invalid(
                "BadDigest",
                f"The {algorithm.upper()} you specified did not match the calculated checksum.",
            )
        return data, md5.hex(), (algorithm, value) if algorithm else None

    # Buckets.

    async def op_ListBuckets(self, req: Req) -> Answer:
        buckets = "".join(
            f"<Bucket>{_t('Name', b.name)}{_t('CreationDate', _iso(b.created))}</Bucket>"
            for b in sorted(self.buckets.values(), key=lambda b: b.name)
        )
        inner = f"<Owner>{OWNER}</Owner><Buckets>{buckets}</Buckets>"
        return _xml("ListAllMyBucketsResult", inner)

    async def op_CreateBucket(self, req: Req) -> Answer:
        await self._read(req)  # CreateBucketConfiguration: any region will do
        if not _BUCKET_NAME.fullmatch(req.bucket) or ".." in req.bucket:
            raise _invalid(
                "InvalidBucketName", "The specified bucket is not valid.", BucketName=req.bucket
            )
        self.buckets.setdefault(req.bucket, Bucket(req.bucket, time.time()))
        return 200, {"Location": "/" + req.bucket}, b""

    async def op_HeadBucket(self, req: Req) -> Answer:
        self._bucket(req)
        return 200, {"x-amz-bucket-region": "us-east-1"}, b""

    async def op_DeleteBucket(self, req: Req) -> Answer:
        bucket = self._bucket(req)
        if bucket.objects or bucket.uploads:
            raise S3Error(
                409,
                "BucketNotEmpty",
                "The bucket you tried to delete is not empty",
                BucketName=req.bucket,
            )
        del self.buckets[req.bucket]
        return 204, {}, b""

    async def op_GetBucketLocation(self, req: Req) -> Answer:
        self._bucket(req)
        return _xml("LocationConstraint", "")

    async def op_ListObjectsV2(self, req: Req) -> Answer:
        return self._list(req, version=2)

    async def op_ListObjects(self, req: Req) -> Answer:
        return self._list(req, version=1)

    def _list(self, req: Req, version: int) -> Answer:
        bucket, query = self._bucket(req), req.query
        prefix, delimiter = query.get("prefix", ""), query.get("delimiter", "")
        most = _int_arg(query, "max-keys", 1000, 0, 1000)
        url = query.get("encoding-type") == "url"
        if "encoding-type" in query and not url:
            raise _invalid("InvalidArgument", "Invalid Encoding Method specified in Request")
        enc = (lambda s: urllib.parse.quote(s, safe="/")) if url else (lambda s: s)
        if version == 2:
            token = query.get("continuation-token")
            after = _untoken(token) if token is not None else query.get("start-after", "")
        else:
            after = query.get("marker", "")
        keys = bucket.keys()
        contents: list[str] = []
        prefixes: list[str] = []
        truncated, last = False, ""
        if after >= prefix:
            start = bisect.bisect_right(keys, after)
        else:
            start = bisect.bisect_left(keys, prefix)
        for key in keys[start:]:
            if not key.startswith(prefix):
                break
            rest = key[len(prefix) :]
            cut = rest.find(delimiter) if delimiter else -1
            name = prefix + rest[: cut + len(delimiter)] if cut >= 0 else key
            if cut >= 0 and (name <= after or (prefixes and prefixes[-1] == name)):
                continue  # a common prefix already given (on this page or an earlier one)
            if len(contents) + len(prefixes) >= most:
                truncated = True
                break
            last = name
            if cut >= 0:
                prefixes.append(name)
                continue
            obj = bucket.objects[key]
            contents.append(
                "<Contents>"
                + _t("Key", enc(key))
                + _t("LastModified", _iso(obj.modified))
                + _t("ETag", obj.etag)
                + _t("Size", len(obj.data))
                + (_t("ChecksumAlgorithm", obj.checksum[0].upper()) if obj.checksum else "")
                + (_t("ChecksumType", obj.checksum[2]) if obj.checksum else "")
                + "<StorageClass>STANDARD</StorageClass></Contents>"
            )
        parts = [_t("Name", bucket.name), _t("Prefix", enc(prefix))]
        if version == 2:
            if "continuation-token" in query:
                parts.append(_t("ContinuationToken", query["continuation-token"]))
            if "start-after" in query:
                parts.append(_t("StartAfter", enc(query["start-after"])))
            if truncated:
                parts.append(_t("NextContinuationToken", _token(last)))
            parts.append(_t("KeyCount", len(contents) + len(prefixes)))
        else:
            parts.append(_t("Marker", enc(after)))
            if truncated:
                parts.append(_t("NextMarker", enc(last)))
        parts += [_t("MaxKeys", most), _t("IsTruncated", _bool(truncated))]
        if delimiter:
            parts.append(_t("Delimiter", enc(delimiter)))
        if url:
            parts.append(_t("EncodingType", "url"))
        parts += contents
        parts += [f"<CommonPrefixes>{_t('Prefix', enc(p))}</CommonPrefixes>" for p in prefixes]
        return _xml("ListBucketResult", "".join(parts))

    # Objects.

    async def op_PutObject(self, req: Req) -> Answer:
        bucket = self._bucket(req)
        _check_key(req.key)
        tags = _tagging_header(req.headers)
        data, md5, checksum = await self._payload(req)
        bucket = self._bucket(req)
        _check_write(bucket, req)
        stored = (checksum[0], checksum[1], "FULL_OBJECT") if checksum else None
        obj = Obj(
            data,
            f'"{md5}"',
            time.time(),
            _stored_headers(req.headers),
            _metadata(req.headers),
            tags,
            stored,
        )
        bucket.put(req.key, obj)
        return 200, {"ETag": obj.etag, **_checksum_headers(obj.checksum)}, b""

    async def op_CopyObject(self, req: Req) -> Answer:
        bucket = self._bucket(req)
        _check_key(req.key)
        await self._read(req)
        source = urllib.parse.unquote(req.headers["x-amz-copy-source"]).lstrip("/")
        source, _, version = source.partition("?versionId=")
        source_bucket, _, source_key = source.partition("/")
        source_req = Req("GET", source_bucket, source_key, {}, req.headers, req.request)
        if version and version != "null":
            source_req.query["versionId"] = version
        _, original = self._object(source_req)
        replace = req.headers.get("x-amz-metadata-directive", "COPY").upper() == "REPLACE"
        retag = req.headers.get("x-amz-tagging-directive", "COPY").upper() == "REPLACE"
        if (source_bucket, source_key) == (req.bucket, req.key) and not (replace or retag):
            raise _invalid(
                "InvalidRequest",
                "This copy request is illegal because it is trying to copy an object to itself "
                "without changing the object's metadata, storage class, website redirect "
                "location or encryption attributes.",
            )
        _check_write(bucket, req)
        etag, checksum = original.etag, original.checksum
        if "-" in etag:  # a copy is one part: its own md5 and checksum
            md5, value = await _hashes(original.data, checksum[0] if checksum else None)
            etag = f'"{md5.hex()}"'
            checksum = (checksum[0], value, "FULL_OBJECT") if checksum and value else None
        obj = Obj(
            original.data,
            etag,
            time.time(),
            _stored_headers(req.headers) if replace else dict(original.headers),
            _metadata(req.headers) if replace else dict(original.metadata),
            _tagging_header(req.headers) if retag else dict(original.tags),
            checksum,
        )
        bucket.put(req.key, obj)
        inner = _t("LastModified", _iso(obj.modified)) + _t("ETag", obj.etag)
        return _xml("CopyObjectResult", inner)

    async def op_HeadObject(self, req: Req) -> Answer:
        return self._get(req, head=True)

    async def op_GetObject(self, req: Req) -> Answer:
        return self._get(req, head=False)

    def _get(self, req: Req, *, head: bool) -> Answer:
        _, obj = self._object(req)
        headers = {"ETag": obj.etag, "Last-Modified": _http_date(obj.modified)}
        _check_read(obj, req.headers, headers)
        headers.update(obj.headers)
        headers["Accept-Ranges"] = "bytes"
        for name, value in obj.metadata.items():
            headers["x-amz-meta-" + name] = value
        if obj.tags:
            headers["x-amz-tagging-count"] = str(len(obj.tags))
        for name in (*STORED_HEADERS[1:], "Content-Type"):
            override = req.query.get("response-" + name.lower())
            if override is not None and not head:
                headers[name] = override
        size = len(obj.data)
        status, start, end = 200, 0, size - 1
        asked = req.headers.get("Range")
        if asked is not None:
            chosen = _range(asked, size)
            if chosen is not None:
                status, (start, end) = 206, chosen
                headers["Content-Range"] = f"bytes {start}-{end}/{size}"
        full = status == 200
        if full and req.headers.get("x-amz-checksum-mode", "").upper() == "ENABLED":
            headers.update(_checksum_headers(obj.checksum))
        if head:
            headers["Content-Length"] = str(end - start + 1)
            return status, headers, b""
        return status, headers, memoryview(obj.data)[start : end + 1]

    async def op_DeleteObject(self, req: Req) -> Answer:
        self._bucket(req).delete(req.key)
        return 204, {}, b""

    async def op_DeleteObjects(self, req: Req) -> Answer:
        bucket = self._bucket(req)
        root = _parse_xml(await self._read(req))
        quiet = _text(root, "Quiet").lower() == "true"
        done = []
        for element in root:
            if _local(element.tag) == "Object":
                key = _text(element, "Key")
                bucket.delete(key)
                if not quiet:
                    done.append(f"<Deleted>{_t('Key', key)}</Deleted>")
        return _xml("DeleteResult", "".join(done))

    # Tags.

    async def op_GetObjectTagging(self, req: Req) -> Answer:
        _, obj = self._object(req)
        return _xml("Tagging", _tag_set(obj.tags))

    async def op_PutObjectTagging(self, req: Req) -> Answer:
        self._object(req)
        root = _parse_xml(await self._read(req))
        tags: list[tuple[str, str]] = []
        for element in root.iter():
            if _local(element.tag) == "Tag":
                tags.append((_text(element, "Key"), _text(element, "Value")))
        _, obj = self._object(req)
        obj.tags = _checked_tags(tags)
        return 200, {}, b""

    async def op_DeleteObjectTagging(self, req: Req) -> Answer:
        _, obj = self._object(req)
        obj.tags = {}
        return 204, {}, b""

    # Multipart uploads.

    async def op_CreateMultipartUpload(self, req: Req) -> Answer:
        bucket = self._bucket(req)
        _check_key(req.key)
        await self._read(req)
        algorithm = req.headers.get("x-amz-checksum-algorithm", "").lower() or None
        kind = req.headers.get("x-amz-checksum-type", "").upper() or None
        if algorithm is not None and algorithm not in CHECKSUMS:
            raise _invalid("InvalidRequest", "Checksum algorithm provided is unsupported.")
        if algorithm is not None and kind is None:
            kind = "FULL_OBJECT" if algorithm == "crc64nvme" else "COMPOSITE"
        if kind not in (None, "COMPOSITE", "FULL_OBJECT") or (kind and not algorithm):
            raise _invalid("InvalidRequest", f"Checksum type {kind} is not valid here.")
        upload = Upload(
            req.key,
            secrets.token_urlsafe(48),
            time.time(),
            _stored_headers(req.headers),
            _metadata(req.headers),
            _tagging_header(req.headers),
            algorithm,
            kind,
        )
        bucket.uploads[upload.upload_id] = upload
        headers = {}
        if algorithm:
            headers["x-amz-checksum-algorithm"] = algorithm.upper()
            headers["x-amz-checksum-type"] = str(kind)
        inner = _t("Bucket", bucket.name) + _t("Key", req.key) + _t("UploadId", upload.upload_id)
        status, xml_headers, body = _xml("InitiateMultipartUploadResult", inner)
        return status, {**xml_headers, **headers}, body

    async def op_UploadPart(self, req: Req) -> Answer:
        self._upload(req)
        number = _part_number(req.query.get("partNumber", ""))
        data, md5, checksum = await self._payload(req)
        _, upload = self._upload(req)  # again: it may have gone while the body came
        if upload.algorithm:
            if checksum is None:
                value = _checksum(upload.algorithm, data)
                if value is None:
                    raise _invalid(
                        "InvalidRequest",
                        f"The upload was created using a {upload.algorithm} checksum. The "
                        "part must carry it.",
                    )
                checksum = (upload.algorithm, value)
            elif checksum[0] != upload.algorithm:
                raise _invalid(
                    "InvalidRequest",
                    f"Checksum Type mismatch occurred, expected checksum Type: "
                    f"{upload.algorithm}, actual checksum Type: {checksum[0]}",
                )
        part = Part(data, f'"{md5}"', time.time(), checksum)
        upload.parts[number] = part
        headers = {"ETag": part.etag}
        if checksum:
            headers[f"x-amz-checksum-{checksum[0]}"] = checksum[1]
        return 200, headers, b""

    async def op_ListParts(self, req: Req) -> Answer:
        bucket, upload = self._upload(req)
        marker = _int_arg(req.query, "part-number-marker", 0, 0, 10000)
        most = _int_arg(req.query, "max-parts", 1000, 0, 1000)
        numbers = [n for n in sorted(upload.parts) if n > marker]
        page, truncated = numbers[:most], len(numbers) > most
        items = []
        for number in page:
            part = upload.parts[number]
            checksum = (
                _t("Checksum" + part.checksum[0].upper(), part.checksum[1]) if part.checksum else ""
            )
            items.append(
                "<Part>"
                + _t("PartNumber", number)
                + _t("LastModified", _iso(part.modified))
                + _t("ETag", part.etag)
                + _t("Size", len(part.data))
                + checksum
                + "</Part>"
            )
        inner = (
            _t("Bucket", bucket.name)
            + _t("Key", upload.key)
            + _t("UploadId", upload.upload_id)
            + _t("PartNumberMarker", marker)
            + _t("NextPartNumberMarker", page[-1] if page else marker)
            + _t("MaxParts", most)
            + _t("IsTruncated", _bool(truncated))
            + "".join(items)
            + f"<Initiator>{OWNER}</Initiator><Owner>{OWNER}</Owner>"
            + "<StorageClass>STANDARD</StorageClass>"
            + (_t("ChecksumAlgorithm", upload.algorithm.upper()) if upload.algorithm else "")
            + (_t("ChecksumType", upload.checksum_type) if upload.checksum_type else "")
        )
        return _xml("ListPartsResult", inner)

    async def op_CompleteMultipartUpload(self, req: Req) -> Answer:
        self._upload(req)
        root = _parse_xml(await self._read(req))
        bucket, upload = self._upload(req)
        listed: list[tuple[int, str, dict[str, str]]] = []
        for element in root:
            if _local(element.tag) != "Part":
                continue
            children = {_local(child.tag): (child.text or "").strip() for child in element}
            try:
                number = int(children.get("PartNumber", ""))
            except ValueError:
                raise _malformed() from None
            sums = {
                name.removeprefix("Checksum").lower(): value
                for name, value in children.items()
                if name.startswith("Checksum") and name != "ChecksumType"
            }
            listed.append((number, children.get("ETag", ""), sums))
        if not listed:
            raise _malformed()
        chosen: list[Part] = []
        for index, (number, etag, sums) in enumerate(listed):
            if index and number <= listed[index - 1][0]:
                raise _invalid(
                    "InvalidPartOrder",
                    "The list of parts was not in ascending order. Parts must be ordered by "
                    "part number.",
                    UploadId=upload.upload_id,
                )
            part = upload.parts.get(number)
            bad = part is None or etag.strip('"') != part.etag.strip('"')
            if part is not None and not bad:
                for algorithm, value in sums.items():
                    bad |= part.checksum is None or part.checksum != (algorithm, value)
            if bad or part is None:
                raise _invalid(
                    "InvalidPart",
                    "One or more of the specified parts could not be found. The part may not "
                    "have been uploaded, or the specified entity tag may not match the part's "
                    "entity tag.",
                    UploadId=upload.upload_id,
                    PartNumber=number,
                    ETag=etag,
                )
            if upload.algorithm and upload.checksum_type == "COMPOSITE" and not sums:
                raise _invalid(
                    "InvalidRequest",
                    f"The upload was created using a {upload.algorithm} checksum. The "
                    "complete request must include the checksum for each part. It was missing "
                    f"for part {number} in the request.",
                )
            chosen.append(part)
        for (number, etag, _), part in zip(listed[:-1], chosen[:-1], strict=True):
            if len(part.data) < MIN_PART:
                raise _invalid(
                    "EntityTooSmall",
                    "Your proposed upload is smaller than the minimum allowed object size.",
                    ProposedSize=len(part.data),
                    MinSizeAllowed=MIN_PART,
                    PartNumber=number,
                    ETag=etag,
                )
        _check_write(bucket, req)
        data, etag, checksum = await asyncio.to_thread(_assemble, upload, chosen)
        if checksum is None and upload.algorithm and upload.checksum_type == "FULL_OBJECT":
            value = req.headers.get(f"x-amz-checksum-{upload.algorithm}")
            checksum = (upload.algorithm, value, "FULL_OBJECT") if value else None
        if bucket.uploads.pop(upload.upload_id, None) is None:  # aborted meanwhile
            self._upload(req)
        obj = Obj(data, etag, time.time(), upload.headers, upload.metadata, upload.tags, checksum)
        bucket.put(upload.key, obj)
        host = req.headers.get("Host", "localhost")
        location = f"http://{host}/{bucket.name}/{urllib.parse.quote(upload.key)}"
        inner = (
            _t("Location", location)
            + _t("Bucket", bucket.name)
            + _t("Key", upload.key)
            + _t("ETag", etag)
        )
        if checksum:
            inner += _t("Checksum" + checksum[0].upper(), checksum[1])
            inner += _t("ChecksumType", checksum[2])
        return _xml("CompleteMultipartUploadResult", inner)

    async def op_AbortMultipartUpload(self, req: Req) -> Answer:
        bucket, upload = self._upload(req)
        del bucket.uploads[upload.upload_id]
        return 204, {}, b""

    async def op_ListMultipartUploads(self, req: Req) -> Answer:
        bucket, query = self._bucket(req), req.query
        prefix = query.get("prefix", "")
        key_marker, id_marker = query.get("key-marker", ""), query.get("upload-id-marker", "")
        most = _int_arg(query, "max-uploads", 1000, 0, 1000)
        url = query.get("encoding-type") == "url"
        enc = (lambda s: urllib.parse.quote(s, safe="/")) if url else (lambda s: s)
        ordered = sorted(bucket.uploads.values(), key=lambda u: (u.key, u.initiated, u.upload_id))
        marker_upload = bucket.uploads.get(id_marker) if id_marker else None
        chosen = []
        for upload in ordered:
            if not upload.key.startswith(prefix):
                continue
            if key_marker:
                if upload.key < key_marker:
                    continue
                if upload.key == key_marker:
                    if marker_upload is None:
                        continue
                    mark = (marker_upload.initiated, marker_upload.upload_id)
                    if (upload.initiated, upload.upload_id) <= mark:
                        continue
            chosen.append(upload)
        page, truncated = chosen[:most], len(chosen) > most
        items = [
            "<Upload>"
            + _t("Key", enc(u.key))
            + _t("UploadId", u.upload_id)
            + f"<Initiator>{OWNER}</Initiator><Owner>{OWNER}</Owner>"
            + "<StorageClass>STANDARD</StorageClass>"
            + _t("Initiated", _iso(u.initiated))
            + (_t("ChecksumAlgorithm", u.algorithm.upper()) if u.algorithm else "")
            + (_t("ChecksumType", u.checksum_type) if u.checksum_type else "")
            + "</Upload>"
            for u in page
        ]
        inner = (
            _t("Bucket", bucket.name)
            + _t("KeyMarker", enc(key_marker))
            + _t("UploadIdMarker", id_marker)
            + (_t("NextKeyMarker", enc(page[-1].key)) if truncated else "")
            + (_t("NextUploadIdMarker", page[-1].upload_id) if truncated else "")
            + _t("Prefix", enc(prefix))
            + _t("MaxUploads", most)
            + _t("IsTruncated", _bool(truncated))
            + (_t("EncodingType", "url") if url else "")
            + "".join(items)
        )
        return _xml("ListMultipartUploadsResult", inner)

    async def op_NotImplemented(self, req: Req) -> Answer:
        raise S3Error(
            501,
            "NotImplemented",
            "A header or query you provided implies functionality that is not implemented "
            "(by bench/s3_memory.py).",
        )


# Helpers of the operations.


def _decode_aws_chunked(body: bytes) -> tuple[bytes, dict[str, str]]:
    """The payload of an aws-chunked body (signed chunks or not) and its trailers."""
    view, pieces, trailers, pos = memoryview(body), [], {}, 0
    while True:
        eol = body.find(b"\r\n", pos)
        if eol < 0:
            raise _invalid("IncompleteBody", "The aws-chunked body ended inside a chunk header")
        try:
            size = int(body[pos:eol].split(b";", 1)[0], 16)
        except ValueError:
            raise _invalid("InvalidRequest", "Malformed aws-chunked chunk header") from None
        pos = eol + 2
        if size == 0:
            break
        if pos + size + 2 > len(body) or body[pos + size : pos + size + 2] != b"\r\n":
            raise _invalid("IncompleteBody", "The aws-chunked body ended inside a chunk")
        pieces.append(view[pos : pos + size])
        pos += size + 2
    while pos < len(body):
        eol = body.find(b"\r\n", pos)
        line = body[pos : eol if eol >= 0 else len(body)]
        pos = eol + 2 if eol >= 0 else len(body)
        if not line:
            break
        name, _, value = line.decode("latin-1").partition(":")
        trailers[name.strip().lower()] = value.strip()
    trailers.pop("x-amz-trailer-signature", None)
    return b"".join(pieces), trailers


def _checksum(algorithm: str, data: bytes | memoryview) -> str | None:
    """S3's base64 checksum of `data`, or None for an algorithm the stdlib lacks."""
    if algorithm == "crc32":
        digest = zlib.crc32(data).to_bytes(4, "big")
    elif algorithm in ("sha1", "sha256", "sha512", "md5"):
        digest = hashlib.new(algorithm, data).digest()
    else:
        return None
    return base64.b64encode(digest).decode()


def _digests(data: bytes, algorithm: str | None) -> tuple[bytes, str | None]:
    md5 = hashlib.md5(data, usedforsecurity=False).digest()
    return md5, _checksum(algorithm, data) if algorithm else None


async def _hashes(data: bytes, algorithm: str | None) -> tuple[bytes, str | None]:
    if len(data) > THREAD_HASH_BYTES:
        return await asyncio.to_thread(_digests, data, algorithm)
    return _digests(data, algorithm)


def _assemble(upload: Upload, parts: list[Part]) -> tuple[bytes, str, tuple[str, str, str] | None]:
    """A completed upload's bytes, ETag and checksum (composite or of the whole)."""
    data = b"".join(p.data for p in parts)
    md5s = b"".join(bytes.fromhex(p.etag.strip('"')) for p in parts)
    etag = f'"{hashlib.md5(md5s, usedforsecurity=False).hexdigest()}-{len(parts)}"'
    checksum = None
    if upload.algorithm and upload.checksum_type == "COMPOSITE":
        raw = b"".join(base64.b64decode(p.checksum[1]) for p in parts if p.checksum)
        value = _checksum(upload.algorithm, raw)
        if value is not None:
            checksum = (upload.algorithm, f"{value}-{len(parts)}", "COMPOSITE")
    elif upload.algorithm:
        value = _checksum(upload.algorithm, data)
        if value is not None:
            checksum = (upload.algorithm, value, "FULL_OBJECT")
    return data, etag, checksum


def _checksum_headers(checksum: tuple[str, str, str] | None) -> dict[str, str]:
    if checksum is None:
        return {}
    return {f"x-amz-checksum-{checksum[0]}": checksum[1], "x-amz-checksum-type": checksum[2]}


def _range(header: str, size: int) -> tuple[int, int] | None:
    """The (first, last) byte a Range header asks for; None when S3 would ignore it."""
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.groups() == ("", ""):
        return None
    first, last = match.groups()
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - suffix), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None
    if start >= size:
        raise _unsatisfiable(header, size)
    return start, min(end, size - 1)


def _unsatisfiable(header: str, size: int) -> S3Error:
    return S3Error(
        416,
        "InvalidRange",
        "The requested range is not satisfiable",
        headers={"Content-Range": f"bytes */{size}"},
        RangeRequested=header,
        ActualObjectSize=size,
    )


def _etag_matches(header: str, etag: str) -> bool:
    tokens = [t.strip().removeprefix("W/").strip('"') for t in header.split(",")]
    return "*" in tokens or etag.strip('"') in tokens


def _http_time(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return email.utils.parsedate_to_datetime(value).timestamp()
    except (TypeError, ValueError):
        return None


def _check_read(obj: Obj, headers: Any, answer: dict[str, str]) -> None:
    """GET and HEAD preconditions, with S3's precedence (If-Match over If-Unmodified-Since,
    If-None-Match over If-Modified-Since)."""
    modified = int(obj.modified)
    if_match = headers.get("If-Match")
    if if_match is not None:
        if not _etag_matches(if_match, obj.etag):
            raise S3Error(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition="If-Match",
            )
    else:
        since = _http_time(headers.get("If-Unmodified-Since"))
        if since is not None and modified > since:
            raise S3Error(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition="If-Unmodified-Since",
            )
    if_none = headers.get("If-None-Match")
    since = _http_time(headers.get("If-Modified-Since"))
    if (if_none is not None and _etag_matches(if_none, obj.etag)) or (
        if_none is None and since is not None and modified <= since
    ):
        raise S3Error(304, "NotModified", "Not Modified", headers=answer)


def _check_write(bucket: Bucket, req: Req) -> None:
    """Conditional writes: If-None-Match: * and If-Match."""
    existing = bucket.objects.get(req.key)
    if_none = req.headers.get("If-None-Match")
    if if_none is not None:
        if if_none.strip() != "*":
            raise S3Error(501, "NotImplemented", "If-None-Match takes only * on writes")
        if existing is not None:
            raise S3Error(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition="If-None-Match",
            )
    if_match = req.headers.get("If-Match")
    if if_match is not None:
        if existing is None:
            raise S3Error(404, "NoSuchKey", "The specified key does not exist.", Key=req.key)
        if not _etag_matches(if_match, existing.etag):
            raise S3Error(
                412,
                "PreconditionFailed",
                "At least one of the pre-conditions you specified did not hold",
                Condition="If-Match",
            )


def _check_key(key: str) -> None:
    if len(key.encode()) > 1024:
        raise _invalid("KeyTooLongError", "Your key is too long")


def _stored_headers(headers: Any) -> dict[str, str]:
    stored = {name: headers[name] for name in STORED_HEADERS if name in headers}
    if "Content-Encoding" in stored:
        codings = [c.strip() for c in stored["Content-Encoding"].split(",")]
        kept = [c for c in codings if c and c.lower() != "aws-chunked"]
        if kept:
            stored["Content-Encoding"] = ",".join(kept)
        else:
            del stored["Content-Encoding"]
    stored.setdefault("Content-Type", "binary/octet-stream")
    return stored


def _metadata(headers: Any) -> dict[str, str]:
    return {
        name.lower().removeprefix("x-amz-meta-"): value
        for name, value in headers.items()
        if name.lower().startswith("x-amz-meta-")
    }


def _tagging_header(headers: Any) -> dict[str, str]:
    value = headers.get("x-amz-tagging")
    if not value:
        return {}
    return _checked_tags(urllib.parse.parse_qsl(value, keep_blank_values=True))


def _checked_tags(tags: list[tuple[str, str]]) -> dict[str, str]:
    if len(tags) > 10:
        raise _invalid("BadRequest", "Object tags cannot be greater than 10")
    if len({k for k, _ in tags}) != len(tags):
        raise _invalid("InvalidTag", "Cannot provide multiple Tags with the same key")
    for key, value in tags:
        if not key or len(key) > 128 or len(value) > 256:
            raise _invalid("InvalidTag", "The TagKey or TagValue you have provided is invalid")
    return dict(tags)


def _tag_set(tags: dict[str, str]) -> str:
    items = "".join(f"<Tag>{_t('Key', k)}{_t('Value', v)}</Tag>" for k, v in tags.items())
    return f"<TagSet>{items}</TagSet>"


def _part_number(value: str) -> int:
    if value.isdigit() and 1 <= int(value) <= 10000:
        return int(value)
    raise _invalid(
        "InvalidArgument",
        "Part number must be an integer between 1 and 10000, inclusive",
        ArgumentName="partNumber",
        ArgumentValue=value,
    )


def _int_arg(query: dict[str, str], name: str, default: int, low: int, high: int) -> int:
    value = query.get(name)
    if value is None:
        return default
    if not value.isdigit():
        raise _invalid(
            "InvalidArgument",
            f"Provided {name} not an integer or within integer range",
            ArgumentName=name,
            ArgumentValue=value,
        )
    return max(low, min(high, int(value)))


def _token(key: str) -> str:
    return base64.urlsafe_b64encode(key.encode()).decode()


def _untoken(token: str) -> str:
    try:
        return base64.urlsafe_b64decode(token.encode()).decode()
    except ValueError:
        raise _invalid("InvalidArgument", "The continuation token provided is incorrect") from None


def _malformed() -> S3Error:
    return _invalid(
        "MalformedXML",
        "The XML you provided was not well-formed or did not validate against our published schema",
    )


def _parse_xml(body: bytes) -> ElementTree.Element:
    try:
        return ElementTree.fromstring(body)
    except ElementTree.ParseError:
        raise _malformed() from None


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _text(element: ElementTree.Element, name: str) -> str:
    for child in element:
        if _local(child.tag) == name:
            return child.text or ""
    return ""


def _t(tag: str, value: object) -> str:
    return f"<{tag}>{escape(str(value))}</{tag}>"


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _xml(root: str, inner: str) -> Answer:
    body = f'<?xml version="1.0" encoding="UTF-8"?>\n<{root} xmlns="{NS}">{inner}</{root}>'
    return 200, {"Content-Type": "application/xml"}, body.encode()


def _error_xml(exc: S3Error, req: Req) -> bytes:
    if req.method == "HEAD" or exc.status == 304:
        return b""
    fields = "".join(_t(name, value) for name, value in exc.fields.items())
    request_id = secrets.token_hex(8).upper()
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n<Error>'
        f"{_t('Code', exc.code)}{_t('Message', exc.message)}{fields}"
        f"{_t('RequestId', request_id)}<HostId>bench</HostId></Error>"
    )
    return body.encode()


def _iso(when: float) -> str:
    stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(when))
    return f"{stamp}.{int(when * 1000) % 1000:03d}Z"


def _http_date(when: float) -> str:
    return email.utils.formatdate(when, usegmt=True)


async def serve(host: str, port: int) -> None:
    store = MemoryS3()
    app = web.Application(client_max_size=MAX_BODY + 64 * MiB)
    app.router.add_route("*", "/{tail:.*}", store.handle)
    # auto_decompress off: a Content-Encoding of gzip is the object's, stored as sent.
    runner = web.AppRunner(app, access_log=None, auto_decompress=False, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, host, port, backlog=512)
    await site.start()
    bound = runner.addresses[0][1]
    print(f"listening http://{host}:{bound}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


# The shaping proxy.

PROXY_READ_BYTES = 128 * 1024


class Shaper:
    """A token bucket of `mbps` MB/s; `pay(n)` returns when n bytes may go (0: no cap)."""

    def __init__(self, mbps: float) -> None:
        self.rate = mbps * 1_000_000
        # A few milliseconds of burst absorb the event loop's late wake-ups (epoll rounds
        # timeouts up to the millisecond) without lowering the rate.
        self.burst = max(64 * 1024, self.rate * 0.004)
        self.paid_until = float("-inf")

    async def pay(self, size: int) -> None:
        if self.rate <= 0:
            return
        now = asyncio.get_running_loop().time()
        self.paid_until = max(self.paid_until, now - self.burst / self.rate) + size / self.rate
        if self.paid_until > now:
            await asyncio.sleep(self.paid_until - now)


class ShapingProxy:
    """Forwards each connection to the target, shaped on its own (see the module's doc)."""

    def __init__(self, target: str, mbps: float, up_mbps: float, first_byte_ms: float) -> None:
        parts = urllib.parse.urlsplit(target if "//" in target else "//" + target)
        self.host, self.port = parts.hostname or "127.0.0.1", parts.port or 80
        self.mbps, self.up_mbps, self.first_byte = mbps, up_mbps, first_byte_ms / 1000
        self.counts: Counter[str] = Counter()

    def stats(self) -> dict[str, Any]:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return {**self.counts, "cpu_s": usage.ru_utime + usage.ru_stime}

    async def connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.counts["connections"] += 1
        try:
            up_reader, up_writer = await asyncio.open_connection(
                self.host, self.port, limit=2 * PROXY_READ_BYTES
            )
        except OSError:
            self.counts["connect_failures"] += 1
            writer.close()
            return
        asked = [False]  # the client sent bytes since the last response began
        down, up = Shaper(self.mbps), Shaper(self.up_mbps)

        async def client_to_server() -> None:
            while data := await reader.read(PROXY_READ_BYTES):
                asked[0] = True
                self.counts["bytes_up"] += len(data)
                await up.pay(len(data))
                up_writer.write(data)
                await up_writer.drain()

        async def server_to_client() -> None:
            while data := await up_reader.read(PROXY_READ_BYTES):
                if asked[0]:
                    asked[0] = False
                    self.counts["responses"] += 1
                    if self.first_byte > 0:
                        await asyncio.sleep(self.first_byte)
                self.counts["bytes_down"] += len(data)
                await down.pay(len(data))
                writer.write(data)
                await writer.drain()

        tasks = [asyncio.create_task(client_to_server()), asyncio.create_task(server_to_client())]
        try:
            # Either side closing ends the pair (HTTP clients do not half-close).
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for side in (writer, up_writer):
                side.close()


async def proxy(host: str, port: int, target: str, mbps: float, up: float, first: float) -> None:
    shaper = ShapingProxy(target, mbps, up, first)
    listener = await asyncio.start_server(
        shaper.connection, host, port, limit=2 * PROXY_READ_BYTES, backlog=512
    )
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGUSR1, lambda: print(json.dumps(shaper.stats()), flush=True))
    print(f"listening http://{host}:{listener.sockets[0].getsockname()[1]}", flush=True)
    async with listener:
        await listener.serve_forever()


# Child processes, for a bench.


class Child:
    """This module run as a child process in one of its modes: its URL, its pid."""

    def __init__(self, *args: str) -> None:
        command = [sys.executable, __file__, *args]
        self.process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        line = self.process.stdout.readline()
        if not line.startswith("listening "):
            self.stop()
            raise RuntimeError(f"bench/s3_memory.py {' '.join(args)} did not start: {line!r}")
        self.url = line.split()[1]
        self.pid = self.process.pid

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)


class S3MemoryProcess(Child):
    def __init__(self, port: int = 0) -> None:
        super().__init__("serve", "--port", str(port))

    def stats(self, *, reset: bool = False) -> dict[str, Any]:
        """The counters of /_bench/stats; with `reset`, zeroed after they are read."""
        request = urllib.request.Request(
            self.url + "/_bench/stats", method="DELETE" if reset else "GET"
        )
        with urllib.request.urlopen(request, timeout=10) as answer:
            return dict(json.loads(answer.read()))


class ShapingProxyProcess(Child):
    def __init__(
        self,
        target: str,
        *,
        mbps: float,
        first_byte_ms: float = 0.0,
        up_mbps: float | None = None,
        port: int = 0,
    ) -> None:
        args = ["proxy", "--target", target, "--mbps", str(mbps), "--port", str(port)]
        args += ["--first-byte-ms", str(first_byte_ms)]
        args += ["--up-mbps", str(up_mbps)] if up_mbps is not None else []
        super().__init__(*args)


# The self-check.


class _Checks:
    def __init__(self) -> None:
        self.failed: list[str] = []

    def __call__(self, ok: object, what: str) -> None:
        print(("ok   " if ok else "FAIL ") + what, flush=True)
        if not ok:
            self.failed.append(what)


def _error_code(call: Any) -> str:
    from botocore.exceptions import ClientError

    try:
        call()
    except ClientError as exc:
        return str(exc.response.get("Error", {}).get("Code"))
    return "no error"


def _raw_put(url: str, path: str, body: Any, headers: dict[str, str]) -> tuple[int, bytes]:
    import http.client

    parts = urllib.parse.urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
    chunked = headers.get("Transfer-Encoding") == "chunked"
    connection.request("PUT", path, body=body, headers=headers, encode_chunked=chunked)
    answer = connection.getresponse()
    result = answer.status, answer.read()
    connection.close()
    return result


def _aws_chunked_checks(check: _Checks, url: str, bucket: str) -> None:
    import io

    from botocore.httpchecksum import AwsChunkedWrapper, Crc32Checksum

    data = bytes(range(256)) * 4099  # ~1 MB, several chunks
    wrapped = AwsChunkedWrapper(
        io.BytesIO(data), Crc32Checksum, "x-amz-checksum-crc32", chunk_size=64 * 1024
    )
    headers = {
        "Content-Encoding": "aws-chunked",
        "Transfer-Encoding": "chunked",
        "x-amz-content-sha256": "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
        "x-amz-trailer": "x-amz-checksum-crc32",
        "x-amz-decoded-content-length": str(len(data)),
        "x-amz-sdk-checksum-algorithm": "CRC32",
    }
    status, _ = _raw_put(url, f"/{bucket}/chunked-trailer", iter(wrapped), headers)
    check(status == 200, "aws-chunked PUT with a CRC32 trailer, over HTTP chunked: 200")
    signed = b"".join(
        b"%x;chunk-signature=%s\r\n%s\r\n" % (len(piece), b"0" * 64, piece)
        for piece in (data[:65536], data[65536:])
    )
    signed += b"0;chunk-signature=" + b"0" * 64 + b"\r\n\r\n"
    headers = {
        "x-amz-content-sha256": "STREAMING-AWS4-HMAC-SHA256-PAYLOAD",
        "x-amz-decoded-content-length": str(len(data)),
    }
    status, _ = _raw_put(url, f"/{bucket}/chunked-signed", signed, headers)
    check(status == 200, "signed aws-chunked PUT (no Content-Encoding): 200")
    for key in ("chunked-trailer", "chunked-signed"):
        with urllib.request.urlopen(f"{url}/{bucket}/{key}", timeout=10) as answer:
            check(answer.read() == data, f"{key}: the stored bytes are the payload")
    wrong = dict(headers, **{"x-amz-checksum-crc32": "AAAAAA=="})
    status, body = _raw_put(url, f"/{bucket}/chunked-bad", signed, wrong)
    check(status == 400 and b"BadDigest" in body, "a wrong CRC32: 400 BadDigest")


async def _worker_checks(check: _Checks, url: str, bucket: str, source: bytes) -> None:
    """The worker's S3 adapter on aiobotocore, unmodified, against the server."""
    from aiobotocore.config import AioConfig
    from aiobotocore.session import get_session

    from worker.adapters.s3 import S3
    from worker.errors import RetryableError

    session = get_session()
    config = AioConfig(s3={"addressing_style": "path"}, retries={"total_max_attempts": 1})
    async with session.create_client(
        "s3",
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=config,
    ) as client:
        s3 = S3(client)
        info = await s3.head(bucket, "big")
        check(info is not None and info.size == len(source), "worker: head")
        assert info is not None
        got = b"".join([chunk async for chunk in s3.stream(info)])
        check(got == source, "worker: stream (If-Match, checksum mode) gives the bytes")
        stale = type(info)(bucket, "big", '"0123"', info.size)
        try:
            [chunk async for chunk in s3.stream(stale)]
            check(False, "worker: a stale ETag is refused")
        except RetryableError:
            check(True, "worker: a stale ETag is refused (412, RetryableError)")
        check(await s3.head(bucket, "absent") is None, "worker: head of no object is None")
        payload = source[: 11 * MiB]
        writer = s3.writer(
            bucket,
            "out.json",
            part_bytes=5 * MiB,
            metadata={"src": "big"},
            content_type="application/json",
        )
        await writer.write([payload[i : i + MiB] for i in range(0, len(payload), MiB)])
        await writer.close({"rows": "3", "columns": "2"})
        response = await client.get_object(Bucket=bucket, Key="out.json")
        async with response["Body"] as body:
            stored = await body.read()
        check(stored == payload and writer.parts == 3, "worker: a 3-part output, its bytes")
        check(response["ContentType"] == "application/json", "worker: its content type")
        check(response["Metadata"] == {"src": "big"}, "worker: its metadata")
        tags = await s3.tags(bucket, "out.json")
        check(tags == {"rows": "3", "columns": "2"}, "worker: its tags")
        small = s3.writer(
            bucket, "small.json", part_bytes=5 * MiB, metadata={}, content_type="application/json"
        )
        await small.write([b'{"a": 1}\n'])
        await small.close({"rows": "1"})
        check(await s3.tags(bucket, "small.json") == {"rows": "1"}, "worker: a one-PUT output")
        left = s3.writer(
            bucket, "left.json", part_bytes=5 * MiB, metadata={}, content_type="application/json"
        )
        await left.write([payload[: 6 * MiB]])
        await left.abort()
        await client.create_multipart_upload(Bucket=bucket, Key="left.json")
        check(await s3.abort_uploads(bucket, "left.json") == 1, "worker: abort_uploads")


def selftest() -> int:
    import concurrent.futures
    import os
    from pathlib import Path

    import boto3
    from botocore.config import Config

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the worker's package

    check = _Checks()
    server = S3MemoryProcess()
    shaped = ShapingProxyProcess(server.url, mbps=90, first_byte_ms=30)
    try:
        s3 = boto3.client(
            "s3",
            endpoint_url=shaped.url,
            region_name="us-east-1",
            aws_access_key_id="bench",
            aws_secret_access_key="bench",
            config=Config(
                s3={"addressing_style": "path"},
                max_pool_connections=4,
                retries={"total_max_attempts": 1},
            ),
        )
        bucket = "bench"
        s3.create_bucket(Bucket=bucket)
        s3.head_bucket(Bucket=bucket)
        check(_error_code(lambda: s3.head_bucket(Bucket="nope")) == "404", "HeadBucket: 404")
        size = 20_000_000
        source = os.urandom(size)
        put = s3.put_object(
            Bucket=bucket,
            Key="big",
            Body=source,
            Metadata={"Origin": "selftest"},
            ContentType="text/csv",
            Tagging="kind=csv&n=1",
        )
        md5 = hashlib.md5(source).hexdigest()
        check(put["ETag"] == f'"{md5}"', "PutObject: ETag is the quoted md5")
        head = s3.head_object(Bucket=bucket, Key="big")
        check(head["ContentLength"] == size and head["ETag"] == put["ETag"], "HeadObject")
        check(head["Metadata"] == {"origin": "selftest"}, "HeadObject: user metadata")
        check(head["ContentType"] == "text/csv" and head["LastModified"], "HeadObject: type")
        tags = s3.get_object_tagging(Bucket=bucket, Key="big")["TagSet"]
        check({t["Key"]: t["Value"] for t in tags} == {"kind": "csv", "n": "1"}, "tags")
        half = size // 2

        def ranged(first: int, last: int | None) -> bytes:
            asked = f"bytes={first}-{'' if last is None else last}"
            answer = s3.get_object(Bucket=bucket, Key="big", Range=asked)
            want = f"bytes {first}-{size - 1 if last is None else last}/{size}"
            assert answer["ContentRange"] == want, answer["ContentRange"]
            return bytes(answer["Body"].read())

        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            halves = list(pool.map(ranged, (0, half), (half - 1, None)))
        check(b"".join(halves) == source, "two ranged halves in parallel: the bytes")
        check(
            _error_code(lambda: s3.get_object(Bucket=bucket, Key="big", Range=f"bytes={size}-"))
            == "InvalidRange",
            "a range past the end: 416 InvalidRange",
        )
        check(
            _error_code(lambda: s3.get_object(Bucket=bucket, Key="big", IfMatch='"0"'))
            == "PreconditionFailed",
            "If-Match of another ETag: 412",
        )
        check(
            _error_code(lambda: s3.get_object(Bucket=bucket, Key="big", IfNoneMatch=put["ETag"]))
            == "304",
            "If-None-Match of its ETag: 304",
        )
        check(
            _error_code(lambda: s3.get_object(Bucket=bucket, Key="none")) == "NoSuchKey",
            "GetObject of no object: NoSuchKey",
        )

        # Multipart: 3 parts of 5 MiB, with CRC32 as the worker sends them.
        created = s3.create_multipart_upload(
            Bucket=bucket, Key="multi", ChecksumAlgorithm="CRC32", Metadata={"m": "1"}
        )
        upload_id = created["UploadId"]
        pieces = [source[i * 5 * MiB : (i + 1) * 5 * MiB] for i in range(3)]
        parts = []
        for number, piece in enumerate(pieces, 1):
            answer = s3.upload_part(
                Bucket=bucket,
                Key="multi",
                UploadId=upload_id,
                PartNumber=number,
                Body=piece,
                ChecksumAlgorithm="CRC32",
            )
            check(answer["ETag"] == f'"{hashlib.md5(piece).hexdigest()}"', f"part {number} ETag")
            crc = base64.b64encode(zlib.crc32(piece).to_bytes(4, "big")).decode()
            check(answer.get("ChecksumCRC32") == crc, f"part {number} CRC32")
            parts.append({"PartNumber": number, "ETag": answer["ETag"], "ChecksumCRC32": crc})
        listed = s3.list_parts(Bucket=bucket, Key="multi", UploadId=upload_id, MaxParts=2)
        rest = s3.list_parts(
            Bucket=bucket,
            Key="multi",
            UploadId=upload_id,
            PartNumberMarker=listed["NextPartNumberMarker"],
        )
        numbers = [p["PartNumber"] for p in listed["Parts"] + rest["Parts"]]
        check(
            listed["IsTruncated"] and not rest["IsTruncated"] and numbers == [1, 2, 3],
            "ListParts: two pages",
        )
        check(all(p["Size"] == 5 * MiB for p in listed["Parts"]), "ListParts: sizes")
        wrong = [dict(parts[0], ETag='"00"'), *parts[1:]]
        check(
            _error_code(
                lambda: s3.complete_multipart_upload(
                    Bucket=bucket, Key="multi", UploadId=upload_id, MultipartUpload={"Parts": wrong}
                )
            )
            == "InvalidPart",
            "Complete, a wrong ETag",
        )
        done = s3.complete_multipart_upload(
            Bucket=bucket, Key="multi", UploadId=upload_id, MultipartUpload={"Parts": parts}
        )
        md5s = b"".join(hashlib.md5(p).digest() for p in pieces)
        etag = f'"{hashlib.md5(md5s).hexdigest()}-3"'
        check(done["ETag"] == etag, f"Complete: ETag {done['ETag']} is md5 of md5s -3")
        check(done.get("ChecksumCRC32", "").endswith("-3"), "Complete: a composite CRC32")
        whole = s3.get_object(Bucket=bucket, Key="multi")
        check(
            whole["Body"].read() == b"".join(pieces) and whole["ETag"] == etag,
            "the completed object: bytes and ETag",
        )
        check(whole["Metadata"] == {"m": "1"}, "the completed object: metadata")

        other = s3.create_multipart_upload(Bucket=bucket, Key="other/x")["UploadId"]
        s3.upload_part(Bucket=bucket, Key="other/x", UploadId=other, PartNumber=1, Body=b"a")
        s3.upload_part(Bucket=bucket, Key="other/x", UploadId=other, PartNumber=2, Body=b"b")
        check(
            _error_code(
                lambda: s3.complete_multipart_upload(
                    Bucket=bucket,
                    Key="other/x",
                    UploadId=other,
                    MultipartUpload={
                        "Parts": [
                            {"PartNumber": 1, "ETag": f'"{hashlib.md5(b"a").hexdigest()}"'},
                            {"PartNumber": 2, "ETag": f'"{hashlib.md5(b"b").hexdigest()}"'},
                        ]
                    },
                )
            )
            == "EntityTooSmall",
            "Complete, a small part: EntityTooSmall",
        )
        uploads = s3.list_multipart_uploads(Bucket=bucket, Prefix="other/").get("Uploads", [])
        check([u["UploadId"] for u in uploads] == [other], "ListMultipartUploads, prefix")
        s3.abort_multipart_upload(Bucket=bucket, Key="other/x", UploadId=other)
        uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
        check(uploads == [], "AbortMultipartUpload: no upload left")
        check(
            _error_code(
                lambda: s3.upload_part(
                    Bucket=bucket, Key="other/x", UploadId=other, PartNumber=3, Body=b"c"
                )
            )
            == "NoSuchUpload",
            "UploadPart after abort: NoSuchUpload",
        )

        for key in ("dir/a b+c.txt", "dir/sub/1", "dir/sub/2", "dir/z\u00fc"):
            s3.put_object(Bucket=bucket, Key=key, Body=key.encode())
        pages = s3.get_paginator("list_objects_v2").paginate(
            Bucket=bucket, Prefix="dir/", Delimiter="/", PaginationConfig={"PageSize": 1}
        )
        keys, prefixes = [], []
        for page in pages:
            keys += [c["Key"] for c in page.get("Contents", [])]
            prefixes += [p["Prefix"] for p in page.get("CommonPrefixes", [])]
        check(
            keys == ["dir/a b+c.txt", "dir/z\u00fc"] and prefixes == ["dir/sub/"],
            "ListObjectsV2: prefix, delimiter, pages of one, url encoding",
        )
        s3.delete_object(Bucket=bucket, Key="dir/sub/1")
        check(
            _error_code(lambda: s3.head_object(Bucket=bucket, Key="dir/sub/1")) == "404",
            "DeleteObject, then HeadObject: 404",
        )
        _aws_chunked_checks(check, server.url, bucket)
        asyncio.run(_worker_checks(check, server.url, bucket, source))

        # Timings through the proxy: 90 MB/s per connection, 30 ms to the first byte.
        started = time.perf_counter()
        got = s3.get_object(Bucket=bucket, Key="big")["Body"].read()
        single = time.perf_counter() - started
        check(got == source, "timed GET: the bytes")
        started = time.perf_counter()
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            halves = list(pool.map(ranged, (0, half), (half - 1, None)))
        parallel = time.perf_counter() - started
        check(b"".join(halves) == source, "timed parallel GETs: the bytes")
        print(f"one 20 MB GET at 90 MB/s + 30 ms: {single:.3f} s (ideal 0.252)")
        print(f"two parallel 10 MB ranged GETs:   {parallel:.3f} s (ideal 0.141)")
        check(0.24 <= single < 0.6, "the single GET is shaped (0.24 s .. 0.6 s)")
        check(0.13 <= parallel < 0.75 * single, "parallel connections are shaped each alone")
        stats = server.stats()
        print("server stats:", json.dumps(stats, sort_keys=True))
    finally:
        shaped.stop()
        server.stop()
    print("selftest:", "FAILED: " + "; ".join(check.failed) if check.failed else "all passed")
    return 1 if check.failed else 0


def main() -> None:
    argv = sys.argv[1:]
    if not argv or argv[0] not in ("serve", "proxy", "selftest", "-h", "--help"):
        argv = ["serve", *argv]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    server = modes.add_parser("serve", help="the in-memory S3 endpoint (the default)")
    server.add_argument("--host", default="127.0.0.1")
    server.add_argument("--port", type=int, default=0)
    shaper = modes.add_parser("proxy", help="a per-connection shaping TCP proxy")
    shaper.add_argument("--host", default="127.0.0.1")
    shaper.add_argument("--port", type=int, default=0)
    shaper.add_argument("--target", required=True, help="URL or host:port to forward to")
    shaper.add_argument("--mbps", type=float, default=0.0, help="MB/s to the client (0: no cap)")
    shaper.add_argument("--up-mbps", type=float, help="MB/s to the server (default: --mbps)")
    shaper.add_argument("--first-byte-ms", type=float, default=0.0, help="delay of a response")
    modes.add_parser("selftest", help="check both with boto3 and aiobotocore, time the proxy")
    args = parser.parse_args(argv)
    if args.mode == "selftest":
        sys.exit(selftest())
    with contextlib.suppress(KeyboardInterrupt):
        if args.mode == "serve":
            asyncio.run(serve(args.host, args.port))
        else:
            up = args.mbps if args.up_mbps is None else args.up_mbps
            asyncio.run(proxy(args.host, args.port, args.target, args.mbps, up, args.first_byte_ms))


if __name__ == "__main__":
    main()
