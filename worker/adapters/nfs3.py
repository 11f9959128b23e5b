"""NFSv3 procedures by file handle on a mounted libnfs context: one round trip per operation.

libnfs's path calls walk the path on every call and add round trips of their own (a GETATTR
after each stat, a LOOKUP after each CREATE, a COMMIT in every close): eleven calls for one
sidecar. Its raw layer sends exactly the procedure asked for, so with directory handles
cached a sidecar costs four: LOOKUP (the file and its attributes), CREATE (GUARDED, which
returns the new handle), WRITE (FILE_SYNC: on stable storage before the reply), RENAME.

The root handle is the one libnfs received at mount, which it hands out for an open of "/";
where the root may be passed through but not read (mode 711: an open needs read), it comes
from the MOUNT service itself (MNT, as libnfs's own mount got it), which needs neither.

The structures mirror libnfs-raw-nfs.h and -mount.h (rpcgen output;
tests/sidecar/test_nfs3_layout.py checks every size and offset against the C compiler). A
call is sent with rpc_*_async and completed by polling the socket in this thread; the poll
and every foreign call release the GIL. Every reply's status is checked and raised as an
OSError errno.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import itertools
import select
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from worker.adapters.libnfs import NfsContext, NfsError, library

_U32, _U64, _P, _S = ctypes.c_uint32, ctypes.c_uint64, ctypes.c_void_p, ctypes.c_char_p
_I = ctypes.c_int
RPC_STATUS_SUCCESS, RPC_STATUS_TIMEOUT = 0, 3
NF3DIR, NF3LNK = 2, 5
MOUNT_PROGRAM, MOUNT_V3 = 100005, 3
GUARDED, FILE_SYNC = 1, 2

# nfsstat3 -> errno (RFC 1813 numbers most after Linux errno, but not all of them).
_ERRNO = {
    1: errno.EPERM, 2: errno.ENOENT, 5: errno.EIO, 6: errno.ENXIO, 13: errno.EACCES,
    17: errno.EEXIST, 18: errno.EXDEV, 19: errno.ENODEV, 20: errno.ENOTDIR, 21: errno.EISDIR,
    22: errno.EINVAL, 27: errno.EFBIG, 28: errno.ENOSPC, 30: errno.EROFS, 31: errno.EMLINK,
    63: errno.ENAMETOOLONG, 66: errno.ENOTEMPTY, 69: errno.EDQUOT, 70: errno.ESTALE,
    71: errno.EREMOTE, 10001: errno.ESTALE, 10004: errno.EOPNOTSUPP, 10008: errno.EAGAIN,
}  # fmt: skip


class Fh3(ctypes.Structure):
    _fields_ = (("len", ctypes.c_uint), ("val", _P))


class Time3(ctypes.Structure):
    _fields_ = (("seconds", _U32), ("nseconds", _U32))


class Fattr3(ctypes.Structure):
    _fields_ = (
        ("type", ctypes.c_int), ("mode", _U32), ("nlink", _U32), ("uid", _U32), ("gid", _U32),
        ("size", _U64), ("used", _U64), ("rdev", _U32 * 2), ("fsid", _U64), ("fileid", _U64),
        ("atime", Time3), ("mtime", Time3), ("ctime", Time3),
    )  # fmt: skip


class PostOpAttr(ctypes.Structure):
    _fields_ = (("follows", _U32), ("attributes", Fattr3))


class WccData(ctypes.Structure):
    _fields_ = (("before_follows", _U32), ("before", _U64 * 3), ("after", PostOpAttr))


class DirOpArgs3(ctypes.Structure):
    _fields_ = (("dir", Fh3), ("name", _S))


class LookupRes(ctypes.Structure):
    _fields_ = (("status", ctypes.c_int), ("object", Fh3), ("obj_attributes", PostOpAttr))


class GetattrRes(ctypes.Structure):
    _fields_ = (("status", ctypes.c_int), ("attributes", Fattr3))


class Sattr3(ctypes.Structure):
    _fields_ = (
        ("set_mode", _U32), ("mode", _U32), ("set_uid", _U32), ("uid", _U32),
        ("set_gid", _U32), ("gid", _U32), ("set_size", _U32), ("size", _U64),
        ("set_atime", ctypes.c_int), ("atime", Time3), ("set_mtime", ctypes.c_int),
        ("mtime", Time3),
    )  # fmt: skip


class CreateArgs(ctypes.Structure):
    _fields_ = (("where", DirOpArgs3), ("how", ctypes.c_int), ("attributes", Sattr3))


class PostOpFh3(ctypes.Structure):
    _fields_ = (("follows", _U32), ("handle", Fh3))


class CreateRes(ctypes.Structure):
    _fields_ = (("status", ctypes.c_int), ("obj", PostOpFh3))


class WriteArgs(ctypes.Structure):
    _fields_ = (
        ("file", Fh3), ("offset", _U64), ("count", _U32), ("stable", ctypes.c_int),
        ("data_len", ctypes.c_uint), ("data_val", _P),
    )  # fmt: skip


class WriteRes(ctypes.Structure):
    _fields_ = (
        ("status", ctypes.c_int), ("wcc", WccData), ("count", _U32), ("committed", ctypes.c_int),
    )  # fmt: skip


class ReadlinkRes(ctypes.Structure):
    _fields_ = (("status", ctypes.c_int), ("attributes", PostOpAttr), ("data", _S))


class RenameArgs(ctypes.Structure):
    _fields_ = (("source", DirOpArgs3), ("target", DirOpArgs3))


class MountRes(ctypes.Structure):
    """mountres3: a status, then (when 0) the export's root handle and the auth flavours."""

    _fields_ = (("status", ctypes.c_int), ("handle", Fh3), ("flavors", ctypes.c_uint), ("val", _P))


class NfsFh(ctypes.Structure):
    """libnfs's own `struct nfs_fh` (what nfs_get_fh returns)."""

    _fields_ = (("len", ctypes.c_int), ("val", _P))


CALLBACK = ctypes.CFUNCTYPE(None, _P, ctypes.c_int, _P, _P)
_RAW: dict[str, tuple[object, list[object]]] = {
    "nfs_get_rpc_context": (_P, [_P]),
    "nfs_get_writemax": (_U64, [_P]),
    "nfs_open": (ctypes.c_int, [_P, _S, ctypes.c_int, ctypes.POINTER(_P)]),
    "nfs_get_fh": (ctypes.POINTER(NfsFh), [_P]),
    "rpc_get_fd": (ctypes.c_int, [_P]),
    "rpc_which_events": (ctypes.c_int, [_P]),
    "rpc_service": (ctypes.c_int, [_P, ctypes.c_int]),
    "rpc_get_error": (_S, [_P]),
    "rpc_init_context": (_P, []),
    "rpc_destroy_context": (None, [_P]),
    "rpc_set_uid": (None, [_P, ctypes.c_int]),
    "rpc_set_gid": (None, [_P, ctypes.c_int]),
    "rpc_connect_port_async": (_I, [_P, _S, _I, _I, _I, CALLBACK, _P]),
    "rpc_connect_program_async": (_I, [_P, _S, _I, _I, CALLBACK, _P]),
    "rpc_mount3_mnt_async": (ctypes.c_int, [_P, CALLBACK, _S, _P]),
    **{
        f"rpc_nfs3_{name}_async": (ctypes.c_int, [_P, CALLBACK, _P, _P])
        for name in ("lookup", "getattr", "readlink", "create", "write", "rename", "remove")
    },
}


@functools.cache
def _raw_library() -> ctypes.CDLL:
    """libnfs with the raw-layer prototypes declared (once: threads share the object)."""
    lib = library()
    for function, (restype, argtypes) in _RAW.items():
        prototype = getattr(lib, function)
        prototype.restype, prototype.argtypes = restype, argtypes
    return lib


@dataclass(frozen=True)
class Attributes:
    """The parts of fattr3 a sidecar needs (times in nanoseconds since the epoch)."""

    type: int
    size: int
    mtime_ns: int
    ctime_ns: int


def _attributes(fattr: Fattr3) -> Attributes:
    return Attributes(
        type=fattr.type,
        size=fattr.size,
        mtime_ns=fattr.mtime.seconds * 1_000_000_000 + fattr.mtime.nseconds,
        ctime_ns=fattr.ctime.seconds * 1_000_000_000 + fattr.ctime.nseconds,
    )


def _fh(handle: bytes) -> Fh3:
    return Fh3(len(handle), ctypes.cast(ctypes.c_char_p(handle), _P))


class _Rpc:
    """Calls on one libnfs rpc_context, each completed by polling its socket in this thread."""

    def __init__(self, rpc: int, *, timeout_s: float) -> None:
        self._lib = _raw_library()
        self._rpc = rpc
        self._timeout = timeout_s
        self._ids = itertools.count(1)
        self._waiting: dict[int, Callable[[int, Any], None]] = {}
        self._callback = CALLBACK(self._on_reply)  # one object, alive as long as the context
        self._poller = select.poll()
        self._registered: tuple[int, int] | None = None

    def _on_reply(self, rpc: int, status: int, data: int, private: int) -> None:
        handler = self._waiting.pop(private or 0, None)
        if handler is not None:
            handler(status, data)

    def _call(self, procedure: str, args: ctypes.Structure, read: Callable[[Any], Any]) -> Any:
        """Send one NFSv3 procedure, service the socket until its reply, return `read(reply)`."""
        function = getattr(self._lib, f"rpc_nfs3_{procedure}_async")
        return self._send(
            procedure, lambda i: function(self._rpc, self._callback, ctypes.byref(args), i), read
        )

    def _send(
        self,
        procedure: str,
        start: Callable[[int], int],
        read: Callable[[Any], Any],
        *,
        checked: bool = True,
    ) -> Any:
        """`start(call_id)` sends a call; wait for its callback and return `read(data)`. When
        `checked`, data is a reply whose first field is its status (0 is success)."""
        call_id = next(self._ids)
        outcome: list[Any] = []

        def complete(status: int, data: int) -> None:
            try:
                settle(status, data)
            except Exception as exc:  # an exception cannot cross back into C: keep it here
                outcome.append(NfsError(errno.EIO, f"{procedure}: unreadable reply ({exc})"))

        def settle(status: int, data: int) -> None:
            if status != RPC_STATUS_SUCCESS:
                code = errno.EINTR if status == RPC_STATUS_TIMEOUT else errno.EIO
                text = (ctypes.cast(data, _S).value if data else None) or b"rpc failed"
                outcome.append(NfsError(code, f"{procedure}: {text.decode(errors='replace')}"))
                return
            reply = ctypes.cast(data, ctypes.POINTER(ctypes.c_int))
            if checked and reply.contents.value != 0:
                nfsstat = reply.contents.value
                code = _ERRNO.get(nfsstat, errno.EIO)
                name = errno.errorcode.get(code, str(code))
                outcome.append(NfsError(code, f"{procedure}: NFS3 status {nfsstat} ({name})"))
                return
            outcome.append(read(data))

        self._waiting[call_id] = complete
        if start(call_id) != 0:
            self._waiting.pop(call_id, None)
            raise NfsError(errno.EIO, f"{procedure}: {self._rpc_error()}")
        self._wait(outcome, procedure)
        result = outcome[0]
        if isinstance(result, NfsError):
            raise result
        return result

    def _wait(self, outcome: list[Any], procedure: str) -> None:
        deadline = time.monotonic() + self._timeout
        while not outcome:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise NfsError(errno.EINTR, f"{procedure}: no reply within {self._timeout:.0f} s")
            revents = self._poll(min(remaining, 0.1))
            if self._lib.rpc_service(self._rpc, revents) < 0 and not outcome:
                raise NfsError(errno.EIO, f"{procedure}: {self._rpc_error()}")

    def _poll(self, seconds: float) -> int:
        """Wait for the socket events libnfs asks for; the poller is kept between calls."""
        fd = self._lib.rpc_get_fd(self._rpc)
        if fd < 0:  # reconnecting: let rpc_service drive it
            time.sleep(min(seconds, 0.01))
            return 0
        events = self._lib.rpc_which_events(self._rpc)
        if (fd, events) != self._registered:
            if self._registered is not None and self._registered[0] == fd:
                self._poller.modify(fd, events)
            else:
                if self._registered is not None:
                    with contextlib.suppress(KeyError):
                        self._poller.unregister(self._registered[0])
                self._poller.register(fd, events)
            self._registered = (fd, events)
        ready = self._poller.poll(seconds * 1000)
        return ready[0][1] if ready else 0

    def _rpc_error(self) -> str:
        message = self._lib.rpc_get_error(self._rpc)
        return message.decode(errors="replace") if message else "rpc failed"


def mount_root(
    server: bytes, export: bytes, *, port: int | None, uid: int, gid: int, timeout_s: float
) -> bytes:
    """The export's root handle from the MOUNT service (MNT), on a connection of its own made
    as `uid`/`gid` to `port` (else the one the portmapper names), closed before returning."""
    lib = _raw_library()
    rpc = lib.rpc_init_context()
    if not rpc:
        raise NfsError(errno.ENOMEM, "rpc_init_context failed")
    try:
        lib.rpc_set_uid(rpc, uid)
        lib.rpc_set_gid(rpc, gid)
        channel = _Rpc(rpc, timeout_s=timeout_s)
        callback = channel._callback
        if port is None:
            connect = functools.partial(
                lib.rpc_connect_program_async, rpc, server, MOUNT_PROGRAM, MOUNT_V3, callback
            )
        else:
            connect = functools.partial(
                lib.rpc_connect_port_async, rpc, server, port, MOUNT_PROGRAM, MOUNT_V3, callback
            )
        channel._send("mount connect", connect, lambda data: None, checked=False)

        def read(data: int) -> bytes:
            res = ctypes.cast(data, ctypes.POINTER(MountRes)).contents
            return ctypes.string_at(res.handle.val, res.handle.len)

        mnt = functools.partial(lib.rpc_mount3_mnt_async, rpc, callback, export)
        return channel._send("mnt", mnt, read)  # type: ignore[no-any-return]
    finally:
        lib.rpc_destroy_context(rpc)


class Nfs3(_Rpc):
    """Procedures by handle on one context (not thread-safe, like the context itself).
    `root`: the export's root handle when the caller has it (see mount_root)."""

    def __init__(self, context: NfsContext, *, timeout_s: float, root: bytes | None = None) -> None:
        lib = _raw_library()
        super().__init__(lib.nfs_get_rpc_context(context.handle), timeout_s=timeout_s)
        self._context = context
        self.write_max = int(self._lib.nfs_get_writemax(context.handle)) or 64 * 1024
        self.root = root if root is not None else self._root_handle()

    def _root_handle(self) -> bytes:
        """The export's root handle: libnfs keeps it private, but hands it out for an open
        (which needs read permission on the root: mount_root needs none)."""
        fh = _P()
        result = self._lib.nfs_open(self._context.handle, b"/", 0, ctypes.byref(fh))
        self._context.check(result, "open /")
        try:
            raw = self._lib.nfs_get_fh(fh).contents
            return ctypes.string_at(raw.val, raw.len)
        finally:
            self._context.close_file(fh.value or 0)

    def lookup(self, directory: bytes, name: bytes) -> tuple[bytes, Attributes | None]:
        """LOOKUP: the handle of `name` in `directory`, and its attributes when sent along."""
        args = DirOpArgs3(_fh(directory), name)

        def read(data: int) -> tuple[bytes, Attributes | None]:
            res = ctypes.cast(data, ctypes.POINTER(LookupRes)).contents
            handle = ctypes.string_at(res.object.val, res.object.len)
            attrs = res.obj_attributes
            return handle, (_attributes(attrs.attributes) if attrs.follows else None)

        return self._call("lookup", args, read)  # type: ignore[no-any-return]

    def getattr(self, handle: bytes) -> Attributes:
        def read(data: int) -> Attributes:
            return _attributes(ctypes.cast(data, ctypes.POINTER(GetattrRes)).contents.attributes)

        return self._call("getattr", _fh(handle), read)  # type: ignore[no-any-return]

    def readlink(self, handle: bytes) -> bytes:
        """READLINK: the target a symbolic link holds, as the server stores it."""

        def read(data: int) -> bytes:
            return ctypes.cast(data, ctypes.POINTER(ReadlinkRes)).contents.data or b""

        return self._call("readlink", _fh(handle), read)  # type: ignore[no-any-return]

    def create_guarded(self, directory: bytes, name: bytes, mode: int) -> bytes | None:
        """CREATE, failing with EEXIST if `name` exists; the new handle when the server sends it."""
        args = CreateArgs(DirOpArgs3(_fh(directory), name), GUARDED, Sattr3(set_mode=1, mode=mode))

        def read(data: int) -> bytes | None:
            res = ctypes.cast(data, ctypes.POINTER(CreateRes)).contents
            obj = res.obj
            return ctypes.string_at(obj.handle.val, obj.handle.len) if obj.follows else None

        return self._call("create", args, read)  # type: ignore[no-any-return]

    def write_sync(self, handle: bytes, offset: int, data: bytes) -> int:
        """WRITE FILE_SYNC: returns the count the server wrote and committed to stable storage."""
        buffer = ctypes.c_char_p(data)  # libnfs copies it into the request before returning
        pointer = ctypes.cast(buffer, _P)
        args = WriteArgs(_fh(handle), offset, len(data), FILE_SYNC, len(data), pointer)

        def read(data_: int) -> tuple[int, int]:
            res = ctypes.cast(data_, ctypes.POINTER(WriteRes)).contents
            return res.count, res.committed

        count, committed = self._call("write", args, read)
        if committed != FILE_SYNC:
            raise NfsError(errno.EIO, f"write: committed as {committed}, not FILE_SYNC")
        return int(count)

    def rename(self, source_dir: bytes, source: bytes, target_dir: bytes, target: bytes) -> None:
        args = RenameArgs(DirOpArgs3(_fh(source_dir), source), DirOpArgs3(_fh(target_dir), target))
        self._call("rename", args, lambda data: None)

    def remove(self, directory: bytes, name: bytes) -> None:
        self._call("remove", DirOpArgs3(_fh(directory), name), lambda data: None)
