"""What fuzzing the converter found, kept as regression tests (scripts/fuzz.py; each test
names the finding's property and what was wrong)."""

from __future__ import annotations

import pytest

from worker.csvconv.exact import BadCsv
from worker.csvconv.options import CsvOptions
from worker.csvconv.stream import convert_bytes

BLOCKS = [pytest.param(1 << 24, id="one-frame"), pytest.param(16, id="16-byte-frames")]


def reason(data: bytes, block_bytes: int, **options: object) -> str:
    with pytest.raises(BadCsv) as caught:
        convert_bytes(data, CsvOptions(**options), block_bytes=block_bytes)  # type: ignore[arg-type]
    return str(caught.value)


@pytest.mark.parametrize("block_bytes", BLOCKS)
@pytest.mark.parametrize(
    "later",
    [b"x,\xff\n", b"x,\x00\n", b"," * 20 + b"\n"],
    ids=["invalid-utf8", "nul", "wide-record"],
)
def test_framing_a_ragged_row_before_a_later_error_reports_the_ragged_row(
    block_bytes: int, later: bytes
) -> None:
    """Property `framing`: one frame validated its bytes (UTF-8, NUL, field counts) before
    parsing, so it named a later line than small frames did."""
    data = b"h\nok\na,b\n" + b"fine\n" * 3 + later
    assert reason(data, block_bytes, max_columns=10) == (
        "line 3: 2 fields where the header has 1 (CSV_RAGGED=error)"
    )


@pytest.mark.parametrize("block_bytes", BLOCKS)
def test_framing_a_later_error_alone_is_still_reported_at_its_line(block_bytes: int) -> None:
    data = b"h\nok\n" + b"fine\n" * 3 + b"x\xff\n"
    assert reason(data, block_bytes) == (
        "line 6: bytes b'\\xff' are not valid utf-8 (set CSV_ENCODING for other encodings)"
    )
