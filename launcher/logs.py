"""The launcher's log: one JSON object per line on stdout, through the standard library.

Why not structlog, which the worker uses: the Lambda runtime provides boto3 and nothing else,
so structlog would have to travel inside launcher.zip, pinned apart from the worker's copy,
for the sake of about one line per invocation. `json.dumps` and a `logging.Handler` give the
same canonical line (event name, level, timestamp, fields) with nothing to vendor, and the
zip stays the launcher alone. CloudWatch stores each stdout line as one log event, which
Logs Insights parses as JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from typing import Any

_LOGGER = logging.getLogger("launcher")


class _StdoutLines(logging.Handler):
    """Writes each record's message as one line to the current `sys.stdout`."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            sys.stdout.write(record.getMessage() + "\n")
            sys.stdout.flush()
        except Exception:  # a logging failure must never fail the invocation
            self.handleError(record)


def configure(level: str = "INFO") -> None:
    """Send the launcher's lines to stdout only (not also through the runtime's root handler)."""
    if not any(isinstance(handler, _StdoutLines) for handler in _LOGGER.handlers):
        _LOGGER.addHandler(_StdoutLines())
    _LOGGER.propagate = False
    _LOGGER.setLevel(level)


def log(event: str, level: int = logging.INFO, **fields: Any) -> None:
    """Log one structured line: `{"event": ..., "level": ..., "timestamp": ..., **fields}`."""
    if not _LOGGER.handlers:
        configure()
    line = {
        "event": event,
        "level": logging.getLevelName(level).lower(),
        "timestamp": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
        **fields,
    }
    _LOGGER.log(level, "%s", json.dumps(line, default=str, separators=(",", ":")))
