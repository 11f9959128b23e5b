"""Sidecar writes through libnfs from user space: a few threads, each owning one mounted context.

No kernel mount and no privilege, which is what Fargate allows. A context is opened on a
thread's first job and reused for every later one; a connection failure closes it, and that
thread's next job mounts afresh (so a restarted server is picked up). The calls go through
ctypes, which releases the GIL, so the event loop never waits behind an NFS round trip.
"""

from __future__ import annotations

import asyncio
import os
import stat
import threading
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import structlog

from worker.adapters import libnfs
from worker.adapters.files import FileFacts, Placement, Render, is_connection_error, write_beside
from worker.errors import ConfigError, RetryableError

log = structlog.get_logger("worker.nfs")

# O_SYNC makes libnfs send every WRITE as FILE_SYNC: the server answers only once the bytes
# are on stable storage, so no COMMIT round trip is needed before the rename.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_SYNC
CREATE_MODE = 0o644


class NfsOps:
    """The FileOps of files.py on one libnfs context; paths are relative to the export."""

    def __init__(self, context: libnfs.NfsContext) -> None:
        self._nfs = context

    @staticmethod
    def _path(path: str) -> bytes:
        return ("/" + path).encode()

    def stat(self, path: str) -> FileFacts:
        st = self._nfs.stat(self._path(path))
        return FileFacts(
            size=st.size,
            mtime_ns=st.mtime_ns,
            ctime_ns=st.ctime_ns,
            is_directory=stat.S_ISDIR(st.mode),
        )

    def create_exclusive(self, path: str) -> int:
        return self._nfs.create(self._path(path), CREATE_FLAGS, CREATE_MODE)

    def write_all(self, handle: int, data: bytes) -> None:
        self._nfs.write_all(handle, data)

    def flush(self, handle: int) -> None:
        """Nothing to do: every WRITE was FILE_SYNC (see CREATE_FLAGS)."""

    def close(self, handle: int) -> None:
        self._nfs.close_file(handle)

    def rename(self, old: str, new: str) -> None:
        self._nfs.rename(self._path(old), self._path(new))

    def unlink(self, path: str) -> None:
        self._nfs.unlink(self._path(path))


class NfsStore:
    """The SidecarStore on an NFS export; `close()` waits for running calls, then unmounts."""

    def __init__(self, url: str, *, connections: int, timeout_ms: int) -> None:
        try:
            problem = libnfs.check_url(url)
        except libnfs.NfsUnavailable as exc:
            raise ConfigError("SIDECAR_NFS_URL", f"cannot be used: {exc}") from None
        if problem is not None:
            raise ConfigError("SIDECAR_NFS_URL", f"is not a valid libnfs URL: {problem}")
        self._url = url
        self._label = url.split("?", 1)[0]
        self.identity = identity_of(url)
        self._timeout_ms = timeout_ms
        self._executor = ThreadPoolExecutor(max_workers=connections, thread_name_prefix="nfs")
        self._local = threading.local()
        self._lock = threading.Lock()
        self._contexts: set[libnfs.NfsContext] = set()

    async def write_beside(self, place: Placement, render: Render) -> FileFacts:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write_beside, place, render)

    def _write_beside(self, place: Placement, render: Render) -> FileFacts:
        context = self._context()
        try:
            return write_beside(NfsOps(context), place, render, identity=self.identity)
        except RetryableError as exc:
            cause = exc.__cause__
            if isinstance(cause, OSError) and is_connection_error(cause):
                self._drop(context)
            raise

    def _context(self) -> libnfs.NfsContext:
        context: libnfs.NfsContext | None = getattr(self._local, "context", None)
        if context is not None:
            return context
        try:
            context = libnfs.NfsContext(self._url, timeout_ms=self._timeout_ms)
        except libnfs.NfsError as exc:
            raise RetryableError(f"cannot mount {self._label}: {exc.strerror}") from exc
        with self._lock:
            self._contexts.add(context)
        self._local.context = context
        log.debug("nfs.mounted", export=self._label, thread=threading.current_thread().name)
        return context

    def _drop(self, context: libnfs.NfsContext) -> None:
        """Forget a context whose connection failed; this thread mounts anew next time."""
        self._local.context = None
        with self._lock:
            self._contexts.discard(context)
        context.close()
        log.info("nfs.connection_dropped", export=self._label)

    async def close(self) -> None:
        """Let running calls end (each is bounded by the timeout), then close every context."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        with self._lock:
            contexts, self._contexts = list(self._contexts), set()
        for context in contexts:
            context.close()


def identity_of(url: str) -> str:
    """The uid and gid libnfs presents for `url` (its `uid=`/`gid=` options, else ours)."""
    query = parse_qs(urlsplit(url).query)
    uid = query.get("uid", [str(os.getuid())])[-1]
    gid = query.get("gid", [str(os.getgid())])[-1]
    return f"uid={uid} gid={gid}"
