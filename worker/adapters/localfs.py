"""Sidecar writes through a mounted directory (SIDECAR_ROOT: EFS, an NFS mount in the task).

The same sequence and errors as the libnfs store (files.py), with plain system calls in a
few threads: temporary file in the same directory, write, fsync, close, rename. A symlink
cannot carry a write out of the root: the directory written in must resolve inside it.
"""

from __future__ import annotations

import asyncio
import errno
import os
import stat
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from worker.adapters.files import FileFacts, Placement, Render, write_beside
from worker.errors import ConfigError, PermanentError

CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
CREATE_MODE = 0o644


class LocalOps:
    """The FileOps of files.py under one root directory; paths are relative to it."""

    def __init__(self, root: str) -> None:
        self._root = root

    def _path(self, path: str) -> str:
        return os.path.join(self._root, path)

    def stat(self, path: str) -> FileFacts:
        st = os.stat(self._path(path))
        return FileFacts(
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            is_directory=stat.S_ISDIR(st.st_mode),
        )

    def create_exclusive(self, path: str) -> int:
        return os.open(self._path(path), CREATE_FLAGS, CREATE_MODE)

    def write_all(self, handle: int, data: bytes) -> None:
        view = memoryview(data)
        while view:
            written = os.write(handle, view)
            if written == 0:
                raise OSError(errno.EIO, "the file system accepted no bytes")
            view = view[written:]

    def flush(self, handle: int) -> None:
        os.fsync(handle)

    def close(self, handle: int) -> None:
        os.close(handle)

    def rename(self, old: str, new: str) -> None:
        os.rename(self._path(old), self._path(new))

    def unlink(self, path: str) -> None:
        os.unlink(self._path(path))


class LocalStore:
    """The SidecarStore on a directory; blocking calls run in a small thread pool."""

    def __init__(self, root: str, *, threads: int) -> None:
        if not os.path.isdir(root):
            raise ConfigError("SIDECAR_ROOT", f"is not a directory: {root!r}")
        self._root = os.path.realpath(root)
        self.identity = f"uid={os.geteuid()} gid={os.getegid()}"
        self._ops = LocalOps(self._root)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sidecar-fs")

    async def write_beside(self, place: Placement, render: Render) -> FileFacts:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write_beside, place, render)

    def _write_beside(self, place: Placement, render: Render) -> FileFacts:
        self._check_inside(place.target)
        return write_beside(self._ops, place, render, identity=self.identity)

    def _check_inside(self, target: str) -> None:
        directory = os.path.realpath(os.path.dirname(os.path.join(self._root, target)))
        if directory != self._root and not directory.startswith(self._root + os.sep):
            raise PermanentError(f"{str(Path(target).parent)!r} leads outside SIDECAR_ROOT")

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
