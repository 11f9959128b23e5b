"""What people and scripts read: aligned tables, one JSON document, durations, a progress bar."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import Any, TextIO

Cell = str | int | None
GAP = "  "


def table(rows: Sequence[Sequence[Cell]], headers: Sequence[str] | None = None) -> list[str]:
    """Rows as aligned lines: numbers right-aligned (and the headers of their columns), text
    left-aligned; columns two spaces apart."""
    columns = max([len(headers or ()), *(len(row) for row in rows)])
    numeric = [any(i < len(r) and isinstance(r[i], int) for r in rows) for i in range(columns)]
    cells: list[list[tuple[str, bool]]] = []
    if headers:
        cells.append([(h, numeric[i]) for i, h in enumerate(headers)])
    for row in rows:
        cells.append([("" if c is None else str(c), isinstance(c, int)) for c in row])
    widths = [max(len(line[i][0]) for line in cells if i < len(line)) for i in range(columns)]
    return [
        GAP.join(
            text.rjust(widths[i]) if right else text.ljust(widths[i])
            for i, (text, right) in enumerate(line)
        ).rstrip()
        for line in cells
    ]


def document(value: Any) -> str:
    """One JSON document, keys in the order the code wrote them."""
    return json.dumps(value, indent=2, ensure_ascii=False)


def duration(seconds: float | None) -> str:
    """`45 s`, `12 min 5 s`, `3 h 20 min`, `2 d 4 h`; None is `unknown`."""
    if seconds is None:
        return "unknown"
    whole = int(seconds)
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {minutes} min"
    if minutes:
        return f"{minutes} min {secs} s"
    return f"{secs} s"


def clip(text: str, limit: int) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 3] + "..."


class Progress:
    """A one-line `\\r` bar on a terminal, for more than a screenful of work; silent otherwise."""

    SCREENFUL = 20
    WIDTH = 30

    def __init__(self, stream: TextIO, total: int, label: str) -> None:
        self._stream = stream
        self._total = max(total, 0)
        self._label = label
        self._shown = False
        self._last = 0.0
        self.active = self._total > self.SCREENFUL and isatty(stream)

    def update(self, done: int, note: str = "") -> None:
        now = time.monotonic()
        if not self.active or (now - self._last < 0.1 and done < self._total):
            return
        self._last = now
        total = max(self._total, done)
        filled = self.WIDTH * done // total if total else self.WIDTH
        bar = "#" * filled + "." * (self.WIDTH - filled)
        self._stream.write(f"\r{self._label} [{bar}] {done}/{total} {note}".rstrip())
        self._stream.flush()
        self._shown = True

    def close(self) -> None:
        if self._shown:
            self._stream.write("\n")
            self._stream.flush()


def isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # a closed or odd stream is no terminal
        return False
