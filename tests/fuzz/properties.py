"""What the C converter must do on any input, as Hypothesis properties (scripts/fuzz.py runs
them for a time budget under AddressSanitizer and UBSan; tests/csv/test_fuzz.py runs a seeded
slice of them).

Each property feeds the extension random or structured bytes (quotes, CR/LF mixes, NUL,
invalid UTF-8, huge fields, many columns) and compares what it says with Python's own answer:
- `convert` declines a frame or renders exactly what the csv module path renders;
- `check` finds the same quoting verdict as a plain reading of RFC 4180;
- `wide_record` finds the first record wider than a limit where the csv module does;
- `utf8_error` finds the first byte Python's strict decoder rejects;
- a whole document converts to the same bytes (or the same error) however it is framed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from worker.csvconv import blocks, exact
from worker.csvconv.options import CsvOptions, Layout
from worker.csvconv.stream import convert_bytes

SETTINGS = settings(
    database=None,
    deadline=None,
    suppress_health_check=list(HealthCheck),
    max_examples=200,
)

DELIMITERS = (",", ";", "\t", "|")
# Bytes that steer a CSV parser, and some that break UTF-8 or JSON.
SPECIAL = [b'"', b'""', b",", b";", b"\t", b"|", b"\n", b"\r", b"\r\n", b"\x00", b"\\", b"\x1f"]
INVALID_UTF8 = [b"\xff", b"\xc0\x80", b"\xed\xa0\x80", b"\xe2\x82", b"\xf4\x90\x80\x80", b"\x80"]
VALUES = [b"", b"0", b"-0", b"007", b"42", b"-1.5", b"1e5", b"true", b"FALSE", b"NaN", b" 1"]


@st.composite
def _field(draw: st.DrawFn, *, huge: bool) -> bytes:
    kinds = ["value", "text", "special", "invalid"] + (["huge"] if huge else [])
    kind = draw(st.sampled_from(kinds))
    if kind == "value":
        return draw(st.sampled_from(VALUES))
    if kind == "text":
        return draw(st.text(max_size=12)).encode("utf-8")
    if kind == "special":
        return b"".join(draw(st.lists(st.sampled_from(SPECIAL), max_size=4)))
    if kind == "huge":
        return draw(st.sampled_from([b"x", b'"', b"\xc3\xa9", b"\n"])) * draw(
            st.integers(1000, 70_000)
        )
    return draw(st.sampled_from(INVALID_UTF8))


@st.composite
def _record(draw: st.DrawFn, width: int, delimiter: bytes) -> bytes:
    count = width if draw(st.integers(0, 9)) else draw(st.integers(0, width + 2))
    drawn = []
    for _ in range(min(count, 6)):  # a wide record repeats a few drawn fields (cheap to draw)
        value = draw(_field(huge=width <= 8))  # huge fields in narrow tables only
        if draw(st.booleans()):  # quoted as RFC 4180 says, or (sometimes) not quite
            value = b'"' + value.replace(b'"', b'""' if draw(st.integers(0, 7)) else b'"') + b'"'
        drawn.append(value)
    fields = [drawn[i % len(drawn)] for i in range(count)] if drawn else []
    return delimiter.join(fields) + draw(st.sampled_from([b"\n", b"\n", b"\r\n", b"\r", b""]))


@st.composite
def documents(draw: st.DrawFn) -> tuple[bytes, str]:
    """A CSV document (header and records) with its delimiter; sometimes with damage."""
    delimiter = draw(st.sampled_from(DELIMITERS))
    width = draw(st.one_of(st.integers(1, 8), st.sampled_from([200, 3000])))
    header = delimiter.join(f"c{i}" for i in range(width)).encode() + b"\n"
    records = draw(st.lists(_record(width, delimiter.encode()), max_size=12))
    data = header + b"".join(records)
    if data and draw(st.integers(0, 3)) == 0:  # damage: a few bytes spliced in anywhere
        for _ in range(draw(st.integers(1, 3))):
            at = draw(st.integers(0, len(data)))
            data = data[:at] + draw(st.sampled_from(SPECIAL + INVALID_UTF8)) + data[at:]
    return data, delimiter


def inputs() -> st.SearchStrategy[tuple[bytes, str]]:
    """Structured documents, and raw random bytes with a delimiter."""
    raw = st.tuples(st.binary(max_size=2048), st.sampled_from(DELIMITERS))
    return st.one_of(documents(), raw)


def _fastcsv() -> Any:
    assert blocks._fastcsv is not None, "the C converter is not built"
    return blocks._fastcsv


def _layout(width: int, delimiter: str, typed: bool) -> Layout:
    return Layout(
        keys=tuple(f"k{i}" for i in range(width)),
        delimiter=delimiter,
        typed=typed,
        ragged="error",
        row_separator=b"\n",
    )


def _width(data: bytes, delimiter: str) -> int:
    first = data.split(b"\n", 1)[0]
    return max(1, first.count(delimiter.encode()) + 1)


def convert_matches_the_csv_module(data: bytes, delimiter: str, typed: bool) -> None:
    layout = _layout(_width(data, delimiter), delimiter, typed)
    keys = tuple(layout.key_json(i) for i in range(len(layout.keys)))
    result = _fastcsv().convert(data, ord(delimiter), keys, b"\n", typed)  # any bytes: no crash
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return  # production converts validated UTF-8 only: nothing to compare
    if result is None:
        return  # declined: the exact path takes the frame
    assert data == b"" or data.endswith((b"\n", b"\r"))
    assert "\x00" not in text
    records = exact.read_records(text, delimiter, first_line=1, final=True)
    assert records.chars == len(text)
    assert result == exact.render_rows(layout, records.rows)


def check_matches_rfc_4180(data: bytes, delimiter: str) -> None:
    assert _fastcsv().check(data, ord(delimiter)) == blocks.quoting_verdict(
        data, delimiter.encode()
    )


def wide_record_counts_fields_as_the_csv_module(data: bytes, delimiter: str, limit: int) -> None:
    """On well-formed quoting, the guard finds a record wider than `limit` exactly when the
    csv module reads one, and points at where that record starts; on any input, no crash."""
    found = _fastcsv().wide_record(data, ord(delimiter), limit)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return
    if _fastcsv().check(data, ord(delimiter)) != -1 or "\x00" in text:
        return  # malformed quoting: the guard counts leniently, only memory is at stake
    records = exact.read_records(text, delimiter, first_line=1, final=True)
    wide = [line for line, fields in records.rows if len(fields) > limit]
    if not wide:
        assert found == -1
        return
    assert found >= 0
    assert 1 + blocks.count_lines(data[:found]) == wide[0]


def utf8_error_matches_python(data: bytes) -> None:
    try:
        data.decode("utf-8")
        expected = -1
    except UnicodeDecodeError as exc:
        expected = exc.start
    assert _fastcsv().utf8_error(data) == expected


def framing_never_changes_the_document(data: bytes, delimiter: str, typed: bool) -> None:
    """Small frames (the C converter sees many cut points) give what one frame gives."""
    options = CsvOptions(delimiter=delimiter, infer_types=typed, ragged="pad")
    whole, small = _outcome(data, options, 1 << 24), _outcome(data, options, 256)
    assert small == whole


def _outcome(data: bytes, options: CsvOptions, block_bytes: int) -> tuple[str, bytes | str]:
    try:
        return "ok", convert_bytes(data, options, block_bytes=block_bytes)
    except exact.BadCsv as exc:
        return "bad", str(exc)


Property = Callable[..., None]
# name -> (property, the strategies of its arguments)
PROPERTIES: dict[str, tuple[Property, tuple[st.SearchStrategy[Any], ...]]] = {
    "convert": (convert_matches_the_csv_module, (inputs(), st.booleans())),
    "check": (check_matches_rfc_4180, (inputs(),)),
    "wide": (wide_record_counts_fields_as_the_csv_module, (inputs(), st.integers(0, 12))),
    "utf8": (utf8_error_matches_python, (st.one_of(documents().map(lambda d: d[0]), st.binary()),)),
    "framing": (framing_never_changes_the_document, (documents(), st.booleans())),
}


def flat(function: Property, arguments: tuple[Any, ...]) -> None:
    """Call a property with its drawn arguments, unpacking (data, delimiter) pairs."""
    values: list[Any] = []
    for argument in arguments:
        values.extend(argument if isinstance(argument, tuple) else (argument,))
    function(*values)


def describe(data: Any) -> str:
    """A short, reproducible description of a drawn input for a report."""
    return json.dumps(repr(data)[:400])
