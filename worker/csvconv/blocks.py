"""Convert one frame to JSON rows: validate the text, try the fast path, else the exact one."""

from __future__ import annotations

from dataclasses import dataclass

from worker.csvconv import exact, fastpath
from worker.csvconv.exact import BadCsv
from worker.csvconv.options import Layout


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
    Reframe when the framer's cheap cut turned out to split a record."""
    try:
        text = frame.data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = frame.first_line + exact.count_lines(
            frame.data[: exc.start].decode("utf-8", "replace")
        )
        bad = frame.data[exc.start : exc.end]
        raise BadCsv(
            f"line {line}: bytes {bad!r} are not valid {frame.encoding} "
            "(set CSV_ENCODING for other encodings)"
        ) from None
    if not frame.exact and frame.data.endswith((b"\n", b"\r")):
        fast = fastpath.convert(layout, frame.data)
        if fast is not None:
            return Converted(fast[0], fast[1])
    exact.check_text(text, frame.first_line)
    final = frame.final or frame.exact
    records = exact.read_records(text, layout.delimiter, first_line=frame.first_line, final=final)
    if records.chars < len(text):
        raise Reframe()
    output, rows = exact.render_rows(layout, records.rows)
    return Converted(output, rows)
