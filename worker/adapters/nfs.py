"""Sidecar writes through libnfs from user space: a few threads, each owning one mounted context.

No kernel mount and no privilege, which is what Fargate allows. A context is opened on a
thread's first job and reused for every later one; a connection failure closes it, and that
thread's next job mounts afresh (so a restarted server is picked up). The calls go through
ctypes, which releases the GIL, so the event loop never waits behind an NFS round trip.

Sidecars are written by file handle (nfs3.py: four round trips once the directory's handle
is cached for a few seconds, as kernel NFS clients cache lookups), the one way: libnfs's
path calls take eleven round trips and ran 936 vs 597 sidecars/s at 1 ms of round trip
(bench/sidecar.py --paths; on bare loopback they are 15% faster and use less CPU, but an
NFS server is never on loopback in production).
Symbolic links on a path are followed only while they stay in the export (beneath.py). An
export root we may pass through but not read (mode 711) still works: its handle then comes
from the MOUNT service (nfs3.mount_root), and the walk needs only search permission.
"""

from __future__ import annotations

import asyncio
import errno
import os
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
from worker.adapters.nfs3 import NF3DIR, NF3LNK, Attributes, Nfs3, mount_root
from worker.errors import ConfigError, JobError, RetryableError

log = structlog.get_logger("worker.nfs")

CREATE_MODE = 0o644
DIRECTORY_TTL_S = 3.0
# What a removed or replaced directory's cached handle can produce.
STALE_ERRNOS = frozenset({errno.ENOENT, errno.ESTALE, errno.ENOTDIR})
# What a directory looked up earlier stands for (only its type is ever read).
DIRECTORY = Attributes(type=NF3DIR, size=0, mtime_ns=0, ctime_ns=0)


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
    raw: Nfs3


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

    def _raw(self, context: libnfs.NfsContext) -> Nfs3:
        timeout_s = libnfs.whole_seconds(self._timeout_ms) / 1000
        try:
            return Nfs3(context, timeout_s=timeout_s)
        except libnfs.NfsError as exc:
            if exc.errno not in (errno.EACCES, errno.EPERM):
                raise
        # We may not read the root (an open of "/" needs read), perhaps only pass through it:
        # ask the MOUNT service for its handle, as libnfs's mount did; the walk needs search.
        log.info("nfs.root_not_readable", export=self._label, identity=self.identity)
        query = parse_qs(urlsplit(self._url).query)
        port = int(query["mountport"][-1]) if "mountport" in query else None
        uid, gid = ids_of(self._url)
        export = context.export.encode()
        root = mount_root(context.server, export, port=port, uid=uid, gid=gid, timeout_s=timeout_s)
        return Nfs3(context, timeout_s=timeout_s, root=root)

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


def ids_of(url: str) -> tuple[int, int]:
    """The uid and gid libnfs presents for `url` (its `uid=`/`gid=` options, else ours)."""
    query = parse_qs(urlsplit(url).query)
    return int(query.get("uid", [os.getuid()])[-1]), int(query.get("gid", [os.getgid()])[-1])


def identity_of(url: str) -> str:
    uid, gid = ids_of(url)
    return f"uid={uid} gid={gid}"
