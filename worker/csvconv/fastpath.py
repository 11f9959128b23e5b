"""The vectorised frame converter: numpy finds the structure, bytes.replace writes the JSON.

A frame's structural separators are overwritten in place by one marker byte per column;
each marker is then replaced by that column's pre-encoded JSON text (one C-level pass per
column), so no Python object is ever made per field. Marker bytes come from values that
cannot occur in the frame (control bytes it lacks, bytes never valid in UTF-8). Quoted
content is handled by placeholders, and anything unusual (a stray quote, a ragged row, a
blank line, a NUL) makes `convert` return None so the exact path takes the frame.
"""

from __future__ import annotations

import functools
import json

import numpy as np
import numpy.typing as npt

from worker.csvconv.options import Layout

U8 = npt.NDArray[np.uint8]
Ints = npt.NDArray[np.intp]

LF, CR, TAB, QUOTE, BACKSLASH = 10, 13, 9, 34, 92
# Bytes that never occur in valid UTF-8, then control bytes (usable when a frame lacks them).
_FREE = [0xC0, 0xC1, *range(0xF5, 0x100)] + [b for b in range(1, 32) if b not in (TAB, LF, CR)]
_ESCAPES = {b: json.dumps(chr(b))[1:-1].encode() for b in range(32)}
_MAX_FIELD = 1 << 20  # longer fields go the exact way (inference counts fit comfortably)


@functools.lru_cache(maxsize=64)
def _texts(layout: Layout) -> tuple[list[bytes], list[bytes]]:
    """Per column: the JSON text that replaces the separator after it (string and typed form)."""
    keys = [layout.key_json(i) for i in range(len(layout.keys))]
    string = [b'",' + k + b':"' for k in keys[1:]]
    string.append(b'"}' + layout.row_separator + b'{' + keys[0] + b':"')
    typed = [b"," + k + b":" for k in keys[1:]]
    typed.append(b"}" + layout.row_separator + b"{" + keys[0] + b":")
    return string, typed


def convert(layout: Layout, block: bytes) -> tuple[bytes, int] | None:
    """JSON rows for a frame that ends with a line break, or None when the exact path must go."""
    width = len(layout.keys)
    source = np.frombuffer(block, dtype=np.uint8)
    if source.size == 0:
        return b"", 0
    delimiter = ord(layout.delimiter)
    controls = source < 32
    is_tab = source == TAB
    expected = np.count_nonzero(source == LF) + np.count_nonzero(source == CR)
    expected += np.count_nonzero(is_tab)
    present: set[int] = set()
    if np.count_nonzero(controls) != expected:
        present = {int(b) for b in np.unique(source[controls])} - {TAB, LF, CR}
        if 0 in present:
            return None  # NUL: the exact path reports it
    free = [b for b in _FREE if b not in present]
    extra = 7 if layout.typed else 5
    if width + extra > len(free):
        return None  # too wide for the marker alphabet
    deleted, escaped_quote, newline, carriage, inner_delimiter = free[:5]
    null_marker = free[5] if layout.typed else deleted
    markers = np.array(free[extra : extra + width], dtype=np.uint8)

    arr = source.copy()
    quotes = np.flatnonzero(source == QUOTE)
    if quotes.size:
        if not _mark_quotes(arr, quotes, delimiter, deleted, escaped_quote):
            return None
        opens, closes = quotes[0::2], quotes[1::2]
        inner = _ranges(opens + 1, closes)
        if inner.size:
            values = arr[inner]
            for byte, placeholder in ((delimiter, inner_delimiter), (LF, newline), (CR, carriage)):
                hits = inner[values == byte]
                if hits.size:
                    arr[hits] = placeholder
    separators = np.flatnonzero((arr == delimiter) | (arr == LF) | (arr == CR))
    if separators.size == 0 or separators[-1] != arr.size - 1:
        return None
    kinds = arr[separators]
    crs = separators[kinds == CR]
    before_lf = crs[crs + 1 < arr.size]
    before_lf = before_lf[arr[before_lf + 1] == LF]
    if before_lf.size:  # CRLF: the CR goes, the LF ends the record
        arr[before_lf] = deleted
        keep = np.ones(separators.size, dtype=bool)
        keep[np.searchsorted(separators, before_lf)] = False
        separators = separators[keep]
        kinds = arr[separators]
    fields = separators.size
    rows = fields // width
    if fields != rows * width or not np.all(kinds[width - 1 :: width] != delimiter):
        return None
    if width > 1 and np.count_nonzero(kinds != delimiter) != rows:
        return None
    starts = np.empty(fields, dtype=np.intp)
    starts[0] = 0
    starts[1:] = separators[:-1] + 1
    ends = separators.copy()
    if before_lf.size:
        ends[np.searchsorted(separators, before_lf + 1)] -= 1
    if width == 1 and np.any(ends == starts):
        return None  # a blank line: the csv module yields no record for it
    if np.any(ends - starts > _MAX_FIELD):
        return None

    string_texts, typed_texts = _texts(layout)
    if layout.typed:
        out, first = _typed(arr, source, starts, ends, separators, markers, free)
        texts, closing = typed_texts, b"}"
        prefix = b"{" + layout.key_json(0) + b":" + first
    else:
        arr[separators] = np.tile(markers, rows)
        out, texts, closing = bytes(arr), string_texts, b'"}'
        prefix = b"{" + layout.key_json(0) + b':"'

    out = out.translate(None, bytes([deleted]))
    if BACKSLASH in block:
        out = out.replace(b"\\", b"\\\\")
    for byte in sorted(present):
        out = out.replace(bytes([byte]), _ESCAPES[byte])
    if delimiter != TAB and np.any(is_tab):
        out = out.replace(b"\t", b"\\t")
    for placeholder, text in (
        (escaped_quote, b'\\"'),
        (newline, b"\\n"),
        (carriage, b"\\r"),
        (inner_delimiter, _ESCAPES.get(delimiter, bytes([delimiter]))),
        (null_marker, b"null"),
    ):
        if placeholder != deleted and placeholder in out:
            out = out.replace(bytes([placeholder]), text)
    for marker, text in zip(markers.tolist(), texts, strict=True):
        out = out.replace(bytes([marker]), text)
    return prefix + out[: -len(texts[-1])] + closing, rows


OK, MALFORMED = -1, -2  # as blocks.OK and blocks.MALFORMED


def quote_check(data: bytes, delimiter: str) -> int:
    """OK when every quote is RFC 4180 quoting, MALFORMED when one is not, or else the offset
    where the field still open at the end of `data` starts (its record is incomplete)."""
    arr = np.frombuffer(data, dtype=np.uint8)
    quotes = np.flatnonzero(arr == QUOTE)
    if quotes.size == 0:
        return OK
    pending = -1
    if quotes.size % 2:
        pending, quotes = int(quotes[-1]), quotes[:-1]
    opens, closes = quotes[0::2], quotes[1::2]
    if quotes.size and not _pairs_ok(arr, opens, closes, ord(delimiter), pending):
        return MALFORMED
    if pending < 0:
        return OK
    if closes.size and closes[-1] == pending - 1:  # a doubled quote inside the open field
        k = opens.size - 1
        while k > 0 and opens[k] == closes[k - 1] + 1:
            k -= 1
        return int(opens[k])
    if pending == 0 or _is_separator(arr[pending - 1 : pending], ord(delimiter))[0]:
        return pending
    return MALFORMED


def _pairs_ok(arr: U8, opens: Ints, closes: Ints, delimiter: int, pending: int = -1) -> bool:
    size = arr.size
    before = arr[np.maximum(opens - 1, 0)]
    after = arr[np.minimum(closes + 1, size - 1)]
    doubled = _doubled(opens, closes)
    open_ok = (opens == 0) | _is_separator(before, delimiter)
    open_ok[1:] |= doubled[:-1]
    close_ok = (closes == size - 1) | _is_separator(after, delimiter) | doubled
    if pending >= 0:
        close_ok[-1] |= closes[-1] + 1 == pending
    return bool(np.all(open_ok) and np.all(close_ok))


def _doubled(opens: Ints, closes: Ints) -> npt.NDArray[np.bool_]:
    """Per pair: whether the next pair opens right after it closes (a doubled quote)."""
    doubled = np.zeros(opens.size, dtype=bool)
    doubled[:-1] = closes[:-1] + 1 == opens[1:]
    return doubled


def _mark_quotes(arr: U8, quotes: Ints, delimiter: int, deleted: int, escaped: int) -> bool:
    """Check RFC 4180 quoting; delete the enclosing quotes, turn each doubled one into a mark."""
    if quotes.size % 2:
        return False
    opens, closes = quotes[0::2], quotes[1::2]
    if not _pairs_ok(arr, opens, closes, delimiter):
        return False
    arr[quotes] = deleted
    arr[closes[np.flatnonzero(_doubled(opens, closes))]] = escaped
    return True


def _is_separator(values: U8, delimiter: int) -> npt.NDArray[np.bool_]:
    return (values == delimiter) | (values == LF) | (values == CR)  # type: ignore[no-any-return]


def _ranges(starts: Ints, stops: Ints) -> Ints:
    """All indices of the half-open ranges [start, stop), concatenated."""
    lengths = stops - starts
    total = int(lengths.sum())
    if total == 0:
        return np.empty(0, dtype=np.intp)
    offsets = np.cumsum(lengths) - lengths
    return np.arange(total, dtype=np.intp) + np.repeat(starts - offsets, lengths)  # type: ignore[no-any-return]


def _typed(
    arr: U8, source: U8, starts: Ints, ends: Ints, separators: Ints, markers: U8, free: list[int]
) -> tuple[bytes, bytes]:
    """Classify every field, then widen each separator to three bytes: close, key, open."""
    deleted, null_marker, widen = free[0], free[5], free[6]
    quoted = source[starts] == QUOTE
    kind = _classify(arr, starts + quoted, ends - quoted)
    is_bool = kind == _BOOL
    if np.any(is_bool):
        arr[_ranges((starts + quoted)[is_bool], (ends - quoted)[is_bool])] |= 0x20
    fields = separators.size
    arr[separators] = widen
    widened = bytes(arr).replace(bytes([widen]), bytes([widen]) * 3)
    wide = np.frombuffer(bytearray(widened), np.uint8)
    at = separators + 2 * np.arange(fields, dtype=np.intp)
    opening = np.full(fields, deleted, dtype=np.uint8)
    opening[kind == _STRING] = QUOTE
    opening[kind == _NULL] = null_marker
    closing = np.full(fields, deleted, dtype=np.uint8)
    closing[kind == _STRING] = QUOTE
    wide[at] = closing
    wide[at + 1] = np.tile(markers, fields // markers.size)
    wide[at[:-1] + 2] = opening[1:]
    wide[at[-1] + 2] = deleted
    first = {_STRING: b'"', _NULL: b"null"}.get(int(kind[0]), b"")
    return bytes(wide), first


_STRING, _RAW, _NULL, _BOOL = 0, 1, 2, 3


def _classify(arr: U8, c_start: Ints, c_end: Ints) -> npt.NDArray[np.int8]:
    """Per field: string, raw number, null (empty) or boolean, by the rules of values.py."""
    size = arr.size
    fields = c_start.size
    length = c_end - c_start
    # Each reduceat segment runs from a field's content to the next one's: the bytes after
    # the content (closing quote, CR, separator, opening quote) are all non-numeric.
    segment_end = np.empty(fields, dtype=np.intp)
    segment_end[:-1] = c_start[1:]
    segment_end[-1] = size
    not_numeric = ((arr - 45) > 12) | (arr == 47)  # anything but digits, "-" and "."
    other = np.add.reduceat(not_numeric, c_start, dtype=np.int32) - (segment_end - c_end)
    number = (length > 0) & (other == 0)
    for byte in (45, 46):  # "-" only first; at most one "." and only between digits
        at = np.flatnonzero(arr == byte)
        if not at.size:
            continue
        owner = np.searchsorted(c_start, at, side="right") - 1
        if byte == 45:
            wrong = at != c_start[owner]
        else:
            wrong = ~(_digit(arr[at - 1]) & _digit(arr[np.minimum(at + 1, size - 1)]))
            wrong |= np.bincount(owner, minlength=fields)[owner] > 1
        number[owner[wrong]] = False
    candidates = np.flatnonzero(number)
    if candidates.size:
        start, end = c_start[candidates], c_end[candidates]
        negative = arr[start] == 45
        lead = start + negative
        has_lead = (lead < end) & _digit(arr[np.minimum(lead, size - 1)])
        zero = arr[np.minimum(lead, size - 1)] == 48
        only = lead + 1 == end
        zero_ok = ~zero | only | (arr[np.minimum(lead + 1, size - 1)] == 46)
        ok = has_lead & zero_ok & ~(negative & zero & only)  # "-0" stays a string
        number[candidates[~ok]] = False
    kind = np.zeros(fields, dtype=np.int8)
    kind[number] = _RAW
    kind[length == 0] = _NULL
    for word in (b"true", b"false"):
        candidates = np.flatnonzero(length == len(word))
        if candidates.size:
            letters = arr[c_start[candidates][:, None] + np.arange(len(word))] | 0x20
            hits = np.all(letters == np.frombuffer(word, np.uint8), axis=1)
            kind[candidates[hits]] = _BOOL
    return kind


def _digit(values: U8) -> npt.NDArray[np.bool_]:
    digits: npt.NDArray[np.bool_] = (values >= 48) & (values <= 57)
    return digits
