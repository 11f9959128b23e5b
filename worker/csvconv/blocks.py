"""Convert one frame to JSON rows: validate the text, try the fast path, else the exact one."""

from __future__ import annotations

import functools
import importlib
import re
from dataclasses import dataclass
from types import ModuleType

from worker.csvconv import exact
from worker.csvconv.exact import BadCsv
from worker.csvconv.options import Layout

_fastcsv: ModuleType | None
try:
    _fastcsv = importlib.import_module("worker.csvconv._fastcsv")
except ImportError:  # not built (no C compiler at install): the csv module does it all
    _fastcsv = None

# Whether frames go through the C converter; tests turn it off to check the csv-module path.
ACCELERATED = _fastcsv is not None
OK, MALFORMED = -1, -2  # quote_check's verdicts; any other value is an offset
QUOTE = ord('"')


@dataclass(frozen=True)
class Frame:
    """UTF-8 bytes that start on a record boundary and end on one (or at the end of the input)."""

    data: bytes
    first_line: int  # physical line (1-based) where the frame starts
    exact: bool = False  # quoting the fast path cannot take: go straight to the csv module
    encoding: str = "utf-8"  # the input's encoding, for error messages
    final: bool = False  # the input ends with this frame
    padded: bool = False  # the framer added the line break that ends it


class Reframe(Exception):
    """The frame's quoting is malformed and its last record runs past its end: frame again."""


@dataclass(frozen=True)
class Converted:
    output: bytes  # rows joined by the layout's row separator, no leading or trailing one
    rows: int


def convert_frame(layout: Layout, frame: Frame) -> Converted:
    """The JSON rows of one frame; BadCsv (naming the line) when it cannot be converted, or
    Reframe when the framer's cheap cut turned out to split a record.

    A frame holding several errors reports the first in the file, so the reason never
    depends on where frames were cut (bytes are validated, and NUL and wide records found,
    before anything is parsed: each such error checks the records before it).
    """
    try:
        text = _validated(frame.data)
    except UnicodeDecodeError as exc:
        before = frame.data[: exc.start].decode("utf-8")
        line = frame.first_line + exact.count_lines(before)
        bad = frame.data[exc.start : exc.end]
        undecodable = BadCsv(
            f"line {line}: bytes {bad!r} are not valid {frame.encoding} "
            "(set CSV_ENCODING for other encodings)"
        )
        raise _first_error(layout, frame, before, undecodable) from None
    if not frame.exact and frame.data.endswith((b"\n", b"\r")):
        fast = fast_convert(layout, frame.data)
        if fast is not None:
            return Converted(fast[0], fast[1])
    wide = _wide_record(layout, frame)
    if wide is not None:
        at, error = wide
        raise _first_error(layout, frame, frame.data[:at].decode("utf-8"), error)
    if text is None:
        text = frame.data.decode("utf-8")
    if "\0" in text:
        before = text[: text.find("\0")]
        raise _first_error(layout, frame, before, exact.nul_error(before, frame.first_line))
    final = frame.final or frame.exact
    records = exact.read_records(text, layout.delimiter, first_line=frame.first_line, final=final)
    if records.chars < len(text):
        raise Reframe()
    output, rows = exact.render_rows(layout, records.rows)
    return Converted(output, rows)


def _first_error(layout: Layout, frame: Frame, before: str, error: BadCsv) -> BadCsv:
    """`error`, found where the text `before` ends, unless the records before it hold an
    earlier one."""
    if "\0" in before:
        before = before[: before.find("\0")]
        error = exact.nul_error(before, frame.first_line)
    try:
        records = exact.read_records(
            before, layout.delimiter, first_line=frame.first_line, final=False
        )
        exact.render_rows(layout, records.rows)
    except BadCsv as earlier:
        return earlier
    return error


def _wide_record(layout: Layout, frame: Frame) -> tuple[int, BadCsv] | None:
    """Where a record with more fields than CSV_MAX_COLUMNS starts, and its error: found
    before the csv module would hold each field as an object (16 MB of short fields would
    take 300 MB of memory)."""
    if not (ACCELERATED and _fastcsv is not None):
        return None
    limit = max(layout.max_fields, len(layout.keys))
    at: int = _fastcsv.wide_record(frame.data, ord(layout.delimiter), limit)
    if at < 0:
        return None
    line = frame.first_line + count_lines(frame.data[:at])
    return at, BadCsv(f"line {line}: a record with more than {limit} fields (CSV_MAX_COLUMNS)")


def count_lines(data: bytes) -> int:
    """Line breaks in `data` as universal newlines count them (CRLF, LF, CR)."""
    lines = data.count(b"\n")
    if b"\r" in data:
        lines += data.count(b"\r") - data.count(b"\r\n")
    return lines


def fast_convert(layout: Layout, data: bytes) -> tuple[bytes, int] | None:
    """The C converter's JSON rows of a well-formed frame; None when it declines the frame,
    or is not built (then the csv module converts every frame)."""
    if not (ACCELERATED and _fastcsv is not None):
        return None
    result: tuple[bytes, int] | None = _fastcsv.convert(
        data, ord(layout.delimiter), _keys(layout), layout.row_separator, layout.typed
    )
    return result


def quote_check(data: bytes, delimiter: str) -> int:
    """OK, MALFORMED, or where the field left open at the end of `data` starts."""
    if ACCELERATED and _fastcsv is not None:
        verdict: int = _fastcsv.check(data, ord(delimiter))
        return verdict
    return quoting_verdict(data, delimiter.encode())


def quoting_verdict(data: bytes, delimiter: bytes) -> int:
    """The C converter's `check` in Python (where it is not built; the fuzz run compares the
    two): OK when every quote is RFC 4180 quoting, MALFORMED when one is not, or else the
    offset where the quoted field still open at the end of `data` starts."""
    stop = re.compile(b"[" + re.escape(delimiter) + b'\r\n"]')
    i, n = 0, len(data)
    while i < n:
        if data[i] == QUOTE:
            opening, i = i, i + 1
            while True:
                close = data.find(b'"', i)
                if close < 0:
                    return opening
                if data[close + 1 : close + 2] == b'"':
                    i = close + 2
                    continue
                i = close + 1
                if i < n and data[i : i + 1] not in (delimiter, b"\n", b"\r"):
                    return MALFORMED
                break
        else:
            found = stop.search(data, i)
            i = n if found is None else found.start()
            if i < n and data[i] == QUOTE:
                return MALFORMED
        if i < n:
            i += 2 if data[i : i + 2] == b"\r\n" else 1
    return OK


@functools.lru_cache(maxsize=64)
def _keys(layout: Layout) -> tuple[bytes, ...]:
    return tuple(layout.key_json(i) for i in range(len(layout.keys)))


def _validated(data: bytes) -> str | None:
    """Raise UnicodeDecodeError unless `data` is UTF-8; the text when it had to be decoded.

    ASCII needs no check; the C check finds bad bytes without building a str; without
    it, decoding is the check.
    """
    if data.isascii():
        return None
    if ACCELERATED and _fastcsv is not None:
        if _fastcsv.utf8_error(data) < 0:
            return None
        return data.decode("utf-8")  # raises, where Python sees the error
    return data.decode("utf-8")
