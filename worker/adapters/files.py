"""Write a file beside another, atomically, on any file store; errno values become our errors.

The one sequence both stores (libnfs and a mounted directory) run, in a worker thread:
stat the source, render, remove what interrupted attempts left under their temporary names,
create this attempt's temporary name exclusively, write every byte, flush, close, rename it
over the final name. A reader sees the old sidecar or the new one, never a partial one.
"""

from __future__ import annotations

import contextlib
import errno
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar

from worker.errors import JobError, PermanentError, RetryableError

H = TypeVar("H")

# The server or the connection failed: retry later, and open a fresh connection first.
CONNECTION_ERRNOS = frozenset(
    {
        errno.EINTR,  # libnfs: "Command timed out"
        errno.EIO,  # libnfs: socket closed, service failed; NFS3ERR_IO
        errno.ETIMEDOUT,
        errno.ECONNREFUSED,
        errno.ECONNRESET,
        errno.ECONNABORTED,
        errno.EPIPE,
        errno.ENOTCONN,
        errno.EHOSTUNREACH,
        errno.ENETUNREACH,
        errno.ESHUTDOWN,
        errno.EBADF,  # our context was closed under the call (shutdown)
    }
)
# No retry can fix these.
PERMANENT_ERRNOS = frozenset(
    {
        errno.ENAMETOOLONG,
        errno.EINVAL,
        errno.EISDIR,
        errno.EROFS,
        errno.ELOOP,
        errno.EFBIG,
        errno.EMLINK,
        errno.EXDEV,
    }
)
DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM})
MISSING_ERRNOS = frozenset({errno.ENOENT, errno.ENOTDIR})

Step = Literal["reading", "writing"]


@dataclass(frozen=True)
class FileFacts:
    """What a stat tells about the source file (times in nanoseconds since the epoch)."""

    size: int
    mtime_ns: int
    ctime_ns: int
    is_directory: bool


@dataclass(frozen=True)
class Placement:
    """Where to write, as paths relative to the store's root (`a/b/x.dat`, no leading slash)."""

    source: str
    target: str
    temporary: str
    leftovers: tuple[str, ...] = ()  # temporary names interrupted attempts may have left


Render = Callable[[FileFacts], bytes]


class FileOps(Protocol[H]):
    """Blocking file operations on one store; each raises OSError (errno set) on failure."""

    def stat(self, path: str) -> FileFacts: ...
    def create_exclusive(self, path: str) -> H: ...
    def write_all(self, handle: H, data: bytes) -> None: ...
    def flush(self, handle: H) -> None: ...
    def close(self, handle: H) -> None: ...
    def rename(self, old: str, new: str) -> None: ...
    def unlink(self, path: str) -> None: ...


class SidecarStore(Protocol):
    """An async store the sidecar job writes through (libnfs or a mounted directory)."""

    async def write_beside(self, place: Placement, render: Render) -> FileFacts: ...


def write_beside(ops: FileOps[H], place: Placement, render: Render, *, identity: str) -> FileFacts:
    """Stat `place.source`, then atomically replace `place.target` with `render(facts)`."""
    try:
        facts = ops.stat(place.source)
    except OSError as exc:
        raise translate(exc, "reading", place.source, identity) from exc
    if facts.is_directory:
        raise PermanentError(f"{place.source!r} is a directory, not a file")
    data = render(facts)
    for leftover in place.leftovers:
        _remove_quietly(ops, leftover)  # ENOENT, the usual answer, included
    try:
        handle = _create_fresh(ops, place.temporary)
    except OSError as exc:
        raise translate(exc, "writing", place.temporary, identity) from exc
    try:
        try:
            ops.write_all(handle, data)
            ops.flush(handle)
        except OSError:
            _quietly(lambda: ops.close(handle))
            raise
        ops.close(handle)  # a failed close means the bytes may not be there: checked too
        ops.rename(place.temporary, place.target)
    except OSError as exc:
        if exc.errno not in CONNECTION_ERRNOS:  # reachable: clean up now, not on the retry
            _quietly(lambda: ops.unlink(place.temporary))
        raise translate(exc, "writing", place.target, identity) from exc
    return facts


def _create_fresh(ops: FileOps[H], path: str) -> H:
    """Create `path` exclusively; a file already there is an interrupted attempt's: replace it."""
    try:
        return ops.create_exclusive(path)
    except FileExistsError:
        pass
    except OSError as exc:
        if exc.errno != errno.EEXIST:
            raise
    try:
        ops.unlink(path)
    except OSError as exc:
        if exc.errno != errno.ENOENT:  # gone already: a concurrent attempt took it
            raise
    return ops.create_exclusive(path)


def _remove_quietly(ops: FileOps[H], path: str) -> None:
    with contextlib.suppress(OSError):
        ops.unlink(path)


def _quietly(action: Callable[[], object]) -> None:
    """Best effort: the error being raised already says what went wrong."""
    with contextlib.suppress(OSError):
        action()


def is_connection_error(exc: OSError) -> bool:
    return exc.errno in CONNECTION_ERRNOS


def translate(exc: OSError, step: Step, path: str, identity: str) -> JobError:
    """One failed file operation as a RetryableError or a PermanentError that says why."""
    code = exc.errno if exc.errno is not None else errno.EIO
    name = errno.errorcode.get(code, str(code))
    detail = exc.strerror or str(exc)
    if code in MISSING_ERRNOS and step == "reading":
        return PermanentError(f"no such file: {path!r} ({name})")
    if code in DENIED_ERRNOS:
        return PermanentError(f"permission denied {step} {path!r} as {identity} ({name})")
    if code in PERMANENT_ERRNOS:
        return PermanentError(f"{step} {path!r} cannot succeed: {detail}")
    if code in CONNECTION_ERRNOS:
        return RetryableError(f"file server unavailable while {step} {path!r}: {detail}")
    return RetryableError(f"{step} {path!r} failed: {detail}")
