"""Sidecar writes through libnfs from user space: a few threads, each owning one mounted context.

No kernel mount and no privilege, which is what Fargate allows. A context is opened on a
thread's first job and reused for every later one; a connection failure closes it, and that
thread's next job mounts afresh (so a restarted server is picked up). The calls go through
ctypes, which releases the GIL, so the event loop never waits behind an NFS round trip.

Sidecars are written by file handle (nfs3.py: four round trips once the directory's handle
is cached for a few seconds, as kernel NFS clients cache lookups). Symbolic links on a path
are followed only while they stay in the export (beneath.py). Where the export's root cannot
be read (no handle walk from it), libnfs's path calls run instead; they refuse links out of
the export themselves.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import structlog

from worker.adapters import beneath, libnfs
from worker.adapters.files import (
    CONNECTION_ERRNOS,
    FileFacts,
    Placement,
    Render,
    write_beside,
)
from worker.adapters.nfs3 import NF3DIR, NF3LNK, Attributes, Nfs3
from worker.errors import ConfigError, JobError, RetryableError

log = structlog.get_logger("worker.nfs")

# O_SYNC makes libnfs send every WRITE as FILE_SYNC: the server answers only once the bytes
# are on stable storage, so no COMMIT round trip is needed before the rename.
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_SYNC
CREATE_MODE = 0o644
DIRECTORY_TTL_S = 3.0
# What a removed or replaced directory's cached handle can produce.
STALE_ERRNOS = frozenset({errno.ENOENT, errno.ESTALE, errno.ENOTDIR})
# What a directory looked up earlier stands for (only its type is ever read).
DIRECTORY = Attributes(type=NF3DIR, size=0, mtime_ns=0, ctime_ns=0)


class NfsOps:
    """The FileOps of files.py by path on one libnfs context (links are followed only inside
    the export: libnfs answers ENOENT, "Symbolic link points outside export", to the rest)."""

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


class DirectoryHandles:
    """Directory path -> NFS handle, shared by every connection, each kept DIRECTORY_TTL_S."""

    def __init__(self, ttl: float = DIRECTORY_TTL_S) -> None:
        self._ttl = ttl
        self._lock = threading.Lock()
        self._handles: dict[str, tuple[bytes, float]] = {}

    def get(self, path: str) -> bytes | None:
        with self._lock:
            entry = self._handles.get(path)
        return entry[0] if entry is not None and entry[1] > time.monotonic() else None

    def put(self, path: str, handle: bytes) -> None:
        with self._lock:
            self._handles[path] = (handle, time.monotonic() + self._ttl)

    def forget(self) -> None:
        with self._lock:
            self._handles.clear()


class HandleOps:
    """The FileOps of files.py by handle: one NFS procedure per operation.

    A path is looked up from the export's root, one component at a time; a symbolic link on
    the way is read (READLINK) and followed only while it stays in the export (beneath.py).
    The final name of a create, rename or remove is never followed.
    """

    def __init__(self, nfs: Nfs3, directories: DirectoryHandles, *, export: str) -> None:
        self._nfs = nfs
        self._directories = directories
        self._export = export
        self.used_cache = False

    def _resolve(self, path: tuple[str, ...], *, directory: bool) -> tuple[bytes, Attributes]:
        """The handle of `path` and its attributes (only a file's are fresh: directories'
        handles come from the cache when they can)."""
        done: tuple[str, ...] = ()
        handle, attributes = self._nfs.root, DIRECTORY
        pending = list(path)
        links = 0
        while pending:
            name = pending.pop(0)
            here = (*done, name)
            is_directory = directory or bool(pending)
            cached = self._directories.get("/".join(here)) if is_directory else None
            if cached is not None:
                self.used_cache = True
                done, handle, attributes = here, cached, DIRECTORY
                continue
            found, attributes = self._lookup(handle, name)
            if attributes.type == NF3LNK:
                links += 1
                if links > beneath.MAX_LINKS:
                    raise beneath.too_many_links("/".join(path))
                target = os.fsdecode(self._nfs.readlink(found))
                spliced = beneath.splice(done, target, self._export)
                if spliced is None:
                    raise beneath.leaves("/".join(path), "the export")
                done, handle, pending = (), self._nfs.root, [*spliced, *pending]
                continue
            if is_directory:
                if attributes.type != NF3DIR:
                    key = "/".join(here)
                    raise libnfs.NfsError(errno.ENOTDIR, f"lookup: {key!r} is not a directory")
                self._directories.put("/".join(here), found)
            done, handle = here, found
        return handle, attributes

    def _lookup(self, directory: bytes, name: str) -> tuple[bytes, Attributes]:
        handle, attributes = self._nfs.lookup(directory, name.encode())
        if attributes is None:
            attributes = self._nfs.getattr(handle)
        return handle, attributes

    def _split(self, path: str) -> tuple[bytes, str]:
        *parents, name = path.split("/")
        return self._resolve(tuple(parents), directory=True)[0], name

    def stat(self, path: str) -> FileFacts:
        _, attributes = self._resolve(tuple(path.split("/")), directory=False)
        return FileFacts(
            size=attributes.size,
            mtime_ns=attributes.mtime_ns,
            ctime_ns=attributes.ctime_ns,
            is_directory=attributes.type == NF3DIR,
        )

    def create_exclusive(self, path: str) -> bytes:
        directory, name = self._split(path)
        handle = self._nfs.create_guarded(directory, name.encode(), CREATE_MODE)
        return handle if handle is not None else self._nfs.lookup(directory, name.encode())[0]

    def write_all(self, handle: bytes, data: bytes) -> None:
        offset = 0
        while offset < len(data):
            chunk = data[offset : offset + self._nfs.write_max]
            written = self._nfs.write_sync(handle, offset, chunk)
            if written == 0:
                raise libnfs.NfsError(errno.EIO, "write: the server accepted no bytes")
            offset += written

    def flush(self, handle: bytes) -> None:
        """Nothing to do: every WRITE was FILE_SYNC, checked in Nfs3.write_sync."""

    def close(self, handle: bytes) -> None:
        """Nothing to do: NFSv3 keeps no open state."""

    def rename(self, old: str, new: str) -> None:
        source_dir, source = self._split(old)
        target_dir, target = self._split(new)
        self._nfs.rename(source_dir, source.encode(), target_dir, target.encode())

    def unlink(self, path: str) -> None:
        directory, name = self._split(path)
        self._nfs.remove(directory, name.encode())


@dataclass(eq=False)
class _Connection:
    context: libnfs.NfsContext
    raw: Nfs3 | None  # None: we may not read the export's root, so no handle walk from it


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
        self._connections: set[_Connection] = set()
        self._directories = DirectoryHandles()

    async def write_beside(self, place: Placement, render: Render) -> FileFacts:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write_beside, place, render)

    def _write_beside(self, place: Placement, render: Render) -> FileFacts:
        connection = self._connection()
        try:
            if connection.raw is None:
                return self._by_path(connection, place, render)
            return self._by_handles(connection.raw, connection.context.export, place, render)
        except RetryableError as exc:
            if _cause_is(exc, CONNECTION_ERRNOS):
                self._drop(connection)
            raise

    def _by_handles(self, raw: Nfs3, export: str, place: Placement, render: Render) -> FileFacts:
        ops = HandleOps(raw, self._directories, export=export)
        try:
            return write_beside(ops, place, render, identity=self.identity)
        except JobError as exc:
            if not (ops.used_cache and _cause_is(exc, STALE_ERRNOS)):
                raise
        # A cached directory handle may be what failed (the directory was removed or
        # replaced): forget them all and try once more with fresh lookups.
        self._directories.forget()
        ops = HandleOps(raw, self._directories, export=export)
        return write_beside(ops, place, render, identity=self.identity)

    def _by_path(self, connection: _Connection, place: Placement, render: Render) -> FileFacts:
        return write_beside(NfsOps(connection.context), place, render, identity=self.identity)

    def _connection(self) -> _Connection:
        connection: _Connection | None = getattr(self._local, "connection", None)
        if connection is not None:
            return connection
        context: libnfs.NfsContext | None = None
        try:
            context = libnfs.NfsContext(self._url, timeout_ms=self._timeout_ms)
            raw = self._raw(context)
        except libnfs.NfsError as exc:
            if context is not None:
                context.close()
            raise RetryableError(f"cannot mount {self._label}: {exc.strerror}") from exc
        connection = _Connection(context, raw)
        with self._lock:
            self._connections.add(connection)
        self._local.connection = connection
        log.debug("nfs.mounted", export=self._label, thread=threading.current_thread().name)
        return connection

    def _raw(self, context: libnfs.NfsContext) -> Nfs3 | None:
        try:
            return Nfs3(context, timeout_s=libnfs.whole_seconds(self._timeout_ms) / 1000)
        except libnfs.NfsError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM):
                raise
        log.warning("nfs.root_not_readable", export=self._label, identity=self.identity)
        return None  # path calls still work: they only need search permission

    def _drop(self, connection: _Connection) -> None:
        """Forget a connection that failed; this thread mounts anew next time."""
        self._local.connection = None
        with self._lock:
            self._connections.discard(connection)
        connection.context.close()
        log.info("nfs.connection_dropped", export=self._label)

    async def close(self) -> None:
        """Let running calls end (each is bounded by the timeout), then close every context."""
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        with self._lock:
            connections, self._connections = list(self._connections), set()
        for connection in connections:
            connection.context.close()


def _cause_is(exc: BaseException, codes: frozenset[int] | set[int]) -> bool:
    cause = exc.__cause__
    return isinstance(cause, OSError) and cause.errno in codes


def identity_of(url: str) -> str:
    """The uid and gid libnfs presents for `url` (its `uid=`/`gid=` options, else ours)."""
    query = parse_qs(urlsplit(url).query)
    uid = query.get("uid", [str(os.getuid())])[-1]
    gid = query.get("gid", [str(os.getgid())])[-1]
    return f"uid={uid} gid={gid}"
