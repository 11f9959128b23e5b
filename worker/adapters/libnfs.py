"""An honest ctypes binding to libnfs's synchronous API: every result checked, every failure raised.

Why not the PyPI binding: it ignores the return codes of write, flush and close, returns a
negative errno from several calls instead of raising, and never releases the GIL, so one NFS
round trip holds up the event loop. ctypes releases the GIL for the whole foreign call.

An `NfsContext` is not thread-safe: use one per thread. Each call either returns its result
or raises `NfsError` carrying the errno libnfs reported (positive) and libnfs's message.
libnfs reports a timed-out call as EINTR ("Command timed out") and a dead socket as EIO.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import math
import os
from dataclasses import dataclass

_P = ctypes.c_void_p
_S = ctypes.c_char_p
_I = ctypes.c_int
_U64 = ctypes.c_uint64

# The sonames whose ABI the prototypes below declare. libnfs 4.0.0 (Debian 12, libnfs.so.13)
# and 5.0.x (Debian 13, libnfs.so.14) declare every call we make, and the two structs we read,
# identically. libnfs 6 (libnfs.so.16) moved nfs_pwrite's buffer before its count and offset:
# bound with these prototypes it would write garbage, so any soname not listed is refused.
KNOWN_SONAMES = ("libnfs.so.14", "libnfs.so.13")


class NfsError(OSError):
    """A libnfs call failed; `errno` is positive, `strerror` is libnfs's own message."""


class NfsUnavailable(RuntimeError):
    """No libnfs of a known ABI can be loaded (Debian 12: `libnfs13`, Debian 13: `libnfs14`)."""


_STAT_FIELDS = (
    "dev ino mode nlink uid gid rdev size blksize blocks "
    "atime mtime ctime atime_nsec mtime_nsec ctime_nsec used"
)


class _Stat64(ctypes.Structure):
    """libnfs's `struct nfs_stat_64`: seventeen uint64_t fields in this order."""

    _fields_ = tuple((name, _U64) for name in _STAT_FIELDS.split())


class _Url(ctypes.Structure):
    """The head of libnfs's `struct nfs_url`: server, path, file."""

    _fields_ = (("server", _S), ("path", _S), ("file", _S))


@dataclass(frozen=True)
class Stat:
    """The attributes NFSv3 returns for a file (times in nanoseconds since the epoch)."""

    mode: int
    uid: int
    gid: int
    size: int
    mtime_ns: int
    ctime_ns: int


_SIGNATURES: dict[str, tuple[object, list[object]]] = {
    "nfs_init_context": (_P, []),
    "nfs_destroy_context": (None, [_P]),
    "nfs_get_error": (_S, [_P]),
    "nfs_parse_url_dir": (_P, [_P, _S]),
    "nfs_destroy_url": (None, [_P]),
    "nfs_set_timeout": (None, [_P, _I]),
    "nfs_mount": (_I, [_P, _S, _S]),
    "nfs_stat64": (_I, [_P, _S, ctypes.POINTER(_Stat64)]),
    "nfs_create": (_I, [_P, _S, _I, _I, ctypes.POINTER(_P)]),
    "nfs_pwrite": (_I, [_P, _P, _U64, _U64, _S]),
    "nfs_fsync": (_I, [_P, _P]),
    "nfs_close": (_I, [_P, _P]),
    "nfs_rename": (_I, [_P, _S, _S]),
    "nfs_unlink": (_I, [_P, _S]),
}


@functools.cache
def library() -> ctypes.CDLL:
    """Load libnfs once and declare the prototypes we call (CDLL releases the GIL per call)."""
    return load(KNOWN_SONAMES, other=ctypes.util.find_library("nfs"))


def load(sonames: tuple[str, ...], *, other: str | None) -> ctypes.CDLL:
    """The first of `sonames` that loads, its prototypes declared. None loads: NfsUnavailable,
    naming `other` (the libnfs the system has, if any) as a library of an unknown ABI."""
    for name in sonames:
        try:
            lib = ctypes.CDLL(name)
        except OSError:
            continue
        for function, (restype, argtypes) in _SIGNATURES.items():
            prototype = getattr(lib, function)
            prototype.restype = restype
            prototype.argtypes = argtypes
        return lib
    known = " or ".join(sonames)
    if other:
        raise NfsUnavailable(
            f"the installed libnfs, {other}, has an ABI this worker does not bind (it binds "
            f"{known}: Debian 12's libnfs13 or Debian 13's libnfs14)"
        )
    raise NfsUnavailable(f"no libnfs is installed ({known}: Debian libnfs13 or libnfs14)")


def whole_seconds(timeout_ms: int) -> int:
    """libnfs counts its timeout in whole seconds: round up, never below one second."""
    return max(1000, math.ceil(timeout_ms / 1000) * 1000)


class NfsContext:
    """One connection to one export: mounted on creation, closed by `close()`."""

    def __init__(self, url: str, *, timeout_ms: int) -> None:
        self._lib = library()
        handle = self._lib.nfs_init_context()
        if not handle:
            raise NfsError(errno.ENOMEM, "nfs_init_context failed")
        self._nfs: int | None = handle
        self.export = "/"  # the export's path on the server, once mounted
        self.server = b""  # the server as the URL names it
        try:
            self._lib.nfs_set_timeout(handle, whole_seconds(timeout_ms))
            server, export = self._parse(url)
            self.check(self._lib.nfs_mount(handle, server, export), "mount")
            self.export, self.server = os.fsdecode(export), server
        except BaseException:
            self.close()
            raise

    def _parse(self, url: str) -> tuple[bytes, bytes]:
        """Parse the URL on this context (which applies its options: ports, uid, gid...)."""
        parsed = self._lib.nfs_parse_url_dir(self.handle, url.encode())
        if not parsed:
            raise NfsError(errno.EINVAL, f"invalid NFS URL: {self._error()}")
        try:
            fields = ctypes.cast(parsed, ctypes.POINTER(_Url)).contents
            return bytes(fields.server or b""), bytes(fields.path or b"/")
        finally:
            self._lib.nfs_destroy_url(parsed)

    @property
    def handle(self) -> int:
        if self._nfs is None:
            raise NfsError(errno.EBADF, "the NFS context is closed")
        return self._nfs

    def _error(self) -> str:
        message = self._lib.nfs_get_error(self.handle)
        return message.decode(errors="replace") if message else "no detail from libnfs"

    def check(self, result: int, call: str) -> int:
        """Return a non-negative result; raise NfsError for a negative errno."""
        if result < 0:
            code = -result
            raise NfsError(code, f"{call}: {self._error()} ({errno.errorcode.get(code, code)})")
        return result

    def stat(self, path: bytes) -> Stat:
        st = _Stat64()
        self.check(self._lib.nfs_stat64(self.handle, path, ctypes.byref(st)), "stat")
        return Stat(
            mode=st.mode,
            uid=st.uid,
            gid=st.gid,
            size=st.size,
            mtime_ns=st.mtime * 1_000_000_000 + st.mtime_nsec,
            ctime_ns=st.ctime * 1_000_000_000 + st.ctime_nsec,
        )

    def create(self, path: bytes, flags: int, mode: int) -> int:
        """Create and open a file; returns the file handle for `write_all` and `close_file`."""
        fh = _P()
        result = self._lib.nfs_create(self.handle, path, flags, mode, ctypes.byref(fh))
        self.check(result, "create")
        if not fh.value:
            raise NfsError(errno.EIO, "create: libnfs returned no file handle")
        return fh.value

    def write_all(self, fh: int, data: bytes) -> None:
        """Write every byte from offset 0; a short write continues, a zero-byte write fails."""
        offset = 0
        while offset < len(data):
            chunk = data[offset:]
            written = self.check(
                self._lib.nfs_pwrite(self.handle, fh, offset, len(chunk), chunk), "write"
            )
            if written == 0:
                raise NfsError(errno.EIO, "write: the server accepted no bytes")
            offset += written

    def fsync(self, fh: int) -> None:
        self.check(self._lib.nfs_fsync(self.handle, fh), "fsync")

    def close_file(self, fh: int) -> None:
        self.check(self._lib.nfs_close(self.handle, fh), "close")

    def rename(self, old: bytes, new: bytes) -> None:
        self.check(self._lib.nfs_rename(self.handle, old, new), "rename")

    def unlink(self, path: bytes) -> None:
        self.check(self._lib.nfs_unlink(self.handle, path), "unlink")

    def close(self) -> None:
        """Drop the connection and free the context (NFSv3 mounts hold no server state)."""
        if self._nfs is not None:
            handle, self._nfs = self._nfs, None
            self._lib.nfs_destroy_context(handle)


def check_url(url: str) -> str | None:
    """Why libnfs cannot parse `url`, or None when it can (no connection is made)."""
    lib = library()
    handle = lib.nfs_init_context()
    try:
        parsed = lib.nfs_parse_url_dir(handle, url.encode())
        if not parsed:
            message = lib.nfs_get_error(handle)
            return message.decode(errors="replace") if message else "unparseable"
        lib.nfs_destroy_url(parsed)
        return None
    finally:
        lib.nfs_destroy_context(handle)
