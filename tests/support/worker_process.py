"""Run `python -m worker` as a real process and read its JSON log lines."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any, ClassVar

from tests.support.json_log import JsonLogLines

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess(JsonLogLines):
    """A worker child process whose stdout (JSON lines) is collected as it runs."""

    what: ClassVar[str] = "worker"

    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] = field(init=False)
    lines: list[str] = field(default_factory=list, init=False)
    error_lines: list[str] = field(default_factory=list, init=False)
    _reader: threading.Thread = field(init=False)
    _error_reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker", *self.args],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stderr is not None
        self._reader = _collect(self.process.stdout, self.lines)
        self._error_reader = _collect(self.process.stderr, self.error_lines)

    def _close(self) -> None:
        self._reader.join(5)
        self._error_reader.join(5)
        for pipe in (self.process.stdout, self.process.stderr):
            if pipe is not None:
                pipe.close()

    @property
    def pid(self) -> int:
        return self.process.pid

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker did not exit within {timeout}s") from None
        self._close()
        return code

    def stderr(self) -> str:
        return "".join(self.error_lines)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        self._close()


def _collect(pipe: IO[str], into: list[str]) -> threading.Thread:
    def read() -> None:
        for line in pipe:
            into.append(line)

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    return thread


def worker_env(base: dict[str, str], **overrides: Any) -> dict[str, str]:
    """The environment for a worker process: ours plus fast test defaults plus overrides."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("AWS_", "WORKER_", "CSV_", "SIDECAR_", "REFRESH_"))
    }
    env.update(base)
    env.setdefault("SPOT_IMDS", "off")
    env.setdefault("WORKER_WAIT_SECONDS", "1")
    env.setdefault("WORKER_IDLE_EXIT_SECONDS", "1")
    env.setdefault("PYTHONPATH", str(PROJECT_ROOT))
    env.update({k: str(v) for k, v in overrides.items()})
    return env
