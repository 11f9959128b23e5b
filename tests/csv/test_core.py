"""The pure conversion core: exact against Python's csv module, and every documented rule."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from worker.csvconv import blocks
from worker.csvconv.exact import BadCsv
from worker.csvconv.options import CsvOptions, header_keys, sniff_delimiter
from worker.csvconv.stream import convert_bytes
from worker.csvconv.values import inferred


@pytest.fixture(params=["c", "csv-module"], autouse=True)
def fast_path(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Every test runs with the C converter, and without it (an install with no compiler:
    the csv module converts every frame)."""
    if request.param == "c" and blocks._fastcsv is None:
        pytest.skip("the C converter is not built (no compiler at install)")
    monkeypatch.setattr(blocks, "ACCELERATED", request.param == "c")
    return str(request.param)


def records(output: bytes) -> list[dict[str, Any]]:
    return [json.loads(line) for line in output.decode("utf-8").split("\n") if line]


def reference(
    data: bytes, *, delimiter: str = ",", encoding: str = "utf-8-sig"
) -> list[dict[str, str]]:
    """What Python's csv module reads from the same bytes (blank lines skipped, as DictReader)."""
    text = io.TextIOWrapper(io.BytesIO(data), encoding=encoding, newline="")
    rows = [row for row in csv.reader(text, delimiter=delimiter) if row]
    keys = header_keys(rows[0])
    return [dict(zip(keys, row, strict=True)) for row in rows[1:]]


def convert(data: bytes, **options: Any) -> list[dict[str, Any]]:
    block = options.pop("block_bytes", 1 << 21)
    return records(convert_bytes(data, CsvOptions(**options), block_bytes=block))


# -- exactness -------------------------------------------------------------------------------

FIELD_TEXT = st.text(
    alphabet=st.sampled_from(list('ab01-.,;"\n\r\t\\ éü東\x01TRUEfalse')), max_size=8
)


def csv_field(text: str, quote_all: bool, width: int) -> str:
    """RFC 4180 quoting: needed for a delimiter, quote, CR or LF (and for the one empty field
    of a 1-column row, which would be a blank line); optional otherwise."""
    if quote_all or any(c in text for c in ',"\r\n') or (text == "" and width == 1):
        return '"' + text.replace('"', '""') + '"'
    return text


@st.composite
def csv_documents(draw: st.DrawFn) -> tuple[bytes, int]:
    """A well-formed CSV with a header h0..hN, and the frame size to convert it with."""
    width = draw(st.integers(1, 5))
    rows = draw(
        st.lists(st.lists(FIELD_TEXT, min_size=width, max_size=width), min_size=1, max_size=30)
    )
    newline = draw(st.sampled_from(["\n", "\r\n"]))
    quote_all = draw(st.booleans())
    lines = [",".join(f"h{i}" for i in range(width))]
    lines += [",".join(csv_field(v, quote_all, width) for v in row) for row in rows]
    text = newline.join(lines) + (newline if draw(st.booleans()) else "")
    block = draw(st.sampled_from([8, 64, 1 << 20]))
    return text.encode("utf-8"), block


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(csv_documents())
def test_every_value_is_exactly_what_the_csv_module_reads(document: tuple[bytes, int]) -> None:
    data, block = document
    assert convert(data, block_bytes=block) == reference(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.text(alphabet=st.sampled_from(list('a1,"\n\r é')), min_size=1, max_size=80),
    st.sampled_from([4, 16, 1 << 20]),
)
def test_any_text_converts_as_the_csv_module_reads_it_or_fails_as_ragged(
    text: str, block: int
) -> None:
    data = ("a,b\n" + text).encode()
    try:
        expected: Any = reference(data)
    except ValueError:  # zip(strict=True): a row whose width differs from the header
        expected = "ragged"
    try:
        got: Any = convert(data, block_bytes=block)
    except BadCsv as exc:
        assert "fields where the header has" in str(exc)
        got = "ragged"
    assert got == expected


@settings(max_examples=200, deadline=None)
@given(csv_documents())
def test_inferred_values_follow_the_rules_applied_to_the_csv_modules_values(
    document: tuple[bytes, int],
) -> None:
    data, block = document
    expected = [{k: json.loads(inferred(v)) for k, v in row.items()} for row in reference(data)]
    assert convert(data, infer_types=True, block_bytes=block) == expected


def test_a_wide_table_beyond_the_fast_paths_markers_converts_exactly() -> None:
    header = ",".join(f"c{i}" for i in range(60))
    row = ",".join(f'"v,{i}"' if i % 7 == 0 else str(i) for i in range(60))
    data = f"{header}\n{row}\n{row}\n".encode()
    assert convert(data) == reference(data)


# -- the rules, one by one ---------------------------------------------------------------------

def test_a_utf8_bom_never_reaches_the_first_key() -> None:
    assert convert("\ufeffid,name\n1,a\n".encode()) == [{"id": "1", "name": "a"}]


def test_crlf_and_lf_line_ends_give_the_same_records() -> None:
    assert convert(b"a,b\r\n1,2\r\n3,4\r\n") == convert(b"a,b\n1,2\n3,4\n")


def test_quoted_commas_quotes_and_line_breaks_keep_their_exact_text() -> None:
    data = b'a,b\n"x, y","say ""hi""\r\nnext"\n'
    assert convert(data) == [{"a": "x, y", "b": 'say "hi"\r\nnext'}]


def test_unicode_empty_fields_and_leading_zeros_stay_exact_strings() -> None:
    data = "id,city,note\n007,Zürich,\n".encode()
    assert convert(data) == [{"id": "007", "city": "Zürich", "note": ""}]


def test_a_one_column_file_converts() -> None:
    assert convert(b"only\nx\ny\n") == [{"only": "x"}, {"only": "y"}]


def test_a_header_only_file_gives_an_empty_output() -> None:
    assert convert_bytes(b"a,b\n", CsvOptions()) == b""
    assert convert_bytes(b"a,b\n", CsvOptions(output_format="json")) == b"[]\n"


def test_an_empty_object_gives_an_empty_output() -> None:
    assert convert_bytes(b"", CsvOptions()) == b""


def test_json_format_writes_one_array() -> None:
    output = convert_bytes(b"a\n1\n2\n", CsvOptions(output_format="json"))
    assert json.loads(output) == [{"a": "1"}, {"a": "2"}]


def test_blank_lines_are_skipped() -> None:
    assert convert(b"a,b\n\n1,2\n\r\n3,4\n\n") == [{"a": "1", "b": "2"}, {"a": "3", "b": "4"}]


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("0", 0), ("42", 42), ("-17", -17), ("3.5", 3.5), ("-0.25", -0.25),
        ("true", True), ("FALSE", False), ("True", True), ("", None),
        ("007", "007"), ("1e5", "1e5"), ("NaN", "NaN"), ("Infinity", "Infinity"),
        ("1_000", "1_000"), (" 42", " 42"), ("+1", "+1"), ("-0", "-0"), ("1.", "1."),
        (".5", ".5"), ("00.5", "00.5"), ("2024-01-02", "2024-01-02"), ("yes", "yes"),
    ],
)
def test_inference_changes_only_canonical_numbers_booleans_and_empty(text: str, value: Any) -> None:
    data = f'v,w\n"{text}",x\n'.encode()
    assert convert(data, infer_types=True) == [{"v": value, "w": "x"}]
    assert json.loads(inferred(text)) == value


def test_ragged_rows_fail_naming_their_line_by_default() -> None:
    with pytest.raises(BadCsv, match=r"line 3: 3 fields where the header has 2"):
        convert(b"a,b\n1,2\n1,2,3\n")


def test_ragged_rows_name_the_physical_line_after_quoted_line_breaks() -> None:
    with pytest.raises(BadCsv, match=r"line 4: 1 fields"):
        convert(b'a,b\n"x\ny",2\n1\n')


def test_pad_fills_missing_fields_with_null_and_still_refuses_extra_ones() -> None:
    assert convert(b"a,b,c\n1\n", ragged="pad") == [{"a": "1", "b": None, "c": None}]
    with pytest.raises(BadCsv, match="line 2"):
        convert(b"a\n1,2\n", ragged="pad")


def test_truncate_drops_extra_fields_and_pads_missing_ones() -> None:
    assert convert(b"a,b\n1,2,3\n4\n", ragged="truncate") == [
        {"a": "1", "b": "2"},
        {"a": "4", "b": None},
    ]


def test_duplicate_and_empty_header_names_get_deterministic_keys() -> None:
    keys = header_keys(["a", "a", "", "a_2", "column_3"])
    assert keys == ("a", "a_3", "column_3_2", "a_2", "column_3")
    assert convert(b"x,x,\n1,2,3\n") == [{"x": "1", "x_2": "2", "column_3": "3"}]


def test_latin1_converts_with_its_encoding_set() -> None:
    data = "name\nJosé\n".encode("latin-1")
    assert convert(data, encoding="latin-1") == [{"name": "José"}]


def test_bytes_invalid_in_the_encoding_fail_naming_the_line() -> None:
    with pytest.raises(BadCsv, match=r"line 3: bytes b'\\xe9' are not valid utf-8"):
        convert("name\nok\nJosé\n".encode("latin-1"))


def test_a_binary_file_is_refused() -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x00\x10"
    with pytest.raises(BadCsv, match="line 1"):
        convert(png)


def test_a_nul_character_marks_a_binary_file_even_when_the_bytes_decode() -> None:
    with pytest.raises(BadCsv, match="line 2: a NUL character"):
        convert(b"a,b\n1,\x00\n", encoding="latin-1")


def test_control_characters_and_backslashes_are_escaped_as_json_dumps_does() -> None:
    data = b'a,b\n"t\tab\\x",\x01\x1f\n'
    output = convert_bytes(data, CsvOptions())
    row = json.loads(output)
    assert row == {"a": "t\tab\\x", "b": "\x01\x1f"}
    assert output == json.dumps(row, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


@pytest.mark.parametrize("delimiter", [";", "\t", "|"])
def test_the_delimiter_is_sniffed_when_asked(delimiter: str) -> None:
    data = f"a{delimiter}b{delimiter}c\n1,5{delimiter}2{delimiter}3\n".encode()
    assert sniff_delimiter(data.decode()) == delimiter
    assert convert(data, delimiter="auto") == [{"a": "1,5", "b": "2", "c": "3"}]


def test_a_fixed_delimiter_is_used_as_given() -> None:
    assert convert(b"a;b\n1;2\n", delimiter=";") == [{"a": "1", "b": "2"}]


def test_a_record_split_across_many_frames_is_read_whole() -> None:
    data = b'a,b\n1,"' + b"x\n" * 50 + b'"\n2,3\n'
    assert convert(data, block_bytes=8) == reference(data)


def test_a_stray_quote_is_read_as_the_csv_module_reads_it() -> None:
    data = b'a,b\nx"y,"z\nw"\n1,2\n'
    assert convert(data, block_bytes=8) == reference(data)


def test_utf16_with_its_bom_converts_with_its_encoding_set() -> None:
    data = "id,név\r\n1,Ünal\r\n".encode("utf-16")
    assert convert(data, encoding="utf-16") == [{"id": "1", "név": "Ünal"}]


def test_undecodable_bytes_of_a_configured_encoding_fail_naming_the_line() -> None:
    data = "a\nok\n".encode("utf-16-le") + b"\x00\xd8\x41\x00"  # a lone surrogate
    with pytest.raises(BadCsv, match=r"line 3: bytes .* are not valid utf-16-le"):
        convert(data, encoding="utf-16-le")


def test_json_format_spanning_many_frames_is_one_valid_array() -> None:
    data = b"a,b\n" + b"".join(b'%d,"x\ny"\n' % i for i in range(500))
    output = convert_bytes(data, CsvOptions(output_format="json"), block_bytes=64)
    assert json.loads(output) == [{"a": str(i), "b": "x\ny"} for i in range(500)]


UTF8_LIKE = st.text(max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass"))


@pytest.mark.skipif(blocks._fastcsv is None, reason="the C converter is not built")
@settings(max_examples=2000, deadline=None)
@given(st.binary(max_size=24) | UTF8_LIKE)
def test_the_c_utf8_check_finds_what_pythons_decoder_refuses(data: bytes) -> None:
    assert blocks._fastcsv is not None
    try:
        data.decode("utf-8")
        expected = -1
    except UnicodeDecodeError as exc:
        expected = exc.start
    assert blocks._fastcsv.utf8_error(data) == expected
