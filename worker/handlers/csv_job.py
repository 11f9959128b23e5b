"""The csv job: convert one CSV object in S3 to JSON beside it (README, "CSV to JSON").

Idempotent: the output carries the source's ETag and the conversion options in its
metadata and its row count in its tags; a redelivered job whose output already matches is
acknowledged without converting again. A failed or cancelled conversion aborts its
multipart upload, and a retry first removes uploads an earlier attempt left behind.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import structlog

from worker.adapters.s3 import ObjectInfo, OutputWriter
from worker.csvconv import blocks
from worker.csvconv.options import CsvOptions
from worker.csvconv.pool import FramePool
from worker.csvconv.stream import Conversion, run_here
from worker.errors import PermanentError
from worker.jobs import Job, MessageFacts
from worker.metrics import Metrics
from worker.ports import Adapters, ObjectStore, Outbox
from worker.settings import CsvSettings, Settings

log = structlog.get_logger("worker.csv")

MESSAGE_LIMIT = 256 * 1024  # SQS's largest message body
SMALL_OBJECT = 256 * 1024  # converted in this process: cheaper than a trip to the pool
CONTENT_TYPES = {"ndjson": "application/x-ndjson", "json": "application/json"}


@dataclass(frozen=True)
class CsvRequest:
    bucket: str
    key: str

    @classmethod
    def parse(cls, payload: dict[str, Any]) -> CsvRequest:
        bucket, key = payload.get("bucket"), payload.get("key")
        if not isinstance(bucket, str) or not bucket or not isinstance(key, str) or not key:
            raise PermanentError("a csv job needs string 'bucket' and 'key' fields")
        return cls(bucket, key)


def output_key(key: str, csv: CsvSettings) -> str:
    """The output prefix + the key with its CSV suffix replaced by .json (appended if none)."""
    lowered = key.lower()
    for suffix in sorted(csv.suffixes, key=len, reverse=True):
        if lowered.endswith(suffix):
            return csv.output_prefix + key[: len(key) - len(suffix)] + ".json"
    return csv.output_prefix + key + ".json"


def options_of(csv: CsvSettings) -> CsvOptions:
    return CsvOptions(
        delimiter=csv.delimiter,
        encoding=csv.encoding,
        infer_types=csv.infer_types,
        ragged=csv.ragged,
        output_format=csv.output_format,
        max_record_bytes=csv.max_record_bytes,
        max_columns=csv.max_columns,
    )


def fingerprint(csv: CsvSettings) -> str:
    """The options that shape an output, as stored in its metadata (ASCII only)."""
    return (
        f"{csv.output_format};types={str(csv.infer_types).lower()};ragged={csv.ragged};"
        f"delimiter={csv.delimiter.encode().hex()};encoding={csv.encoding.lower()}"
    )


def result_message(
    *,
    source: ObjectInfo,
    bucket: str,
    key: str,
    rows: int,
    columns: int,
    size: int,
    output_format: str,
    output: bytes | None,
) -> str:
    """The result notification; it holds the records too when the whole fits in one message."""
    fields: dict[str, Any] = {
        "bucket": bucket,
        "key": key,
        "format": output_format,
        "rows": rows,
        "columns": columns,
        "bytes": size,
        "source_bucket": source.bucket,
        "source_key": source.key,
        "source_etag": source.etag,
    }
    if source.version_id:
        fields["source_version_id"] = source.version_id
    body = json.dumps(fields, ensure_ascii=False)
    if output is None or len(output) + len(body.encode()) + 16 > MESSAGE_LIMIT:
        return body
    if output_format == "ndjson":
        records = b"[" + output.rstrip(b"\n").replace(b"\n", b",") + b"]"
    else:
        records = output.rstrip(b"\n")
    return body[:-1] + ', "records": ' + records.decode("utf-8") + "}"


class Progress:
    """A `csv.progress` line every `every` seconds of one conversion: how far, how fast."""

    def __init__(self, source: ObjectInfo, *, every: float) -> None:
        self._source = source
        self._every = every
        self._started = time.monotonic()
        self._next = self._started + every
        self._bytes = 0

    def read(self, size: int, rows: int) -> None:
        self._bytes += size
        now = time.monotonic()
        if now < self._next:
            return
        self._next = now + self._every
        seconds = max(now - self._started, 1e-6)
        rate = self._bytes / seconds
        total = max(self._source.size, self._bytes)
        log.info(
            "csv.progress",
            source=f"s3://{self._source.bucket}/{self._source.key}",
            bytes=self._bytes,
            rows=rows,
            mb_per_s=round(rate / 1e6, 1),
            percent=round(100 * self._bytes / total, 1) if total else 100.0,
            eta_s=round((total - self._bytes) / rate, 1) if rate else None,
        )


class CsvJob:
    def __init__(
        self,
        csv: CsvSettings,
        s3: ObjectStore,
        results: Outbox | None,
        pool: FramePool,
        metrics: Metrics,
    ) -> None:
        self._csv = csv
        self._metrics = metrics
        self._s3 = s3
        self._results = results
        self._pool = pool
        self._options = options_of(csv)
        self._fingerprint = fingerprint(csv)
        # Large conversions share the converter processes; running more of them at once
        # than there are processes gains no speed and multiplies the memory in flight.
        self._large = asyncio.Semaphore(pool.processes)

    async def __call__(self, job: Job, facts: MessageFacts) -> str | None:
        request = CsvRequest.parse(job.payload)
        csv = self._csv
        bucket = csv.output_bucket or request.bucket
        if bucket == request.bucket and request.key.startswith(csv.output_prefix):
            raise PermanentError(
                f"refusing to convert our own output (under {csv.output_prefix!r})"
            )
        key = output_key(request.key, csv)
        source = await self._s3.head(request.bucket, request.key)
        if source is None:
            raise PermanentError(f"s3://{request.bucket}/{request.key} does not exist")
        done = await self._existing(source, bucket, key)
        if done is not None:
            rows, columns, size = done
            log.info("csv.unchanged", source=f"s3://{source.bucket}/{source.key}", rows=rows)
            await self._notify(source, bucket, key, rows, columns, size, None)
            return "unchanged"
        if facts.receive_count > 1:
            aborted = await self._s3.abort_uploads(bucket, key)
            if aborted:
                log.info("csv.stale_uploads_aborted", bucket=bucket, key=key, count=aborted)
        metadata = {"source-etag": source.etag, "options": self._fingerprint}
        if source.version_id:
            metadata["source-version-id"] = source.version_id
        writer = self._s3.writer(
            bucket,
            key,
            part_bytes=csv.part_size,
            metadata=metadata,
            content_type=CONTENT_TYPES[csv.output_format],
        )
        waits = Waits()
        large = source.size > SMALL_OBJECT
        async with self._large if large else contextlib.nullcontext():
            started = time.monotonic()
            try:
                conversion = await self._convert(source, writer, waits)
                tags = {"rows": str(conversion.rows), "columns": str(conversion.columns)}
                with waits.on("finish"):
                    await writer.close(tags)
            except BaseException:
                await asyncio.shield(writer.abort())
                raise
        seconds = max(time.monotonic() - started, 1e-6)
        self._metrics.count("CsvBytesIn", source.size)
        self._metrics.count("CsvBytesOut", writer.size)
        log.info(
            "csv.converted",
            output=writer.where,
            rows=conversion.rows,
            columns=conversion.columns,
            source_bytes=source.size,
            output_bytes=writer.size,
            multipart=writer.parts > 0,
            seconds=round(seconds, 3),
            mb_per_s=round(source.size / seconds / 1e6, 1),
            **waits.rounded(),
        )
        await self._notify(
            source, bucket, key, conversion.rows, conversion.columns, writer.size, writer.whole
        )
        return f"{conversion.rows} rows to {writer.where}"

    async def _existing(
        self, source: ObjectInfo, bucket: str, key: str
    ) -> tuple[int, int, int] | None:
        """(rows, columns, size) of an output already made from this very source, else None."""
        output = await self._s3.head(bucket, key)
        if output is None or output.metadata.get("source-etag") != source.etag:
            return None
        if output.metadata.get("options") != self._fingerprint:
            return None
        tags = await self._s3.tags(bucket, key)
        if "rows" not in tags:
            return None  # the upload completed but its tagging did not: convert again
        return int(tags["rows"]), int(tags.get("columns", 0)), output.size

    async def _convert(self, source: ObjectInfo, writer: OutputWriter, waits: Waits) -> Conversion:
        small = source.size <= SMALL_OBJECT
        conversion = Conversion(
            self._options,
            submit=run_here if small else self._pool.submit,
            window=2 * self._pool.processes + 1,
        )
        chunks = aiter(self._s3.stream(source))
        progress = Progress(source, every=self._csv.progress_seconds)
        while True:
            with waits.on("read"):
                chunk = await anext(chunks, None)
            if chunk is None:
                break
            progress.read(len(chunk), conversion.rows)
            with waits.on("frame"):
                conversion.feed(chunk)
            while conversion.full:
                await self._settle(conversion, writer, waits)
        conversion.finish()
        while conversion.oldest is not None:
            await self._settle(conversion, writer, waits)
        await writer.write([conversion.closing()])
        return conversion

    async def _settle(self, conversion: Conversion, writer: OutputWriter, waits: Waits) -> None:
        """Wait for the oldest frame without raising, then write its output (or raise)."""
        oldest = conversion.oldest
        assert oldest is not None
        with waits.on("convert"):
            await asyncio.wait([asyncio.wrap_future(oldest)])
        pieces = conversion.settle()
        with waits.on("upload"):
            await writer.write(pieces)

    async def _notify(
        self,
        source: ObjectInfo,
        bucket: str,
        key: str,
        rows: int,
        columns: int,
        size: int,
        output: bytes | None,
    ) -> None:
        if self._results is None:
            return
        await self._results.send(
            result_message(
                source=source,
                bucket=bucket,
                key=key,
                rows=rows,
                columns=columns,
                size=size,
                output_format=self._csv.output_format,
                output=output,
            )
        )


class Waits:
    """Seconds a conversion spent waiting on each stage (read, frame, convert, upload): the
    log line then tells which one bounds its speed."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def on(self, stage: str) -> Iterator[None]:
        started = time.monotonic()
        try:
            yield
        finally:
            elapsed = time.monotonic() - started
            self.seconds[stage] = self.seconds.get(stage, 0.0) + elapsed

    def rounded(self) -> dict[str, float]:
        return {f"{stage}_s": round(value, 2) for stage, value in self.seconds.items()}


def create(settings: Settings, adapters: Adapters) -> CsvJob:
    if not blocks.ACCELERATED:
        log.warning("csv.no_c_converter", detail="the csv module converts every frame, ~10x slower")
    return CsvJob(
        settings.csv, adapters.objects, adapters.csv_results, adapters.frames, adapters.metrics
    )
