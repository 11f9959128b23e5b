"""Exit statuses: 2 and one line for a usage error, 1 and one line for a failed AWS call."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.conftest import QueueFactory
from tests.support.worker_process import PROJECT_ROOT

Spotdrain = Any


def test_a_missing_required_option_is_one_line_and_exit_2(spotdrain: Spotdrain) -> None:
    run = spotdrain("dlq", "list")
    assert (run.code, run.out) == (2, "")
    assert run.error_lines == [
        "spotdrain: error: --dlq-url is required (see 'spotdrain dlq list --help')"
    ]


def test_two_missing_options_are_named_in_one_line(spotdrain: Spotdrain) -> None:
    run = spotdrain("dlq", "redrive")
    assert run.code == 2
    assert run.error_lines == [
        "spotdrain: error: --dlq-url and --queue-url are required "
        "(see 'spotdrain dlq redrive --help')"
    ]


def test_an_unknown_subcommand_is_one_line_and_exit_2(spotdrain: Spotdrain) -> None:
    run = spotdrain("dlq", "explode", "--dlq-url", "u")
    assert run.code == 2
    assert len(run.error_lines) == 1
    assert run.error_lines[0].startswith("spotdrain: error: argument ACTION: invalid choice: ")


def test_no_command_is_one_line_and_exit_2(spotdrain: Spotdrain) -> None:
    run = spotdrain()
    assert (run.code, run.error_lines) == (
        2,
        ["spotdrain: error: COMMAND is required (see 'spotdrain --help')"],
    )


@pytest.mark.parametrize("value", ["-1", "0", "ten"])
def test_a_limit_that_is_not_a_positive_number_is_one_line_and_exit_2(
    spotdrain: Spotdrain, value: str
) -> None:
    run = spotdrain("dlq", "redrive", "--dlq-url", "a", "--queue-url", "b", "--limit", value)
    assert run.code == 2
    assert len(run.error_lines) == 1
    assert run.error_lines[0].startswith("spotdrain: error: argument --limit: must be ")


def test_a_started_by_ecs_would_refuse_is_a_usage_error(spotdrain: Spotdrain) -> None:
    run = spotdrain("status", "--queue-url", "q", "--started-by", "has spaces")
    assert run.code == 2
    assert run.error_lines[0].startswith("spotdrain: error: argument --started-by: must be ")


def test_help_exits_0(spotdrain: Spotdrain) -> None:
    run = spotdrain("dlq", "redrive", "--help")
    assert run.code == 0 and "--launcher NAME" in run.out


def test_a_queue_that_does_not_exist_is_one_line_naming_the_call_and_exit_1(
    spotdrain: Spotdrain, make_queue: QueueFactory
) -> None:
    missing = make_queue().url + "-missing"
    run = spotdrain("status", "--queue-url", missing)
    assert (run.code, run.out) == (1, "")
    assert len(run.error_lines) == 1
    assert run.error_lines[0].startswith(
        "spotdrain: error: GetQueueAttributes failed: AWS.SimpleQueueService.NonExistentQueue"
    )


def test_python_m_worker_ops_is_the_same_command(make_queue: QueueFactory) -> None:
    queue = make_queue()
    done = subprocess.run(
        [sys.executable, "-m", "worker.ops", "--json", "dlq", "list", "--dlq-url", queue.dlq_url],
        env=os.environ,
        cwd=PROJECT_ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert '"total": 0' in done.stdout
