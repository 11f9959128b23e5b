"""Every option the launcher has, read from the environment in one place and validated."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from launcher.errors import ConfigError

# Options of the worker that the launcher hands to every task it starts (README, "Running the
# worker"): the job settings and the worker's own tuning, exactly as the launcher has them.
FORWARDED_PREFIXES = ("CSV_", "REFRESH_", "SIDECAR_", "WORKER_")
FORWARDED_NAMES = ("DLQ_URL", "METRICS", "METRICS_NAMESPACE", "METRICS_INTERVAL_SECONDS")

RUN_TASK_MAX_COUNT = 10  # RunTask starts at most 10 tasks per call
OVERRIDES_MAX_CHARS = 8192  # RunTask's limit on the JSON of `overrides`
STARTED_BY_MAX = 36
_STARTED_BY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/")


@dataclass(frozen=True, kw_only=True)
class KeyFilter:
    """Allow-lists for S3 keys, matched as literal strings: no patterns, no case folding."""

    suffixes: tuple[str, ...] = ()
    prefixes: tuple[str, ...] = ()

    def allows(self, key: str) -> bool:
        """True when the key ends with an allowed suffix and starts with an allowed prefix.

        An empty list allows everything; `str.endswith` / `str.startswith` with a tuple do the
        exact matching, so `.csv` never matches `xcsv` and `*` or `.` mean only themselves.
        """
        if self.suffixes and not key.endswith(self.suffixes):
            return False
        return not (self.prefixes and not key.startswith(self.prefixes))


@dataclass(frozen=True, kw_only=True)
class Settings:
    """The launcher's configuration; built by `from_env`, or directly in tests."""

    queue_url: str
    cluster: str
    task_definition: str
    subnets: tuple[str, ...] = ()
    security_groups: tuple[str, ...] = ()
    assign_public_ip: str = "DISABLED"
    capacity_providers: tuple[str, ...] = ("FARGATE_SPOT", "FARGATE")
    max_tasks: int = 10
    messages_per_task: int = 100
    key_filter: KeyFilter = field(default_factory=KeyFilter)
    container_name: str = "worker"
    started_by: str = ""
    platform_version: str | None = None
    worker_environment: tuple[tuple[str, str], ...] = ()
    metrics: bool = True  # METRICS=emf (the default) or off
    metrics_namespace: str = "spotdrain"
    metrics_interval_seconds: int = 60
    fleet_lock_table: str | None = None  # FLEET_LOCK_TABLE: one sizing at a time (lease.py)

    def __post_init__(self) -> None:
        if not self.started_by:
            object.__setattr__(self, "started_by", default_started_by(self.queue_url))

    @property
    def queue_name(self) -> str:
        return queue_name(self.queue_url)

    def overrides(self) -> dict[str, Any]:
        """RunTask `overrides`: the queue and the forwarded job settings, for our container."""
        environment = [{"name": "QUEUE_URL", "value": self.queue_url}]
        environment += [{"name": k, "value": v} for k, v in self.worker_environment]
        return {"containerOverrides": [{"name": self.container_name, "environment": environment}]}

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> Settings:
        """Build and validate settings; raise ConfigError naming the first bad variable."""
        env = _Env(environ)
        subnets = tuple(env.csv_list("SUBNETS"))
        security_groups = tuple(env.csv_list("SECURITY_GROUPS"))
        if security_groups and not subnets:
            raise ConfigError("SUBNETS", "is required when SECURITY_GROUPS is set")
        providers = tuple(env.csv_list("CAPACITY_PROVIDERS", "FARGATE_SPOT,FARGATE"))
        if not providers:
            raise ConfigError("CAPACITY_PROVIDERS", "must name at least one capacity provider")
        if len(set(providers)) != len(providers):
            raise ConfigError(
                "CAPACITY_PROVIDERS", f"names a provider twice: {','.join(providers)}"
            )
        started_by = env.optional("STARTED_BY") or ""
        if started_by:
            check_started_by(started_by)
        settings = cls(
            queue_url=env.required("QUEUE_URL"),
            cluster=env.required("CLUSTER"),
            task_definition=env.required("TASK_DEFINITION"),
            subnets=subnets,
            security_groups=security_groups,
            assign_public_ip=env.choice("ASSIGN_PUBLIC_IP", "DISABLED", ("ENABLED", "DISABLED")),
            capacity_providers=providers,
            max_tasks=env.integer("MAX_TASKS", 10, low=1, high=10_000),
            messages_per_task=env.integer("MESSAGES_PER_TASK", 100, low=1, high=10_000_000),
            key_filter=KeyFilter(
                suffixes=tuple(env.csv_list("KEY_SUFFIXES")),
                prefixes=tuple(env.csv_list("KEY_PREFIXES")),
            ),
            container_name=env.optional("CONTAINER_NAME") or "worker",
            started_by=started_by,
            platform_version=env.optional("PLATFORM_VERSION"),
            worker_environment=forwarded_environment(environ),
            metrics=env.choice("METRICS", "EMF", ("EMF", "OFF")) == "EMF",
            metrics_namespace=env.optional("METRICS_NAMESPACE") or "spotdrain",
            metrics_interval_seconds=env.integer(
                "METRICS_INTERVAL_SECONDS", 60, low=1, high=86_400
            ),
            fleet_lock_table=env.optional("FLEET_LOCK_TABLE"),
        )
        size = len(json.dumps(settings.overrides(), separators=(",", ":")))
        if size > OVERRIDES_MAX_CHARS:
            raise ConfigError(
                "QUEUE_URL",
                f"and the forwarded CSV_/REFRESH_/SIDECAR_/WORKER_/DLQ_URL variables make "
                f"RunTask overrides of {size} characters; ECS accepts {OVERRIDES_MAX_CHARS}",
            )
        return settings


def forwarded_environment(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """The worker options present in the launcher's environment, sorted by name."""
    return tuple(
        sorted(
            (name, value)
            for name, value in environ.items()
            if name.startswith(FORWARDED_PREFIXES) or name in FORWARDED_NAMES
        )
    )


def queue_name(queue_url: str) -> str:
    """The last path segment of a queue URL (`https://sqs.../123456789012/name` -> `name`)."""
    return queue_url.rstrip("/").rsplit("/", 1)[-1]


def default_started_by(queue_url: str) -> str:
    """`sd-` + 8 hex digits of the queue URL + the queue's name, cut to ECS's 36 characters.

    The digest keeps two queues whose names share a long prefix (or live in different
    accounts) apart; the name keeps the value readable in the console.
    """
    digest = hashlib.sha256(queue_url.encode()).hexdigest()[:8]
    name = "".join(c if c in _STARTED_BY_CHARS else "-" for c in queue_name(queue_url))
    return f"sd-{digest}-{name}"[:STARTED_BY_MAX].rstrip("-")


def check_started_by(value: str) -> None:
    if len(value) > STARTED_BY_MAX or not set(value) <= _STARTED_BY_CHARS:
        raise ConfigError(
            "STARTED_BY",
            f"must be at most {STARTED_BY_MAX} letters, digits, '-', '_' or '/', got {value!r}",
        )


class _Env:
    """Typed reads of environment variables; every failure names its variable."""

    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def optional(self, name: str) -> str | None:
        value = self._environ.get(name, "").strip()
        return value or None

    def required(self, name: str) -> str:
        value = self.optional(name)
        if value is None:
            raise ConfigError(name, "is required")
        return value

    def integer(self, name: str, default: int, *, low: int, high: int) -> int:
        raw = self.optional(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise ConfigError(name, f"must be a whole number, got {raw!r}") from None
        if not low <= value <= high:
            raise ConfigError(name, f"must be between {low} and {high}, got {value}")
        return value

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        raw = self.optional(name)
        if raw is None:
            return default
        if raw.upper() not in allowed:
            raise ConfigError(name, f"must be one of {', '.join(allowed)}, got {raw!r}")
        return raw.upper()

    def csv_list(self, name: str, default: str = "") -> list[str]:
        raw = self._environ.get(name)
        source = default if raw is None else raw
        return [item.strip() for item in source.split(",") if item.strip()]
