"""The reference conversion: records read by Python's csv module, rendered one by one.

It handles every frame the fast path declines (malformed quoting, ragged rows, blank lines,
control characters, very wide tables) and defines what the fast path must reproduce.
"""

from __future__ import annotations

import csv
import io
import sys
from collections.abc import Iterator
from dataclasses import dataclass

from worker.csvconv.options import Layout
from worker.csvconv.values import inferred, json_string
from worker.errors import PermanentError

# The framer bounds every record (CsvOptions.max_record_bytes) before the csv module sees it.
csv.field_size_limit(sys.maxsize)


class BadCsv(PermanentError):
    """The input cannot be converted; the message names the line."""


@dataclass
class Records:
    """Complete records of a text: (line where each starts, fields), and how far they reach."""

    rows: list[tuple[int, list[str]]]
    chars: int  # characters of the text the complete records (and blank lines) cover
    lines: int  # physical lines they cover


class _Lines:
    """Lines as a file opened with newline='' yields them, counted as the reader takes them."""

    def __init__(self, text: str) -> None:
        self._lines = iter(io.StringIO(text, newline=""))
        self.count = 0
        self.chars = 0
        self.exhausted = False

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            line = next(self._lines)
        except StopIteration:
            self.exhausted = True
            raise
        self.count += 1
        self.chars += len(line)
        return line


def read_records(
    text: str, delimiter: str, *, first_line: int, final: bool, limit: int | None = None
) -> Records:
    """Parse `text` (which starts on a record boundary) as the csv module does.

    Unless `final`, a last record that the text cuts short (inside quotes, or with no line
    break after it) is left out, so the caller can retry it with more data. Blank lines
    (records with no field) are skipped. `limit` stops after that many records.
    """
    lines = _Lines(text)
    reader = csv.reader(lines, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    rows: list[tuple[int, list[str]]] = []
    while limit is None or len(rows) < limit:
        start_line, start_chars = lines.count, lines.chars
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as exc:
            raise BadCsv(f"line {first_line + start_line}: {exc}") from None
        if not final and (lines.exhausted or _open_ended(text, lines.chars)):
            return Records(rows, start_chars, start_line)
        if row:
            rows.append((first_line + start_line, row))
    return Records(rows, lines.chars, lines.count)


def _open_ended(text: str, chars: int) -> bool:
    """The record just read reaches the end of `text` with no line break after it: more input
    may continue it (a header longer than the window read so far, say)."""
    return chars == len(text) and not text.endswith(("\n", "\r"))


def check_text(text: str, first_line: int) -> None:
    """Refuse NUL characters: they mark a binary file, never a text CSV."""
    position = text.find("\0")
    if position >= 0:
        raise nul_error(text[:position], first_line)


def nul_error(before: str, first_line: int) -> BadCsv:
    """The error of a NUL character that follows the text `before`."""
    line = first_line + count_lines(before)
    return BadCsv(f"line {line}: a NUL character; this is not a text CSV file")


def count_lines(text: str) -> int:
    """Line breaks in `text` as universal newlines count them (CRLF, LF, CR)."""
    return text.count("\n") + text.count("\r") - text.count("\r\n")


def render_rows(layout: Layout, rows: list[tuple[int, list[str]]]) -> tuple[bytes, int]:
    """JSON objects for parsed rows, joined by the layout's row separator; and their count."""
    width = len(layout.keys)
    prefixes = [json_string(key) + ":" for key in layout.keys]
    value = inferred if layout.typed else json_string
    rendered: list[str] = []
    for line, fields in rows:
        values: list[str | None] = list(fields)
        if len(fields) != width:
            values = _fit(layout, line, fields, width)
        rendered.append(
            "{"
            + ",".join(
                p + ("null" if v is None else value(v))
                for p, v in zip(prefixes, values, strict=True)
            )
            + "}"
        )
    separator = layout.row_separator.decode()
    return separator.join(rendered).encode("utf-8"), len(rendered)


def _fit(layout: Layout, line: int, fields: list[str], width: int) -> list[str | None]:
    short = len(fields) < width
    if (short and layout.ragged in ("pad", "truncate")) or (
        not short and layout.ragged == "truncate"
    ):
        return [*fields[:width], *([None] * (width - len(fields)))]
    raise BadCsv(
        f"line {line}: {len(fields)} fields where the header has {width} "
        f"(CSV_RAGGED={layout.ragged})"
    )
