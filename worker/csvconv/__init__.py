"""Streaming CSV to JSON conversion: a pure core that the csv job drives (no I/O in here).

Pieces, in the order data flows through them:
    options.py   what a conversion is asked to do; header key naming; delimiter sniffing
    framing.py   bytes in -> header + frames that start and end on record boundaries
    blocks.py    one frame -> JSON rows: the fast path, else the exact csv-module path
    _fastcsv.c   the fast path in one C pass (an optional extension, built at install; the
                 image always has it, and without it the csv module converts every frame)
    exact.py     the reference conversion through Python's csv module
    values.py    the lossless type-inference rules
    stream.py    ordering of frames and outputs; a synchronous driver for files
    pool.py      frame conversion in worker processes over shared memory

The rules it keeps (what users see):
- Values are the exact text the csv module reads (RFC 4180 quoting, embedded line breaks
  kept as written, CRLF or LF or CR record ends); JSON strings are escaped as json.dumps
  with ensure_ascii=False escapes them.
- Keys: the header row; a UTF-8 BOM is dropped before it is read; an empty name becomes
  column_<position>; a repeated name gets _2, _3, ... (skipping names the header has).
- Blank lines are skipped (as csv.DictReader does), before the header too. A header-only
  or empty input converts to no rows (ndjson: an empty output; json: []).
- A row whose field count differs from the header's: an error naming its line
  (CSV_RAGGED=error); pad: missing values become null, extra ones are still an error;
  truncate: extra values are dropped and missing ones become null.
- Typed values (CSV_INFER_TYPES=true): values.py. "-0" stays a string.
- Bytes the encoding cannot decode, and any NUL character (a binary file), are errors
  naming the line. Lines are physical lines, 1-based, the header being line 1.
"""
