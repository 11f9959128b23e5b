"""Order converted frames into one JSON document, and drive a whole conversion synchronously."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future

from worker.csvconv.blocks import Converted, Frame, Reframe, convert_frame
from worker.csvconv.framing import BLOCK_BYTES, Framer
from worker.csvconv.options import CsvOptions, Layout

Submit = Callable[[Layout, Frame], "Future[Converted]"]


def run_here(layout: Layout, frame: Frame) -> Future[Converted]:
    """Convert a frame in this process (a Future that is already done)."""
    future: Future[Converted] = Future()
    try:
        future.set_result(convert_frame(layout, frame))
    except Exception as exc:
        future.set_exception(exc)
    return future


class Conversion:
    """One conversion's sequential state: framing, frames in flight in order, punctuation."""

    def __init__(
        self,
        options: CsvOptions,
        *,
        submit: Submit = run_here,
        window: int = 4,
        block_bytes: int = BLOCK_BYTES,
    ) -> None:
        self._framer = Framer(options, block_bytes=block_bytes)
        self._submit = submit
        self._window = window
        self._ndjson = options.output_format == "ndjson"
        self._inflight: deque[tuple[Frame, Future[Converted]]] = deque()
        self.rows = 0

    @property
    def columns(self) -> int:
        layout = self._framer.layout
        return 0 if layout is None else len(layout.keys)

    def feed(self, data: bytes) -> None:
        self._start(self._framer.feed(data))

    def finish(self) -> None:
        self._start(self._framer.finish())

    @property
    def full(self) -> bool:
        """Enough frames are in flight: settle the oldest before feeding more."""
        return len(self._inflight) >= self._window

    @property
    def oldest(self) -> Future[Converted] | None:
        """The future to wait for before `settle`; None when nothing is in flight."""
        return self._inflight[0][1] if self._inflight else None

    def settle(self) -> list[bytes]:
        """Output pieces of the oldest frame, whose future is done (frames settle in order)."""
        frame, future = self._inflight.popleft()
        try:
            converted = future.result()
        except Reframe:
            later = [frame, *(f for f, _ in self._inflight)]
            for _, pending in self._inflight:
                pending.cancel()
            self._inflight.clear()
            self._start(self._framer.rewind(later))
            return []
        if not converted.rows:
            return []
        self.rows += converted.rows
        if self._ndjson:
            return [converted.output, b"\n"]
        return [b",\n" if self.rows > converted.rows else b"[\n", converted.output]

    def closing(self) -> bytes:
        """What ends the document once every frame has settled."""
        if self._ndjson:
            return b""
        return b"\n]\n" if self.rows else b"[]\n"

    def _start(self, frames: list[Frame]) -> None:
        layout = self._framer.layout
        for frame in frames:
            assert layout is not None
            self._inflight.append((frame, self._submit(layout, frame)))


def convert_chunks(
    chunks: Iterable[bytes],
    options: CsvOptions,
    *,
    submit: Submit = run_here,
    window: int = 4,
    block_bytes: int = BLOCK_BYTES,
) -> Iterator[bytes]:
    """Convert a CSV given as byte chunks; yield the JSON document in pieces (blocking)."""
    conversion = Conversion(options, submit=submit, window=window, block_bytes=block_bytes)
    for chunk in chunks:
        conversion.feed(chunk)
        while conversion.full:
            yield from conversion.settle()
    conversion.finish()
    while conversion.oldest is not None:
        yield from conversion.settle()
    yield conversion.closing()


def convert_bytes(data: bytes, options: CsvOptions, *, block_bytes: int = BLOCK_BYTES) -> bytes:
    """The whole JSON document for a CSV held in memory (tests, small objects)."""
    return b"".join(convert_chunks([data], options, block_bytes=block_bytes))
