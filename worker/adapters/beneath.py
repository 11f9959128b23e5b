"""Paths resolved beneath a root, never through a symbolic link that leads out of it.

A symlink planted inside the root (`data/leak.bin -> /elsewhere/secret`) must not let a
sidecar describe, or be written into, anything outside. Two resolvers share one rule: a link
is followed only while it stays beneath the root.

- On a local directory, the kernel resolves: `openat2(2)` with RESOLVE_BENEATH (Linux 5.6,
  every Fargate and current ECS kernel) refuses, atomically, any component or link that
  would leave the root. Where the kernel or a seccomp filter lacks openat2, a walk with
  O_NOFOLLOW opens one component at a time and refuses every symbolic link: stricter, and
  just as safe.
- Over NFS the client resolves (`splice`): a relative target is followed while its `..`
  stay inside the export; an absolute target is followed only when it names a place in the
  export by the server's own path (as libnfs does); any other is refused.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import os
import posixpath
import stat
from collections.abc import Iterator

from worker.errors import PermanentError

MAX_LINKS = 40  # links followed in one resolution, as Linux allows (ELOOP beyond)

SYS_OPENAT2 = 437  # the same number on every architecture (asm-generic, Linux 5.6)
RESOLVE_NO_MAGICLINKS = 0x02  # no /proc/self/fd-style links either
RESOLVE_BENEATH = 0x08
OPEN_FLAGS = os.O_PATH | os.O_CLOEXEC
# What a kernel or a seccomp filter without openat2 answers (old Docker filters say EPERM).
NO_OPENAT2 = frozenset({errno.ENOSYS, errno.EPERM})
RETRIES_ON_RACE = 8  # openat2 answers EAGAIN when a concurrent rename raced the walk


class OpenHow(ctypes.Structure):
    """`struct open_how` of linux/openat2.h."""

    _fields_ = (("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64), ("resolve", ctypes.c_uint64))


_libc = ctypes.CDLL(None, use_errno=True)


def leaves(path: str, root: str) -> PermanentError:
    """The error of a path whose resolution would leave the root."""
    return PermanentError(f"{path!r} leads outside {root} through a symbolic link")


def too_many_links(path: str) -> PermanentError:
    return PermanentError(f"{path!r} goes through more than {MAX_LINKS} symbolic links")


def openat2(directory: int, path: str, flags: int, resolve: int) -> int:
    """The openat2 system call; raises OSError with its errno."""
    how = OpenHow(flags, 0, resolve)
    for _ in range(RETRIES_ON_RACE):
        fd = _libc.syscall(
            ctypes.c_long(SYS_OPENAT2),
            ctypes.c_int(directory),
            ctypes.c_char_p(os.fsencode(path)),
            ctypes.byref(how),
            ctypes.c_size_t(ctypes.sizeof(how)),
        )
        if fd >= 0:
            return int(fd)
        code = ctypes.get_errno()
        if code not in (errno.EAGAIN, errno.EINTR):
            break
    raise OSError(code, os.strerror(code), path)


def kernel_resolves(root_fd: int) -> bool:
    """Whether openat2 works here (asked once, when a store opens its root)."""
    try:
        os.close(openat2(root_fd, ".", OPEN_FLAGS | os.O_DIRECTORY, RESOLVE_BENEATH))
    except OSError as exc:
        if exc.errno in NO_OPENAT2:
            return False
        raise
    return True


class LocalRoot:
    """Opens paths beneath one directory; each open returns an O_PATH descriptor."""

    def __init__(self, root: str, *, label: str, use_openat2: bool | None = None) -> None:
        self.label = label
        self.fd = os.open(root, OPEN_FLAGS | os.O_DIRECTORY)
        self.kernel = kernel_resolves(self.fd) if use_openat2 is None else use_openat2

    def close(self) -> None:
        os.close(self.fd)

    @contextlib.contextmanager
    def opened(self, path: str, *, directory: bool = False) -> Iterator[int]:
        """`path` (relative, "" for the root) opened beneath the root, following inner links."""
        flags = OPEN_FLAGS | (os.O_DIRECTORY if directory else 0)
        fd = self._open(path or ".", flags)
        try:
            yield fd
        finally:
            os.close(fd)

    def _open(self, path: str, flags: int) -> int:
        if self.kernel:
            try:
                return openat2(self.fd, path, flags, RESOLVE_BENEATH | RESOLVE_NO_MAGICLINKS)
            except OSError as exc:
                if exc.errno == errno.EXDEV:  # the kernel's answer to a way out
                    raise leaves(path, self.label) from None
                if exc.errno == errno.ELOOP:
                    raise too_many_links(path) from None
                raise
        return self._walk(path, flags)

    def _walk(self, path: str, flags: int) -> int:
        """Component by component with O_NOFOLLOW: every symbolic link is refused."""
        current = os.dup(self.fd)
        try:
            for part in path.split("/"):
                if part in ("", "."):
                    continue
                if part == "..":  # callers normalise first; never climb anyway
                    raise leaves(path, self.label)
                if stat.S_ISLNK(os.stat(part, dir_fd=current, follow_symlinks=False).st_mode):
                    raise PermanentError(
                        f"{path!r} goes through a symbolic link, and this kernel has no"
                        f" openat2 to check where it leads"
                    )
                following = os.open(part, OPEN_FLAGS | os.O_NOFOLLOW, dir_fd=current)
                os.close(current)
                current = following
            if flags & os.O_DIRECTORY and not stat.S_ISDIR(os.fstat(current).st_mode):
                raise OSError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), path)
        except BaseException:
            os.close(current)
            raise
        return current


def splice(resolved: tuple[str, ...], target: str, export: str) -> tuple[str, ...] | None:
    """Where a link in directory `resolved` (components beneath the export) pointing to
    `target` leads, as components beneath the export; None if that is outside it."""
    if target.startswith("/"):
        base = posixpath.normpath(export)
        if target != base and not target.startswith(base.rstrip("/") + "/"):
            return None
        start: list[str] = []
        target = target[len(base) :]
    else:
        start = list(resolved)
    for part in target.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if not start:
                return None
            start.pop()
        else:
            start.append(part)
    return tuple(start)
