"""Records longer than the windows the framer reads: a wide header is read whole, and input
that arrives in chunks behind one long record is searched once, not once per chunk."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest

from worker.csvconv import exact, framing
from worker.csvconv.options import CsvOptions, header_keys
from worker.csvconv.stream import convert_chunks
from worker.csvconv.values import inferred

COLUMNS = 12_000


def wide_csv(rows: int = 3) -> bytes:
    """A header of about 100 KB (12,000 names) and rows of numbers and text."""
    header = ",".join(f"column_{n:05d}" for n in range(COLUMNS))
    lines = [header]
    for r in range(rows):
        lines.append(",".join(str(r * COLUMNS + n) if n % 2 else f"t{n}" for n in range(COLUMNS)))
    return ("\n".join(lines) + "\n").encode()


def chunks(data: bytes, size: int) -> Iterator[bytes]:
    for at in range(0, len(data), size):
        yield data[at : at + size]


def convert(data: bytes, chunk: int, **options: Any) -> list[dict[str, Any]]:
    output = b"".join(convert_chunks(chunks(data, chunk), CsvOptions(**options)))
    return [json.loads(line) for line in output.splitlines() if line]


def reference(data: bytes, typed: bool) -> list[dict[str, Any]]:
    rows = list(csv.reader(io.StringIO(data.decode(), newline="")))
    keys = header_keys(rows[0])
    value = (lambda text: json.loads(inferred(text))) if typed else str
    return [{k: value(v) for k, v in zip(keys, row, strict=True)} for row in rows[1:]]


@pytest.mark.parametrize("typed", [False, True], ids=["exact", "typed"])
@pytest.mark.parametrize("chunk", [1 << 20, 16 * 1024], ids=["whole", "in-16k-chunks"])
def test_a_100_kb_header_of_12000_columns_converts_every_column(typed: bool, chunk: int) -> None:
    data = wide_csv()
    assert len(data.split(b"\n", 1)[0]) > 100_000
    records = convert(data, chunk, infer_types=typed)
    assert len(records) == 3
    assert all(len(record) == COLUMNS for record in records)
    assert records == reference(data, typed)


@pytest.mark.parametrize("ragged", ["pad", "truncate"])
def test_a_wide_header_is_never_cut_into_a_narrower_one_under_lenient_ragged_modes(
    ragged: str,
) -> None:
    records = convert(wide_csv(rows=1), 16 * 1024, ragged=ragged)
    assert list(records[0]) == [f"column_{n:05d}" for n in range(COLUMNS)]
    assert records[0]["column_11999"] == "11999"


def test_a_header_record_cut_by_the_window_is_incomplete_until_its_line_break() -> None:
    text = "a,b,c"
    assert exact.read_records(text, ",", first_line=1, final=False, limit=1).rows == []
    assert exact.read_records(text + "\n", ",", first_line=1, final=False).rows == [
        (1, ["a", "b", "c"])
    ]
    assert exact.read_records(text, ",", first_line=1, final=True).rows == [(1, ["a", "b", "c"])]


class Scanned:
    """Counts the bytes the framer searches for line breaks and the characters it parses
    while looking for the header."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.searched = 0
        self.parsed = 0
        line_end, records = framing._last_line_end, framing.exact.read_records

        def counting_line_end(buf: bytearray, limit: int, *start: int) -> int:
            self.searched += max(0, limit - (start[0] if start else 0))
            return line_end(buf, limit, *start)

        def counting_records(text: str, *args: Any, **kwargs: Any) -> exact.Records:
            self.parsed += len(text)
            return records(text, *args, **kwargs)

        monkeypatch.setattr(framing, "_last_line_end", counting_line_end)
        monkeypatch.setattr(framing.exact, "read_records", counting_records)


def test_a_long_record_without_a_line_break_is_searched_once_not_once_per_chunk(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scanned = Scanned(monkeypatch)
    size = 24 << 20
    data = b"id,text\n1," + b"x" * size + b"\n2,y\n"
    records = convert(data, 256 * 1024, max_record_bytes=32 << 20)  # above the 16 MB default
    assert [r["id"] for r in records] == ["1", "2"]
    # Linear: every byte is searched a bounded number of times (a search per chunk over the
    # whole record, as before, would be about size x chunks / 2 = 1,200 x size).
    assert scanned.searched <= 4 * len(data)


def test_a_long_header_is_parsed_in_a_linear_number_of_characters(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scanned = Scanned(monkeypatch)
    header = ",".join(f"h{n}" for n in range(600_000))  # about 4.6 MB
    data = (header + "\n" + ",".join("1" for _ in range(600_000)) + "\n").encode()
    records = convert(data, 64 * 1024, max_columns=600_000)  # above the default 100,000
    assert len(records) == 1 and len(records[0]) == 600_000
    assert scanned.parsed <= 4 * len(data)
