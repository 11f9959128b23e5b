"""Bytes in, frames out: decoding, BOM, delimiter sniffing, the header, record-aligned cuts.

Every frame starts and ends on a record boundary, so frames convert independently (and in
parallel). Cuts come from the quotes: a line break is a record boundary when the quoting
before it is well formed and closed; when it is not, the csv module finds the boundary.
"""

from __future__ import annotations

import codecs

from worker.csvconv import blocks, exact
from worker.csvconv.blocks import Frame
from worker.csvconv.exact import BadCsv
from worker.csvconv.options import CsvOptions, Layout, header_keys, sniff_delimiter

BLOCK_BYTES = 1024 * 1024
SNIFF_BYTES = 64 * 1024
_BOM = codecs.BOM_UTF8


class Framer:
    """Accumulates input and hands out frames; `layout` is known once the header was read."""

    def __init__(self, options: CsvOptions, *, block_bytes: int = BLOCK_BYTES) -> None:
        self._options = options
        self._block = block_bytes
        self._decoder = None if options.utf8 else codecs.getincrementaldecoder(options.encoding)()
        self._decoded_lines = 0
        self._buf = bytearray()
        self._line = 1  # the physical line where the buffer starts
        # Input that arrives in chunks behind one long record is searched once, not once per
        # chunk: how many leading bytes of the buffer hold no line break, and the header
        # window to try first.
        self._no_break = 0
        self._header_window = SNIFF_BYTES
        self._started = False
        self._ended = False
        self.layout: Layout | None = None
        self.empty = False  # the input held no header at all
        # Cheap cuts (a quote count) until a frame proves its quoting malformed; then every
        # cut checks the quoting first.
        self.careful = False

    def feed(self, data: bytes) -> list[Frame]:
        self._append(data, final=False)
        return self._frames(final=False)

    def finish(self) -> list[Frame]:
        self._append(b"", final=True)
        self._ended = True
        return self._frames(final=True)

    def rewind(self, frames: list[Frame]) -> list[Frame]:
        """Take back frames handed out (in order, from the one that asked to be reframed) and
        cut again, carefully from now on."""
        self.careful = True
        data = b"".join(f.data[:-1] if f.padded else f.data for f in frames)
        self._buf[0:0] = data
        self._no_break = 0
        self._line = frames[0].first_line
        return self._frames(final=self._ended)

    # -- input -----------------------------------------------------------------------------

    def _append(self, data: bytes, *, final: bool) -> None:
        if self._decoder is None:
            self._buf += data
            if not self._started and (len(self._buf) >= len(_BOM) or final):
                if self._buf.startswith(_BOM):
                    del self._buf[: len(_BOM)]
                self._started = True
            return
        pending = self._decoder.getstate()[0]
        try:
            text = self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            seen = (pending + data)[: exc.start].decode(self._options.encoding, "replace")
            line = 1 + self._decoded_lines + exact.count_lines(seen)
            raise BadCsv(
                f"line {line}: bytes {exc.object[exc.start : exc.end]!r} are not valid "
                f"{self._options.encoding}"
            ) from None
        if not self._started and text:
            text = text.removeprefix("\ufeff")
            self._started = True
        self._decoded_lines += exact.count_lines(text)
        self._buf += text.encode("utf-8")

    # -- header ----------------------------------------------------------------------------

    def _frames(self, *, final: bool) -> list[Frame]:
        frames: list[Frame] = []
        if self.layout is None and not self.empty and not self._read_header(final=final):
            return frames
        if self.empty:
            self._buf.clear()
            return frames
        while (frame := self._next_frame(final=final)) is not None:
            frames.append(frame)
        return frames

    def _read_header(self, *, final: bool) -> bool:
        """Sniff and read the header once enough input is there; False while it is not."""
        limit = self._options.max_record_bytes
        while True:
            window = self._header_window
            if len(self._buf) < window and not final:
                return False
            whole = len(self._buf) <= window
            # No line break yet: no header can be complete, so none is parsed (a header
            # with no end would otherwise be parsed again at every doubling).
            if not (final and whole) and _last_line_end(self._buf, window) == 0:
                records = None
            else:
                # Bad bytes or a NUL after the header are the body's to report, in order.
                text, undecodable = self._text(bytes(self._buf[:window]), final=final and whole)
                delimiter = self._options.delimiter
                if delimiter == "auto":
                    delimiter = sniff_delimiter(text[:SNIFF_BYTES])
                complete = final and whole and undecodable is None
                records = exact.read_records(
                    text, delimiter, first_line=self._line, final=complete, limit=1
                )
                exact.check_text(text[: records.chars] if records.rows else text, self._line)
                if records.rows:
                    break
                if undecodable is not None:
                    raise undecodable
                if whole and final:
                    self.empty = True
                    return True
            if window >= limit:
                raise BadCsv(
                    f"line {self._line}: the header is longer than {_mb(limit)}"
                    " (CSV_MAX_RECORD_MB)"
                )
            self._header_window = min(window * 2, limit)
        columns = len(records.rows[0][1])
        if columns > self._options.max_columns:
            raise BadCsv(
                f"line {self._line}: the header has {columns} columns, more than"
                f" CSV_MAX_COLUMNS ({self._options.max_columns})"
            )
        del self._buf[: len(text[: records.chars].encode("utf-8"))]
        self._line += records.lines
        self.layout = Layout(
            keys=header_keys(records.rows[0][1]),
            delimiter=delimiter,
            typed=self._options.infer_types,
            ragged=self._options.ragged,
            row_separator=b"\n" if self._options.output_format == "ndjson" else b",\n",
            max_fields=self._options.max_columns,
        )
        return True

    def _text(self, data: bytes, *, final: bool) -> tuple[str, BadCsv | None]:
        """Decode a window of the buffer: the text up to any bad bytes, and their error. A
        character cut at the window's end waits for the next window."""
        try:
            return data.decode("utf-8"), None
        except UnicodeDecodeError as exc:
            text = data[: exc.start].decode("utf-8")
            if not final and exc.reason == "unexpected end of data":
                return text, None
            line = self._line + exact.count_lines(text)
            return text, BadCsv(
                f"line {line}: bytes {data[exc.start : exc.end]!r} are not valid "
                f"{self._options.encoding} (set CSV_ENCODING for other encodings)"
            )

    # -- body ------------------------------------------------------------------------------

    def _next_frame(self, *, final: bool) -> Frame | None:
        assert self.layout is not None
        size = len(self._buf)
        if size == 0 or (size < self._block and not final):
            return None
        window = min(size, self._block)
        while True:
            cut, is_exact = self._cut(window, final=final)
            if cut > 0:
                break
            if window < size:
                window = min(size, window * 2)
                continue
            if size > self._options.max_record_bytes:
                raise BadCsv(
                    f"line {self._line}: a record longer than"
                    f" {_mb(self._options.max_record_bytes)} (CSV_MAX_RECORD_MB; an unbalanced"
                    " quote, or no line breaks?)"
                )
            return None
        data = bytes(self._buf[:cut])
        del self._buf[:cut]
        self._no_break = 0
        first_line = self._line
        self._line += blocks.count_lines(data)
        final = final and not self._buf
        padded = not is_exact and not data.endswith((b"\n", b"\r"))
        if padded:
            data += b"\n"
        return Frame(data, first_line, is_exact, self._options.encoding, final, padded)

    def _cut(self, window: int, *, final: bool) -> tuple[int, bool]:
        """Where a frame within the first `window` bytes can end (0: nowhere yet), and whether
        it needs the exact path."""
        assert self.layout is not None
        at_end = final and window == len(self._buf)
        cut = window if at_end else _last_line_end(self._buf, window, self._no_break)
        if cut == 0:
            # No line break before window - 1 (a CR there may be half of a CRLF): the next
            # search starts there.
            self._no_break = max(self._no_break, window - 1)
            return 0, False
        if not (self.careful or at_end) and self._buf.count(b'"', 0, cut) % 2 == 0:
            return cut, False  # converting the frame checks its quoting; see Reframe
        data = bytes(self._buf[:cut])
        verdict = blocks.quote_check(data, self.layout.delimiter)
        if verdict == blocks.OK:
            return cut, False
        if verdict >= 0:
            earlier = _boundary_before(self._buf, verdict)
            if earlier > 0:
                return earlier, False
            if not at_end:
                return 0, False
        # Malformed quoting, or a quote left open at the end: let the csv module decide.
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            return cut, True  # the conversion reports the bad bytes and their line
        records = exact.read_records(
            text, self.layout.delimiter, first_line=self._line, final=at_end
        )
        return len(text[: records.chars].encode("utf-8")), True


def _last_line_end(buf: bytearray, limit: int, start: int = 0) -> int:
    """Just after the last line break in buf[start:limit] (0 if none); a CR that may be the
    first half of a CRLF split by the limit does not count."""
    if limit <= start:
        return 0
    lf = buf.rfind(b"\n", start, limit)
    cr = buf.rfind(b"\r", start, limit - 1)
    return max(lf, cr) + 1


def _boundary_before(buf: bytearray, limit: int) -> int:
    """The last line end before `limit` that lies outside quotes (all closed before it)."""
    while (end := _last_line_end(buf, limit)) > 0:
        if buf.count(b'"', 0, end) % 2 == 0:
            return end
        limit = end - 1
    return 0


def _mb(size: int) -> str:
    return f"{size / 2**20:g} MB"


