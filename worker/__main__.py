"""`python -m worker`: read settings, configure logs, drain the queue; exit 0, 1 or 2."""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from collections.abc import Sequence

from worker.errors import ConfigError
from worker.logs import configure_logging
from worker.settings import Settings

EXIT_OK, EXIT_UNEXPECTED, EXIT_CONFIG = 0, 1, 2

# Flags mirror the environment variables of the README; a flag wins over its variable.
OPTIONS: dict[str, str] = {
    "QUEUE_URL": "the SQS queue to drain (required)",
    "WORKER_CONCURRENCY": "jobs in flight at once (default 16)",
    "WORKER_IDLE_EXIT_SECONDS": "exit after the queue held nothing for this long; 0 = never (default 30)",
    "WORKER_WAIT_SECONDS": "SQS long-poll wait, 0 to 20 (default 20)",
    "WORKER_VISIBILITY_SECONDS": "lease per message, renewed while its job runs (default 60)",
    "WORKER_SHUTDOWN_GRACE_SECONDS": "after SIGTERM or a Spot notice, time running jobs may finish (default 90)",
    "WORKER_CANCEL_SECONDS": "after the grace, time to cancel jobs and hand messages back (default 10)",
    "WORKER_JOB_TIMEOUT_SECONDS": "a job running longer is cancelled and retried; 0 = no limit (default 0)",
    "WORKER_MAX_RECEIVES": "with DLQ_URL, dead-letter a message after this many real attempts, never more than the redrive's maxReceiveCount; stops are not attempts (default 10)",
    "WORKER_RECEIVERS": "concurrent long-poll loops (default: concurrency / 10, 1 to 4)",
    "WORKER_PROBE_JOBS": "accept the diagnostic 'probe' job (default false)",
    "DLQ_URL": "queue for messages that can never succeed (default: the queue's redrive policy)",
    "SPOT_IMDS": "watch EC2 instance metadata for a Spot notice: auto, on, off (default auto)",
    "IMDS_ENDPOINT": "base address of the instance metadata service (default http://169.254.169.254)",
    "SPOT_POLL_SECONDS": "how often the Spot notice is polled (default 5)",
    "LOG_LEVEL": "DEBUG, INFO, WARNING or ERROR (default INFO)",
    "LOG_FORMAT": "json or console (default json)",
    "METRICS": "emf: CloudWatch embedded metric format records on the log stream; off (default emf)",
    "METRICS_NAMESPACE": "CloudWatch namespace of the metrics (default spotdrain)",
    "METRICS_INTERVAL_SECONDS": "one metrics record per this many seconds, and one at exit (default 60)",
    "CSV_SUFFIXES": "comma-separated, case-insensitive suffixes to convert (default .csv)",
    "CSV_OUTPUT_BUCKET": "bucket for JSON output (default: the source bucket)",
    "CSV_OUTPUT_PREFIX": "prefix prepended to the source key (default converted/)",
    "CSV_OUTPUT_FORMAT": "ndjson or json (default ndjson)",
    "CSV_INFER_TYPES": "turn canonical numbers, booleans and empty fields into JSON types (default false)",
    "CSV_RESULT_QUEUE_URL": "queue told about every finished conversion (default none)",
    "CSV_DELIMITER": "one character, or auto to sniff it (default ,)",
    "CSV_ENCODING": "text encoding of the CSV files (default utf-8, BOM tolerated)",
    "CSV_RAGGED": "rows with the wrong field count: error, pad or truncate (default error)",
    "CSV_PART_SIZE_MB": "multipart upload part size in MiB, 5 to 512 (default 8)",
    "CSV_PROCESSES": "processes converting CSV frames; 0 = one per CPU (default 0)",
    "CSV_MAX_RECORD_MB": "longest CSV record or header held in memory, 1 to 256 (default 16)",
    "CSV_MAX_COLUMNS": "widest CSV header, and most fields in any record (default 100000)",
    "CSV_PROGRESS_SECONDS": "a csv.progress log line this often during a conversion (default 30)",
    "SIDECAR_NFS_URL": "nfs://HOST/EXPORT[?options]: write sidecars through libnfs",
    "SIDECAR_ROOT": "a mounted directory to write sidecars in instead",
    "SIDECAR_NFS_TIMEOUT_MS": "timeout of every NFS call in ms, rounded up to whole seconds (default 5000)",
    "SIDECAR_NFS_CONNECTIONS": "NFS connections, one per I/O thread (default: WORKER_CONCURRENCY, at most 64)",
    "REFRESH_TABLE": "DynamoDB table (partition key 'target') that aggregates refreshes",
    "REFRESH_WINDOW_SECONDS": "at most one RefreshCache per bucket per window (default 30)",
    "REFRESH_MAX_FOLDERS": "above this many changed folders, refresh the share's root (default 50)",
    "REFRESH_SHARE_CACHE_SECONDS": "how long the file shares behind a bucket are cached (default 300)",
    "REFRESH_IGNORE_PRINCIPALS": "event principals whose changes are ignored: the gateway's role (AWS:AROA...)",
    "REFRESH_RESCUE_SECONDS": "a refresh this overdue is re-sent by the next change to its bucket (default 60)",
}


def parse_args(argv: Sequence[str]) -> dict[str, str]:
    parser = argparse.ArgumentParser(
        prog="python -m worker",
        description="Drain an SQS queue of spotdrain jobs (CSV to JSON, aggregated Storage "
        "Gateway refreshes, NFS sidecars), then exit. Every option is an environment variable; "
        "the flags below set the same. AWS_REGION, AWS_ENDPOINT_URL and the credential chain "
        "apply as usual.",
        epilog="Exit status: 0 drained or stopped gracefully, 2 configuration error, 1 anything else.",
    )
    for variable, meaning in OPTIONS.items():
        flag = "--" + variable.lower().replace("_", "-")
        parser.add_argument(flag, dest=variable, metavar="VALUE", help=f"{meaning} [{variable}]")
    namespace = parser.parse_args(list(argv))
    return {k: v for k, v in vars(namespace).items() if v is not None}


def main(argv: Sequence[str] | None = None) -> int:
    overrides = parse_args(sys.argv[1:] if argv is None else argv)
    environ = {**os.environ, **overrides}
    try:
        settings = Settings.from_env(environ)
    except ConfigError as exc:
        print(f"spotdrain: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    configure_logging(settings.log_level, settings.log_format)
    from worker import lifecycle  # after logging is configured, so module loggers bind to it

    try:
        asyncio.run(lifecycle.run(settings))
    except ConfigError as exc:
        print(f"spotdrain: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    except Exception:
        import structlog

        structlog.get_logger("worker").exception("worker.crashed")
        return EXIT_UNEXPECTED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
