"""A local Storage Gateway endpoint speaking the real JSON 1.1 protocol (moto has none).

It answers ListFileShares (paginated), DescribeNFSFileShares, DescribeSMBFileShares and
RefreshCache, and records every call with its arrival time. Requests are checked against
botocore's service model (target, content type, signing scope, parameters) and so are our
answers, so the fake cannot drift from the API the worker calls. Like a real share, one
that already runs two refreshes answers InvalidGatewayRequestException (when refreshes are
given a duration); `busy(n)` and `throttle(n)` force such answers.

Run it alone (for the demo): `python -m tests.support.storage_gateway --port 8093 --share
my-bucket --share my-bucket/sub/prefix/`; every call is printed as one JSON line. Point the
worker at it with AWS_ENDPOINT_URL_STORAGE_GATEWAY=http://127.0.0.1:8093.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from typing import Any

import botocore.session
from botocore.validate import ParamValidator

from tests.support.loopback import LoopbackServer

TARGET_PREFIX = "StorageGateway_20130630."
CONTENT_TYPE = "application/x-amz-json-1.1"
OPERATIONS = ("ListFileShares", "DescribeNFSFileShares", "DescribeSMBFileShares", "RefreshCache")
ACCOUNT = "123456789012"

_MODEL = botocore.session.get_session().get_service_model("storagegateway")
_VALIDATOR = ParamValidator()


class ApiError(Exception):
    def __init__(self, code: str, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = status


@dataclass(frozen=True)
class Call:
    operation: str
    params: dict[str, Any]
    at: float  # time.time() when the request arrived
    error: str | None = None


@dataclass
class Share:
    arn: str
    kind: str
    location: str
    gateway_arn: str
    status: str = "AVAILABLE"
    running: list[float] = field(default_factory=list)  # end times of refreshes in progress


class StorageGatewayEndpoint(LoopbackServer):
    """The endpoint on a free loopback port; `url` goes in AWS_ENDPOINT_URL_STORAGE_GATEWAY."""

    def __init__(
        self,
        *,
        region: str = "us-east-1",
        port: int = 0,
        page_size: int = 100,
        refresh_seconds: float = 0.0,
        echo: bool = False,
    ) -> None:
        self.region = region
        self.page_size = page_size
        self.refresh_seconds = refresh_seconds
        self.echo = echo
        self.gateway_arn = f"arn:aws:storagegateway:{region}:{ACCOUNT}:gateway/sgw-12A3456B"
        self.calls: list[Call] = []
        self._shares: dict[str, Share] = {}
        self._forced: list[tuple[str, str]] = []  # (code, message) answers owed to RefreshCache
        self._lock = threading.Lock()
        super().__init__(_handler_for(self), port=port)

    # -- what tests arrange -------------------------------------------------------------
    def add_share(self, location: str, *, kind: str = "NFS", status: str = "AVAILABLE") -> str:
        """A share on `location` ('bucket' or 'bucket/prefix/', or a full LocationARN)."""
        if not location.startswith("arn:"):
            location = "arn:aws:s3:::" + location
        share_id = "share-" + uuid.uuid4().hex[:8].upper()
        arn = f"arn:aws:storagegateway:{self.region}:{ACCOUNT}:share/{share_id}"
        with self._lock:
            self._shares[arn] = Share(arn, kind, location, self.gateway_arn, status)
        return arn

    def busy(self, times: int) -> None:
        """The next `times` RefreshCache calls find the share busy."""
        message = "The file share already has two refresh operations in progress (local fake)."
        with self._lock:
            self._forced.extend([("InvalidGatewayRequestException", message)] * times)

    def throttle(self, times: int) -> None:
        with self._lock:
            self._forced.extend([("ThrottlingException", "Rate exceeded (local fake)")] * times)

    # -- what tests read ----------------------------------------------------------------
    def recorded(self, operation: str | None = None, *, ok: bool | None = None) -> list[Call]:
        with self._lock:
            calls = list(self.calls)
        return [
            c
            for c in calls
            if (operation is None or c.operation == operation)
            and (ok is None or (c.error is None) == ok)
        ]

    def refreshes(self) -> list[Call]:
        """RefreshCache calls the gateway accepted."""
        return self.recorded("RefreshCache", ok=True)

    # -- the protocol ---------------------------------------------------------------------
    def handle(
        self, target: str, content_type: str, auth: str, body: bytes
    ) -> tuple[int, dict[str, Any]]:
        arrived = time.time()
        operation = target[len(TARGET_PREFIX) :] if target.startswith(TARGET_PREFIX) else ""
        params: dict[str, Any] = {}
        try:
            if operation not in OPERATIONS:
                raise ApiError("UnknownOperationException", f"unknown target {target!r}")
            if content_type != CONTENT_TYPE:
                raise ApiError("ValidationException", f"content type {content_type!r}")
            if "/storagegateway/aws4_request" not in auth:
                raise ApiError("IncompleteSignatureException", "not signed for storagegateway")
            params = json.loads(body or b"{}")
            _validate(operation, params, "input")
            with self._lock:
                answer = getattr(self, "_" + _snake(operation))(params, arrived)
            _validate(operation, answer, "output")
        except ApiError as exc:
            self._record(Call(operation or target, params, arrived, exc.code))
            return exc.status, {"__type": exc.code, "message": exc.message}
        self._record(Call(operation, params, arrived))
        return 200, answer

    def _record(self, call: Call) -> None:
        with self._lock:
            self.calls.append(call)
        if self.echo:
            print(
                json.dumps(
                    {
                        "at": round(call.at, 3),
                        "operation": call.operation,
                        "params": call.params,
                        "error": call.error,
                    }
                ),
                flush=True,
            )

    def _list_file_shares(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        shares = sorted(self._shares.values(), key=lambda s: s.arn)
        if "GatewayARN" in params:
            shares = [s for s in shares if s.gateway_arn == params["GatewayARN"]]
        start = int(params.get("Marker", "0") or 0)
        size = min(self.page_size, params.get("Limit", self.page_size))
        page = shares[start : start + size]
        answer: dict[str, Any] = {
            "FileShareInfoList": [
                {
                    "FileShareType": s.kind,
                    "FileShareARN": s.arn,
                    "FileShareId": s.arn.rsplit("/", 1)[1],
                    "FileShareStatus": s.status,
                    "GatewayARN": s.gateway_arn,
                }
                for s in page
            ]
        }
        if "Marker" in params:
            answer["Marker"] = params["Marker"]
        if start + size < len(shares):
            answer["NextMarker"] = str(start + size)
        return answer

    def _describe(self, kind: str, params: dict[str, Any]) -> list[dict[str, Any]]:
        infos = []
        for arn in params["FileShareARNList"]:
            share = self._shares.get(arn)
            if share is None or share.kind != kind:
                raise ApiError("InvalidGatewayRequestException", f"no {kind} file share {arn}")
            info = {
                "FileShareARN": share.arn,
                "FileShareId": share.arn.rsplit("/", 1)[1],
                "FileShareStatus": share.status,
                "GatewayARN": share.gateway_arn,
                "LocationARN": share.location,
                "Role": f"arn:aws:iam::{ACCOUNT}:role/StorageGatewayBucketAccess",
                "FileShareName": share.location.rsplit(":", 1)[1].replace("/", "-").strip("-"),
            }
            if kind == "NFS":
                info["Path"] = "/" + info["FileShareName"]
            else:
                info["Path"] = info["FileShareName"]
            infos.append(info)
        return infos

    def _describe_nfs_file_shares(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return {"NFSFileShareInfoList": self._describe("NFS", params)}

    def _describe_smb_file_shares(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        return {"SMBFileShareInfoList": self._describe("SMB", params)}

    def _refresh_cache(self, params: dict[str, Any], now: float) -> dict[str, Any]:
        share = self._shares.get(params["FileShareARN"])
        if share is None:
            raise ApiError(
                "InvalidGatewayRequestException", "The specified file share was not found."
            )
        if self._forced:
            code, message = self._forced.pop(0)
            raise ApiError(code, message)
        share.running = [end for end in share.running if end > now]
        if len(share.running) >= 2:
            raise ApiError(
                "InvalidGatewayRequestException",
                "The file share already has two refresh operations in progress (local fake).",
            )
        if self.refresh_seconds > 0:
            share.running.append(now + self.refresh_seconds)
        return {"FileShareARN": share.arn, "NotificationId": str(uuid.uuid4())}


def _validate(operation: str, params: dict[str, Any], direction: str) -> None:
    model = _MODEL.operation_model(operation)
    shape = model.input_shape if direction == "input" else model.output_shape
    report = _VALIDATOR.validate(params, shape)
    problems = [report.generate_report()] if report.has_errors() else []
    problems += _over_limits(params, shape, "")  # botocore checks minimums only
    if problems:
        if direction == "output":  # a bug in this fake, not in the caller
            raise AssertionError(f"fake {operation} answer breaks the model: {problems}")
        raise ApiError("ValidationException", "; ".join(problems))


def _over_limits(value: Any, shape: Any, where: str) -> list[str]:
    """Maximum lengths and values of the model, which the service enforces."""
    problems = []
    limit = shape.metadata.get("max")
    if limit is not None and isinstance(value, str | list) and len(value) > limit:
        problems.append(f"{where or 'value'}: length {len(value)} over {limit}")
    if (
        limit is not None
        and isinstance(value, int)
        and not isinstance(value, bool)
        and value > limit
    ):
        problems.append(f"{where}: {value} over {limit}")
    if shape.type_name == "structure" and isinstance(value, dict):
        for name, member in shape.members.items():
            if name in value:
                problems += _over_limits(value[name], member, f"{where}.{name}".lstrip("."))
    elif shape.type_name == "list" and isinstance(value, list):
        for index, item in enumerate(value):
            problems += _over_limits(item, shape.member, f"{where}[{index}]")
    return problems


def _snake(operation: str) -> str:
    return {
        "ListFileShares": "list_file_shares",
        "DescribeNFSFileShares": "describe_nfs_file_shares",
        "DescribeSMBFileShares": "describe_smb_file_shares",
        "RefreshCache": "refresh_cache",
    }[operation]


def _handler_for(endpoint: StorageGatewayEndpoint) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", "0") or 0))
            status, answer = endpoint.handle(
                self.headers.get("X-Amz-Target", ""),
                self.headers.get("Content-Type", ""),
                self.headers.get("Authorization", ""),
                body,
            )
            payload = json.dumps(answer).encode()
            self.send_response(status)
            self.send_header("Content-Type", CONTENT_TYPE)
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("x-amzn-RequestId", str(uuid.uuid4()))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:  # quiet: calls are recorded
            pass

    return Handler


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--region", default="us-east-1")
    parser.add_argument(
        "--share", action="append", default=[], help="bucket or bucket/prefix/ (repeatable)"
    )
    parser.add_argument("--smb-share", action="append", default=[], help="the same, as SMB")
    parser.add_argument(
        "--refresh-seconds", type=float, default=0.0, help="how long each refresh keeps running"
    )
    args = parser.parse_args()
    endpoint = StorageGatewayEndpoint(
        region=args.region, port=args.port, refresh_seconds=args.refresh_seconds, echo=True
    )
    for location in args.share:
        endpoint.add_share(location)
    for location in args.smb_share:
        endpoint.add_share(location, kind="SMB")
    print(
        json.dumps({"listening": endpoint.url, "shares": len(args.share) + len(args.smb_share)}),
        flush=True,
    )
    endpoint.start()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        endpoint.stop()


if __name__ == "__main__":
    main()
