"""Settings.from_env: defaults from the contract, and every bad value named."""

from __future__ import annotations

import subprocess
import sys

import pytest

from worker.errors import ConfigError
from worker.settings import Settings

BASE = {"QUEUE_URL": "https://sqs.us-east-1.amazonaws.com/1/q"}


def test_defaults_follow_the_contract():
    s = Settings.from_env(BASE)
    assert (s.concurrency, s.idle_exit_seconds, s.wait_seconds) == (16, 30.0, 20)
    assert (s.visibility_seconds, s.shutdown_grace_seconds, s.dlq_url) == (60, 90.0, None)
    assert (s.spot_imds, s.imds_endpoint) == ("auto", "http://169.254.169.254")
    assert (s.log_level, s.log_format) == ("INFO", "json")
    assert s.csv.suffixes == (".csv",) and s.csv.output_prefix == "converted/"
    assert s.csv.output_format == "ndjson" and s.csv.infer_types is False
    assert s.refresh.window_seconds == 30 and s.refresh.table is None
    assert (s.csv.max_record_bytes, s.csv.max_columns) == (16 * 2**20, 100_000)


def test_values_are_read_and_normalised():
    s = Settings.from_env(
        {
            **BASE,
            "WORKER_CONCURRENCY": "40",
            "CSV_SUFFIXES": ".CSV, .tsv",
            "LOG_LEVEL": "debug",
            "CSV_INFER_TYPES": "TRUE",
            "WORKER_IDLE_EXIT_SECONDS": "0",
            "CSV_MAX_RECORD_MB": "64",
            "CSV_MAX_COLUMNS": "1000000",
        }
    )
    assert (s.csv.max_record_bytes, s.csv.max_columns) == (64 * 2**20, 1_000_000)
    assert s.concurrency == 40 and s.receivers == 4
    assert s.csv.suffixes == (".csv", ".tsv")
    assert s.log_level == "DEBUG" and s.csv.infer_types is True
    assert s.idle_exit_seconds == 0


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("WORKER_CONCURRENCY", "zero"),
        ("WORKER_CONCURRENCY", "0"),
        ("WORKER_WAIT_SECONDS", "21"),
        ("WORKER_VISIBILITY_SECONDS", "-1"),
        ("WORKER_IDLE_EXIT_SECONDS", "nan"),
        ("WORKER_SHUTDOWN_GRACE_SECONDS", "soon"),
        ("SPOT_IMDS", "maybe"),
        ("IMDS_ENDPOINT", "169.254.169.254"),
        ("LOG_LEVEL", "LOUD"),
        ("LOG_FORMAT", "xml"),
        ("CSV_OUTPUT_FORMAT", "yaml"),
        ("CSV_INFER_TYPES", "perhaps"),
        ("CSV_DELIMITER", "ab"),
        ("CSV_ENCODING", "klingon"),
        ("CSV_SUFFIXES", " , "),
        ("SIDECAR_NFS_URL", "http://host/export"),
        ("REFRESH_WINDOW_SECONDS", "0"),
        ("CSV_MAX_RECORD_MB", "0"),
        ("CSV_MAX_RECORD_MB", "257"),
        ("CSV_MAX_COLUMNS", "0"),
    ],
)
def test_an_invalid_value_is_a_config_error_naming_its_variable(variable: str, value: str):
    with pytest.raises(ConfigError) as caught:
        Settings.from_env({**BASE, variable: value})
    assert caught.value.option == variable
    assert str(caught.value).startswith(variable)


def test_queue_url_is_required():
    with pytest.raises(ConfigError, match="QUEUE_URL is required"):
        Settings.from_env({})


def test_the_worker_exits_2_with_one_line_naming_the_variable_before_receiving():
    result = subprocess.run(
        [sys.executable, "-m", "worker"],
        env={"PATH": "/usr/bin:/bin", **BASE, "WORKER_WAIT_SECONDS": "99"},
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "spotdrain: configuration error: WORKER_WAIT_SECONDS must be between 0 and 20, got 99"
    ]


def test_help_describes_every_contract_option():
    result = subprocess.run(
        [sys.executable, "-m", "worker", "--help"], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0
    for variable in [
        "QUEUE_URL",
        "WORKER_CONCURRENCY",
        "WORKER_IDLE_EXIT_SECONDS",
        "DLQ_URL",
        "WORKER_WAIT_SECONDS",
        "WORKER_VISIBILITY_SECONDS",
        "SPOT_IMDS",
        "WORKER_SHUTDOWN_GRACE_SECONDS",
        "IMDS_ENDPOINT",
        "LOG_LEVEL",
        "LOG_FORMAT",
        "CSV_SUFFIXES",
        "CSV_OUTPUT_BUCKET",
        "CSV_OUTPUT_PREFIX",
        "CSV_OUTPUT_FORMAT",
        "CSV_INFER_TYPES",
        "CSV_RESULT_QUEUE_URL",
        "SIDECAR_NFS_URL",
        "SIDECAR_ROOT",
        "REFRESH_TABLE",
        "REFRESH_WINDOW_SECONDS",
    ]:
        assert (
            f"[{variable}]" in result.stdout.replace("\n", " ").replace("  ", " ")
            or variable in result.stdout
        )


def test_a_flag_overrides_its_variable():
    from worker.__main__ import parse_args

    assert parse_args(["--worker-concurrency", "3"]) == {"WORKER_CONCURRENCY": "3"}
