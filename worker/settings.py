"""Every option the worker has, read from the environment in one place and validated."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal, TypeVar

from worker.errors import ConfigError

T = TypeVar("T")

LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")
MAX_RECORD_MB = 256  # the largest CSV_MAX_RECORD_MB: the exact path needs ~8x it in memory


@dataclass(frozen=True, kw_only=True)
class CsvSettings:
    """Options of the CSV to JSON job (README, "CSV to JSON")."""

    suffixes: tuple[str, ...] = (".csv",)
    output_bucket: str | None = None
    output_prefix: str = "converted/"
    output_format: Literal["ndjson", "json"] = "ndjson"
    infer_types: bool = False
    result_queue_url: str | None = None
    delimiter: str = ","
    encoding: str = "utf-8"
    ragged: Literal["error", "pad", "truncate"] = "error"
    part_size: int = 8 * 1024 * 1024
    processes: int = 0  # conversion processes; 0 = one per CPU
    progress_seconds: float = 30.0  # a csv.progress line this often during a conversion
    max_record_bytes: int = 16 * 1024 * 1024  # the longest record (or header) held in memory
    max_columns: int = 100_000  # the widest header converted


@dataclass(frozen=True, kw_only=True)
class SidecarSettings:
    """Options of the NFS sidecar job (README, "NFS sidecars")."""

    nfs_url: str | None = None
    root: str | None = None
    nfs_timeout_ms: int = 5000
    nfs_connections: int = 16


@dataclass(frozen=True, kw_only=True)
class RefreshSettings:
    """Options of the aggregated refresh job (README, "Aggregated refreshes")."""

    table: str | None = None
    window_seconds: int = 30
    max_folders: int = 50
    share_cache_seconds: int = 300
    ignore_principals: tuple[str, ...] = ()
    rescue_seconds: int = 60


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The worker's configuration; built by `from_env`, or directly in tests."""

    queue_url: str
    concurrency: int = 16
    receivers: int = 2
    idle_exit_seconds: float = 30.0
    wait_seconds: int = 20
    visibility_seconds: int = 60
    shutdown_grace_seconds: float = 90.0
    cancel_seconds: float = 10.0
    job_timeout_seconds: float = 0.0
    max_receives: int = 10
    dlq_url: str | None = None
    spot_imds: Literal["auto", "on", "off"] = "auto"
    imds_endpoint: str = "http://169.254.169.254"
    spot_poll_seconds: float = 5.0
    log_level: str = "INFO"
    log_format: Literal["json", "console"] = "json"
    region: str | None = None
    probe_jobs: bool = False
    metrics: Literal["emf", "off"] = "emf"
    metrics_namespace: str = "spotdrain"
    metrics_interval_seconds: float = 60.0
    csv: CsvSettings = field(default_factory=CsvSettings)
    sidecar: SidecarSettings = field(default_factory=SidecarSettings)
    refresh: RefreshSettings = field(default_factory=RefreshSettings)

    @property
    def stop_budget_seconds(self) -> float:
        """The longest a stop takes, from the signal to the process's end (but for closing).

        The grace lets running jobs finish; then cancel_seconds to cancel the rest and hand
        their messages back (late receives are handed back meanwhile); then cancel_seconds
        more for the final flush of deletes and hand-back copies. ECS's stopTimeout, the time
        from SIGTERM to SIGKILL, must cover it.
        """
        return self.shutdown_grace_seconds + 2 * self.cancel_seconds

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build and validate settings; raise ConfigError naming the first bad variable."""
        env = _Env(environ)
        concurrency = env.integer("WORKER_CONCURRENCY", 16, low=1, high=1000)
        default_receivers = max(1, min(4, math.ceil(concurrency / 10)))
        wait_seconds = env.integer("WORKER_WAIT_SECONDS", 20, low=0, high=20)
        return cls(
            queue_url=env.required("QUEUE_URL"),
            concurrency=concurrency,
            receivers=env.integer("WORKER_RECEIVERS", default_receivers, low=1, high=32),
            idle_exit_seconds=env.number("WORKER_IDLE_EXIT_SECONDS", 30.0, low=0),
            wait_seconds=wait_seconds,
            visibility_seconds=env.integer("WORKER_VISIBILITY_SECONDS", 60, low=2, high=43200),
            shutdown_grace_seconds=env.number("WORKER_SHUTDOWN_GRACE_SECONDS", 90.0, low=0),
            cancel_seconds=env.number("WORKER_CANCEL_SECONDS", 10.0, low=0.1, high=60),
            job_timeout_seconds=env.number("WORKER_JOB_TIMEOUT_SECONDS", 0.0, low=0),
            max_receives=env.integer("WORKER_MAX_RECEIVES", 10, low=1, high=1000),
            dlq_url=env.optional("DLQ_URL"),
            spot_imds=env.choice("SPOT_IMDS", "auto", ("auto", "on", "off")),  # type: ignore[arg-type]
            imds_endpoint=env.url("IMDS_ENDPOINT", "http://169.254.169.254"),
            spot_poll_seconds=env.number("SPOT_POLL_SECONDS", 5.0, low=0.1, high=60),
            log_level=env.choice("LOG_LEVEL", "INFO", LOG_LEVELS, upper=True),
            log_format=env.choice("LOG_FORMAT", "json", ("json", "console")),  # type: ignore[arg-type]
            region=env.optional("AWS_REGION") or env.optional("AWS_DEFAULT_REGION"),
            probe_jobs=env.boolean("WORKER_PROBE_JOBS", False),
            metrics=env.choice("METRICS", "emf", ("emf", "off")),  # type: ignore[arg-type]
            metrics_namespace=_namespace(env),
            metrics_interval_seconds=env.number(
                "METRICS_INTERVAL_SECONDS", 60.0, low=1, high=86_400
            ),
            csv=_csv_settings(env),
            sidecar=_sidecar_settings(env, concurrency),
            refresh=_refresh_settings(env),
        )


def _csv_settings(env: _Env) -> CsvSettings:
    suffixes = tuple(s.lower() for s in env.csv_list("CSV_SUFFIXES", ".csv"))
    if not suffixes:
        raise ConfigError("CSV_SUFFIXES", "must name at least one suffix")
    delimiter = env.text("CSV_DELIMITER", ",")
    if delimiter != "auto" and (len(delimiter) != 1 or delimiter in '"\r\n'):
        raise ConfigError(
            "CSV_DELIMITER", "must be one character (not a quote or newline) or 'auto'"
        )
    encoding = env.text("CSV_ENCODING", "utf-8")
    try:
        "".encode(encoding)
    except LookupError:
        raise ConfigError("CSV_ENCODING", f"unknown encoding {encoding!r}") from None
    return CsvSettings(
        suffixes=suffixes,
        output_bucket=env.optional("CSV_OUTPUT_BUCKET"),
        output_prefix=env.text("CSV_OUTPUT_PREFIX", "converted/"),
        output_format=env.choice("CSV_OUTPUT_FORMAT", "ndjson", ("ndjson", "json")),  # type: ignore[arg-type]
        infer_types=env.boolean("CSV_INFER_TYPES", False),
        result_queue_url=env.optional("CSV_RESULT_QUEUE_URL"),
        delimiter=delimiter,
        encoding=encoding,
        ragged=env.choice("CSV_RAGGED", "error", ("error", "pad", "truncate")),  # type: ignore[arg-type]
        part_size=env.integer("CSV_PART_SIZE_MB", 8, low=5, high=512) * 1024 * 1024,
        processes=env.integer("CSV_PROCESSES", 0, low=0, high=64),
        progress_seconds=env.number("CSV_PROGRESS_SECONDS", 30.0, low=0.1, high=86_400),
        max_record_bytes=env.integer("CSV_MAX_RECORD_MB", 16, low=1, high=MAX_RECORD_MB) * 2**20,
        max_columns=env.integer("CSV_MAX_COLUMNS", 100_000, low=1, high=10_000_000),
    )


def _namespace(env: _Env) -> str:
    """A CloudWatch namespace: 1 to 255 characters, not starting with `AWS/`."""
    value = env.text("METRICS_NAMESPACE", "spotdrain").strip()
    if not 1 <= len(value) <= 255 or value.startswith("AWS/") or not value.isprintable():
        raise ConfigError(
            "METRICS_NAMESPACE", f"must be 1 to 255 printable characters, not AWS/, got {value!r}"
        )
    return value


def _sidecar_settings(env: _Env, concurrency: int) -> SidecarSettings:
    nfs_url = env.optional("SIDECAR_NFS_URL")
    root = env.optional("SIDECAR_ROOT")
    if nfs_url is not None and not nfs_url.startswith("nfs://"):
        raise ConfigError("SIDECAR_NFS_URL", "must look like nfs://HOST/EXPORT[?options]")
    if nfs_url is not None and root is not None:
        raise ConfigError("SIDECAR_ROOT", "set SIDECAR_NFS_URL or SIDECAR_ROOT, not both")
    return SidecarSettings(
        nfs_url=nfs_url,
        root=root,
        nfs_timeout_ms=env.integer("SIDECAR_NFS_TIMEOUT_MS", 5000, low=100, high=600_000),
        # One connection per job in flight: with network latency, jobs never queue for one.
        nfs_connections=env.integer(
            "SIDECAR_NFS_CONNECTIONS", min(concurrency, 64), low=1, high=256
        ),
    )


def _refresh_settings(env: _Env) -> RefreshSettings:
    return RefreshSettings(
        table=env.optional("REFRESH_TABLE"),
        window_seconds=env.integer("REFRESH_WINDOW_SECONDS", 30, low=1, high=86_400),
        # RefreshCache accepts at most 50 folders per call.
        max_folders=env.integer("REFRESH_MAX_FOLDERS", 50, low=1, high=50),
        share_cache_seconds=env.integer("REFRESH_SHARE_CACHE_SECONDS", 300, low=0, high=86_400),
        ignore_principals=tuple(env.csv_list("REFRESH_IGNORE_PRINCIPALS", "")),
        rescue_seconds=env.integer("REFRESH_RESCUE_SECONDS", 60, low=1, high=86_400),
    )


class _Env:
    """Typed reads of environment variables; every failure names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def _raw(self, name: str) -> str | None:
        value = self._environ.get(name)
        return None if value is None or value.strip() == "" else value.strip()

    def required(self, name: str) -> str:
        value = self._raw(name)
        if value is None:
            raise ConfigError(name, "is required")
        return value

    def optional(self, name: str) -> str | None:
        return self._raw(name)

    def text(self, name: str, default: str) -> str:
        value = self._environ.get(name)
        return default if value is None or value == "" else value

    def _parsed(self, name: str, default: T, parse: Callable[[str], T], what: str) -> T:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            return parse(raw)
        except ValueError:
            raise ConfigError(name, f"must be {what}, got {raw!r}") from None

    def integer(self, name: str, default: int, *, low: int, high: int | None = None) -> int:
        value = self._parsed(name, default, int, "a whole number")
        return _in_range(name, value, low, high)

    def number(self, name: str, default: float, *, low: float, high: float | None = None) -> float:
        value = self._parsed(name, default, float, "a number")
        if not math.isfinite(value):
            raise ConfigError(name, f"must be a finite number, got {value!r}")
        return _in_range(name, value, low, high)

    def boolean(self, name: str, default: bool) -> bool:
        raw = self._raw(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in ("true", "1", "yes", "on"):
            return True
        if lowered in ("false", "0", "no", "off"):
            return False
        raise ConfigError(name, f"must be true or false, got {raw!r}")

    def choice(
        self, name: str, default: str, allowed: tuple[str, ...], *, upper: bool = False
    ) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        value = raw.upper() if upper else raw.lower()
        if value not in allowed:
            raise ConfigError(name, f"must be one of {', '.join(allowed)}, got {raw!r}")
        return value

    def url(self, name: str, default: str) -> str:
        value = self._raw(name) or default
        if not value.startswith(("http://", "https://")):
            raise ConfigError(name, f"must be an http(s) URL, got {value!r}")
        return value.rstrip("/")

    def csv_list(self, name: str, default: str) -> list[str]:
        raw = self._environ.get(name)
        source = default if raw is None else raw
        return [item.strip() for item in source.split(",") if item.strip()]


N = TypeVar("N", int, float)


def _in_range(name: str, value: N, low: N, high: N | None) -> N:
    if value < low or (high is not None and value > high):
        bound = f"between {low} and {high}" if high is not None else f"at least {low}"
        raise ConfigError(name, f"must be {bound}, got {value}")
    return value
