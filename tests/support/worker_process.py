"""Run `python -m worker` as a real process and read its JSON log lines."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass
class WorkerProcess:
    """A worker child process whose stdout (JSON lines) is collected as it runs."""

    env: dict[str, str]
    args: list[str] = field(default_factory=list)
    process: subprocess.Popen[str] = field(init=False)
    lines: list[str] = field(default_factory=list, init=False)
    _reader: threading.Thread = field(init=False)

    def __post_init__(self) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "worker", *self.args],
            cwd=PROJECT_ROOT,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    @property
    def pid(self) -> int:
        return self.process.pid

    def logs(self) -> list[dict[str, Any]]:
        events = []
        for line in list(self.lines):
            try:
                events.append(json.loads(line))
            except ValueError:
                events.append({"event": "unparsed", "line": line})
        return events

    def events(self, name: str) -> list[dict[str, Any]]:
        return [e for e in self.logs() if e.get("event") == name]

    def wait_for(self, name: str, *, timeout: float = 30, **match: Any) -> dict[str, Any]:
        """Wait until a log event named `name` (with the given fields) appears."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for event in self.events(name):
                if all(event.get(k) == v for k, v in match.items()):
                    return event
            if self.process.poll() is not None:
                self._reader.join(2)
                for event in self.events(name):
                    if all(event.get(k) == v for k, v in match.items()):
                        return event
                raise AssertionError(f"worker exited ({self.process.returncode}) before {name}: {self.stderr()}")
            time.sleep(0.05)
        raise AssertionError(f"no {name} {match} within {timeout}s")

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = 60) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise AssertionError(f"worker did not exit within {timeout}s") from None
        self._reader.join(5)
        return code

    def stderr(self) -> str:
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        return self.process.stderr.read()

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


def worker_env(base: dict[str, str], **overrides: Any) -> dict[str, str]:
    """The environment for a worker process: ours plus fast test defaults plus overrides."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "WORKER_", "CSV_", "SIDECAR_", "REFRESH_"))}
    env.update(base)
    env.setdefault("SPOT_IMDS", "off")
    env.setdefault("WORKER_WAIT_SECONDS", "1")
    env.setdefault("WORKER_IDLE_EXIT_SECONDS", "1")
    env.setdefault("PYTHONPATH", str(PROJECT_ROOT))
    env.update({k: str(v) for k, v in overrides.items()})
    return env
