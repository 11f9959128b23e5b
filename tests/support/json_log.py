"""What the worker logs, read back: for any child process whose stdout is JSON log lines."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from typing import Any, ClassVar


class JsonLogLines:
    """Mixin: `lines` (stdout, collected by the `_reader` thread) as events to wait for."""

    what: ClassVar[str] = "process"  # how failure messages name it
    lines: list[str]
    process: subprocess.Popen[str]
    _reader: threading.Thread

    def stderr(self) -> str:
        raise NotImplementedError

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
            found = self._first(name, match)
            if found is not None:
                return found
            if self.process.poll() is not None:
                self._reader.join(2)  # the last lines may still be on their way
                found = self._first(name, match)
                if found is not None:
                    return found
                raise AssertionError(
                    f"{self.what} exited ({self.process.returncode}) before {name}: {self.stderr()}"
                )
            time.sleep(0.05)
        raise AssertionError(f"no {name} {match} within {timeout}s")

    def _first(self, name: str, match: dict[str, Any]) -> dict[str, Any] | None:
        for event in self.events(name):
            if all(event.get(k) == v for k, v in match.items()):
                return event
        return None
