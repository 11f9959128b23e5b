"""The C converter under AddressSanitizer and UBSan: a short seeded slice of the fuzz run
(`make fuzz` runs the same properties for minutes), and proof that the sanitizers watch it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="needs a C compiler")


def fuzz(*arguments: str) -> tuple[int, dict[str, Any]]:
    run = subprocess.run(
        [sys.executable, "-m", "scripts.fuzz", *arguments],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    summary: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    return run.returncode, summary


def test_a_seeded_slice_finds_nothing_under_the_sanitizers() -> None:
    status, summary = fuzz("--seconds", "12", "--seed", "20261203")
    assert summary["findings"] == []
    assert status == 0
    assert summary["sanitizers"] == "address,undefined"
    assert all(count >= 25 for count in summary["executions"].values()), summary
    assert set(summary["executions"]) == {"convert", "check", "wide", "utf8", "framing"}


def test_the_sanitizers_report_an_overflow_in_the_fuzzed_process() -> None:
    status, summary = fuzz("--canary", "--seconds", "1")
    (finding,) = summary["findings"]
    assert status == 1
    assert finding["kind"] == "crash"
    assert "AddressSanitizer: heap-buffer-overflow" in finding["report"]
