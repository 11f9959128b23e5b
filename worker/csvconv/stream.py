"""Order converted frames into one JSON document, and drive a whole conversion synchronously."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator

from worker.csvconv.blocks import Converted, Frame, convert_frame
from worker.csvconv.framing import BLOCK_BYTES, Framer
from worker.csvconv.options import CsvOptions, Layout

Runner = Callable[[Layout, Frame], Converted]


class Conversion:
    """One conversion's sequential state: the framer, the row count, the document's punctuation."""

    def __init__(self, options: CsvOptions, *, block_bytes: int = BLOCK_BYTES) -> None:
        self.framer = Framer(options, block_bytes=block_bytes)
        self._ndjson = options.output_format == "ndjson"
        self.rows = 0

    @property
    def layout(self) -> Layout:
        assert self.framer.layout is not None, "no frame before the header"
        return self.framer.layout

    @property
    def columns(self) -> int:
        return 0 if self.framer.layout is None else len(self.framer.layout.keys)

    def feed(self, data: bytes) -> list[Frame]:
        return self.framer.feed(data)

    def finish(self) -> list[Frame]:
        return self.framer.finish()

    def emit(self, converted: Converted) -> bytes:
        """The output bytes for the next frame's rows (frames must be emitted in order)."""
        if not converted.rows:
            return b""
        if self._ndjson:
            piece = converted.output + b"\n"
        else:
            piece = (b",\n" if self.rows else b"[\n") + converted.output
        self.rows += converted.rows
        return piece

    def closing(self) -> bytes:
        """What ends the document once every frame was emitted."""
        if self._ndjson:
            return b""
        return b"\n]\n" if self.rows else b"[]\n"


def convert_chunks(
    chunks: Iterable[bytes],
    options: CsvOptions,
    *,
    block_bytes: int = BLOCK_BYTES,
    runner: Runner = convert_frame,
) -> Iterator[bytes]:
    """Convert a CSV given as byte chunks; yield the JSON document in pieces (in this process)."""
    conversion = Conversion(options, block_bytes=block_bytes)
    for chunk in chunks:
        for frame in conversion.feed(chunk):
            yield conversion.emit(runner(conversion.layout, frame))
    for frame in conversion.finish():
        yield conversion.emit(runner(conversion.layout, frame))
    yield conversion.closing()


def convert_bytes(data: bytes, options: CsvOptions, *, block_bytes: int = BLOCK_BYTES) -> bytes:
    """The whole JSON document for a CSV held in memory (tests, small objects)."""
    return b"".join(convert_chunks([data], options, block_bytes=block_bytes))
