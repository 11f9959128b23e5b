"""Frame conversion in worker processes; frames and results cross in shared memory.

One process per CPU converts frames while the caller frames and does I/O. Each process
owns an input and an output shared-memory slot and is fed by one thread of the caller,
so a frame costs two memory copies and two small pipe messages, not a pickled payload.
A process that dies fails its frame with RetryableError and is replaced.
"""

from __future__ import annotations

import contextlib
import ctypes
import multiprocessing
import os
import queue
import threading
from concurrent.futures import Future
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from multiprocessing.shared_memory import SharedMemory
from typing import Any

from worker.csvconv.blocks import Converted, Frame, convert_frame
from worker.csvconv.exact import BadCsv
from worker.csvconv.framing import BLOCK_BYTES
from worker.csvconv.options import Layout
from worker.errors import RetryableError

_OUTPUT_FACTOR = 4  # output slot size per input byte; larger results travel over the pipe


def default_processes() -> int:
    """One process per CPU this process may run on (on 2 CPUs, 2 converters beat 1 when the
    machine is otherwise idle: 167 against 126 MB/s measured by bench/csv.py)."""
    return max(1, len(os.sched_getaffinity(0)))


class FramePool:
    """`submit(layout, frame)` returns a Future of the frame's Converted rows."""

    def __init__(self, processes: int, *, slot_bytes: int = 2 * BLOCK_BYTES) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._slot = slot_bytes
        self._tasks: queue.SimpleQueue[tuple[Layout, Frame, Future[Converted]] | None] = (
            queue.SimpleQueue()
        )
        self._threads = [
            threading.Thread(target=self._feed, name=f"csv-feed-{i}", daemon=True)
            for i in range(processes)
        ]
        self._closed = False
        for thread in self._threads:
            thread.start()

    @property
    def processes(self) -> int:
        return len(self._threads)

    def submit(self, layout: Layout, frame: Frame) -> Future[Converted]:
        if self._closed:
            raise RuntimeError("the frame pool is closed")
        future: Future[Converted] = Future()
        self._tasks.put((layout, frame, future))
        return future

    def close(self) -> None:
        """Stop the processes (after the frames already submitted) and free the memory."""
        if self._closed:
            return
        self._closed = True
        for _ in self._threads:
            self._tasks.put(None)
        for thread in self._threads:
            thread.join()

    def _feed(self) -> None:
        worker: _Worker | None = None
        try:
            while (task := self._tasks.get()) is not None:
                layout, frame, future = task
                if not future.set_running_or_notify_cancel():
                    continue
                if worker is None:
                    worker = _Worker(self._context, self._slot)
                try:
                    future.set_result(worker.convert(layout, frame))
                except BadCsv as exc:
                    future.set_exception(exc)
                except (EOFError, OSError, BrokenPipeError) as exc:
                    worker.stop()
                    worker = None
                    future.set_exception(RetryableError(f"csv worker process died: {exc!r}"))
                except BaseException as exc:  # a bug in conversion: fail this frame only
                    future.set_exception(exc)
        finally:
            if worker is not None:
                worker.stop()


class _Worker:
    """One process with its two shared-memory slots, driven by one feeding thread."""

    def __init__(self, context: Any, slot: int) -> None:
        self._in = SharedMemory(create=True, size=slot)
        self._out = SharedMemory(create=True, size=slot * _OUTPUT_FACTOR)
        self._conn, child = context.Pipe()
        self._process: BaseProcess = context.Process(
            target=_serve,
            args=(child, self._in.name, self._out.name),
            name="spotdrain-csv",
            daemon=True,
        )
        self._process.start()
        child.close()

    def convert(self, layout: Layout, frame: Frame) -> Converted:
        size = len(frame.data)
        meta = (frame.first_line, frame.exact, frame.encoding)
        if size <= self._in.size:
            _view(self._in)[:size] = frame.data
            self._conn.send((layout, meta, size))
        else:
            self._conn.send((layout, meta, frame.data))
        status, payload, rows = self._conn.recv()
        if status == "bad":
            raise BadCsv(payload)
        if status == "crash":
            raise RuntimeError(f"csv conversion failed: {payload}")
        if isinstance(payload, int):
            return Converted(bytes(_view(self._out)[:payload]), rows)
        return Converted(payload, rows)

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._conn.close()
        self._process.join(5)
        if self._process.is_alive():
            self._process.kill()
            self._process.join()
        for memory in (self._in, self._out):
            memory.close()
            with contextlib.suppress(FileNotFoundError):
                memory.unlink()


def _view(memory: SharedMemory) -> memoryview:
    view = memory.buf
    assert view is not None, "shared memory already closed"
    return view


def return_large_buffers() -> None:
    """Make glibc give every buffer of 1 MiB or more back to the system when it is freed.

    Without this its adaptive threshold soon serves multi-megabyte frames, outputs and
    parts from the heap, which fragments and keeps growing (240 MB of RSS measured for a
    512 MiB conversion, against the 256 MB the worker is allowed).
    """
    _mallopt((-3, 1 << 20))  # M_MMAP_THRESHOLD, fixed: no adaptive raising


def _mallopt(*settings: tuple[int, int]) -> None:
    try:
        libc = ctypes.CDLL(None)
        for option, value in settings:
            libc.mallopt(option, value)
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass


def keep_heap() -> None:
    """Let glibc keep freed memory for reuse instead of unmapping it after every frame.

    The conversion allocates megabyte arrays per frame; by default each one is a fresh
    mmap whose page faults cost about a third of the conversion time (measured here).
    """
    _mallopt(
        (-3, 32 << 20),  # M_MMAP_THRESHOLD: the largest value glibc accepts
        (-1, 128 << 20),  # M_TRIM_THRESHOLD
        (-2, 16 << 20),  # M_TOP_PAD
    )


def _serve(conn: Connection, in_name: str, out_name: str) -> None:
    """The worker process: convert frames until the pipe closes."""
    keep_heap()
    slot_in, slot_out = SharedMemory(name=in_name), SharedMemory(name=out_name)
    try:
        while True:
            try:
                layout, (first_line, exact, encoding), data = conn.recv()
            except EOFError:
                return
            if isinstance(data, int):
                data = bytes(_view(slot_in)[:data])
            try:
                converted = convert_frame(layout, Frame(data, first_line, exact, encoding))
            except BadCsv as exc:
                conn.send(("bad", str(exc), 0))
                continue
            except Exception as exc:
                conn.send(("crash", repr(exc), 0))
                continue
            output = converted.output
            if len(output) <= slot_out.size:
                _view(slot_out)[: len(output)] = output
                conn.send(("ok", len(output), converted.rows))
            else:
                conn.send(("ok", output, converted.rows))
    finally:
        slot_in.close()
        slot_out.close()
