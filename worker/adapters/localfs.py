"""Sidecar writes through a mounted directory (SIDECAR_ROOT: EFS, an NFS mount in the task).

The same sequence and errors as the libnfs store (files.py), with plain system calls in a
few threads: temporary file in the same directory, write, fsync, close, rename. No path,
and no symbolic link on it, leads out of the root (beneath.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import posixpath
import stat
from concurrent.futures import ThreadPoolExecutor

import structlog

from worker.adapters import beneath
from worker.adapters.files import FileFacts, Placement, Render, write_beside
from worker.errors import ConfigError

log = structlog.get_logger("worker.sidecar")

CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
CREATE_MODE = 0o644


class LocalOps:
    """The FileOps of files.py beneath one root; paths are relative to it.

    Every path is opened beneath the root (beneath.py), and each call works relative to the
    descriptor of its directory: a link swapped in between two calls cannot redirect one.
    The final name of a create, rename or unlink is never followed: a symlink planted under
    a sidecar's name is replaced by the new file, not written through.
    """

    def __init__(self, root: beneath.LocalRoot) -> None:
        self._root = root

    def _parent(self, path: str) -> tuple[contextlib.AbstractContextManager[int], str]:
        directory, name = posixpath.split(path)
        return self._root.opened(directory, directory=True), name

    def stat(self, path: str) -> FileFacts:
        with self._root.opened(path) as fd:
            st = os.fstat(fd)
        return FileFacts(
            size=st.st_size,
            mtime_ns=st.st_mtime_ns,
            ctime_ns=st.st_ctime_ns,
            is_directory=stat.S_ISDIR(st.st_mode),
        )

    def create_exclusive(self, path: str) -> int:
        opened, name = self._parent(path)
        with opened as directory:  # O_EXCL: a link under this name fails with EEXIST
            return os.open(name, CREATE_FLAGS, CREATE_MODE, dir_fd=directory)

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
        old_opened, old_name = self._parent(old)
        new_opened, new_name = self._parent(new)
        with old_opened as source, new_opened as target:
            os.rename(old_name, new_name, src_dir_fd=source, dst_dir_fd=target)

    def unlink(self, path: str) -> None:
        opened, name = self._parent(path)
        with opened as directory:
            os.unlink(name, dir_fd=directory)


class LocalStore:
    """The SidecarStore on a directory; blocking calls run in a small thread pool."""

    def __init__(self, root: str, *, threads: int) -> None:
        if not os.path.isdir(root):
            raise ConfigError("SIDECAR_ROOT", f"is not a directory: {root!r}")
        self._root = beneath.LocalRoot(root, label="SIDECAR_ROOT")
        if not self._root.kernel:
            log.warning("sidecar.no_openat2", refused="every symbolic link under the root")
        self.identity = f"uid={os.geteuid()} gid={os.getegid()}"
        self._ops = LocalOps(self._root)
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="sidecar-fs")

    async def write_beside(self, place: Placement, render: Render) -> FileFacts:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write_beside, place, render)

    def _write_beside(self, place: Placement, render: Render) -> FileFacts:
        return write_beside(self._ops, place, render, identity=self.identity)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        self._root.close()
