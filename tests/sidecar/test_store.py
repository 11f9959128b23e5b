"""The sidecar handler against a real ganesha export (libnfs) and a plain directory (SIDECAR_ROOT).

Each test runs for both destinations unless it is about the NFS server itself.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
import warnings
from datetime import UTC, datetime
from functools import partial
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from tests.sidecar.conftest import (
    NFS_TIMEOUT_MS,
    Destination,
    SidecarRunner,
    nfs_destination,
    read_sidecar,
    snapshot,
    temporaries,
)
from tests.support.ganesha import Ganesha
from tests.support.ports import free_port
from worker.adapters.beneath import LocalRoot
from worker.adapters.files import write_beside
from worker.adapters.libnfs import NfsContext, NfsError
from worker.adapters.localfs import LocalOps
from worker.adapters.nfs3 import Nfs3, mount_root
from worker.errors import PermanentError, RetryableError
from worker.handlers.sidecar_job import SidecarRequest, placement, render_sidecar, temporary_name
from worker.jobs import MessageFacts
from worker.settings import SidecarSettings


def iso(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    moment = datetime.fromtimestamp(seconds, tz=UTC).replace(microsecond=rest // 1000)
    return moment.isoformat(timespec="microseconds")


def make_file(root: Path, relative: str, data: bytes = b"payload\n") -> Path:
    path = root / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_sidecar_appears_beside_the_file_with_exact_content(
    destination: Destination, sidecars: SidecarRunner
) -> None:
    source = make_file(destination.root, "runs/7/scan.tar.gz", b"x" * 4321)
    written = sidecars.job("/runs/7/scan.tar.gz", results="QC passed: 99.2% ✓", message_id="m-42")
    st = os.stat(source)
    sidecar = destination.root / "runs/7/scan.tar-sidecar.json"
    assert written == "runs/7/scan.tar-sidecar.json"
    assert (
        sidecar.read_bytes()
        == (
            "{\n"
            '  "filename": "/runs/7/scan.tar.gz",\n'
            '  "path": "/runs/7/scan.tar.gz",\n'
            '  "size": 4321,\n'
            f'  "created": "{iso(st.st_ctime_ns)}",\n'
            f'  "modified": "{iso(st.st_mtime_ns)}",\n'
            '  "results": "QC passed: 99.2% ✓",\n'
            '  "message_id": "m-42"\n'
            "}\n"
        ).encode()
    )
    assert temporaries(destination.root) == []


@pytest.mark.parametrize(
    "filename",
    ["../outside.txt", "/../outside.txt", "a/../../outside.txt", "..", "", "/", "a/\x00.txt"],
)
def test_names_leaving_the_root_write_nothing_anywhere(
    destination: Destination, sidecars: SidecarRunner, filename: str
) -> None:
    world = destination.root.parent
    make_file(world, "outside.txt")  # what `..` would reach: it must stay untouched
    make_file(destination.root, "a/.txt")
    before = snapshot(world)
    with pytest.raises(PermanentError):
        sidecars.job(filename)
    assert snapshot(world) == before


def test_a_missing_file_is_a_permanent_error(
    destination: Destination, sidecars: SidecarRunner
) -> None:
    with pytest.raises(PermanentError, match=r"no such file: 'nope/missing\.dat'"):
        sidecars.job("nope/missing.dat")
    assert snapshot(destination.root) == {}


def test_a_directory_is_not_a_file(destination: Destination, sidecars: SidecarRunner) -> None:
    (destination.root / "folder").mkdir()
    with pytest.raises(PermanentError, match="is a directory"):
        sidecars.job("folder")
    assert snapshot(destination.root) == {"folder": None}


def test_a_redelivered_job_rewrites_the_same_bytes(
    destination: Destination, sidecars: SidecarRunner
) -> None:
    make_file(destination.root, "f.dat")
    sidecars.job("f.dat", message_id="m-1")
    first = (destination.root / "f-sidecar.json").read_bytes()
    sidecars.job("f.dat", message_id="m-1")
    assert (destination.root / "f-sidecar.json").read_bytes() == first


def test_a_new_sidecar_replaces_the_old_one(
    destination: Destination, sidecars: SidecarRunner
) -> None:
    make_file(destination.root, "f.dat")
    sidecars.job("f.dat", results="first", message_id="m-1")
    sidecars.job("f.dat", results="second", message_id="m-2")
    assert read_sidecar(destination.root / "f-sidecar.json")["results"] == "second"
    assert sorted(p.name for p in destination.root.iterdir()) == ["f-sidecar.json", "f.dat"]


def test_a_retry_removes_what_an_interrupted_attempt_left(
    destination: Destination, sidecars: SidecarRunner
) -> None:
    make_file(destination.root, "d/f.dat")
    leftovers = [
        destination.root / "d" / temporary_name("f-sidecar.json", "m-7", n) for n in (1, 2)
    ]
    for leftover in leftovers:
        leftover.write_bytes(b'{"half": "writ' * 1000)  # attempts killed mid-write
    sidecars.job("d/f.dat", results="done", message_id="m-7", attempt=3)
    assert not any(leftover.exists() for leftover in leftovers)
    assert read_sidecar(destination.root / "d/f-sidecar.json")["results"] == "done"
    assert temporaries(destination.root) == []


class PausingOps(LocalOps):
    """Local file operations that stop halfway through writing until `resume` is set."""

    def __init__(self, root: str) -> None:
        super().__init__(LocalRoot(root, label="the test root"))
        self.halfway, self.resume = threading.Event(), threading.Event()

    def write_all(self, handle: int, data: bytes) -> None:
        super().write_all(handle, data[: len(data) // 2])
        self.halfway.set()
        assert self.resume.wait(10)
        super().write_all(handle, data[len(data) // 2 :])


def test_an_attempt_thought_dead_never_publishes_the_next_attempts_half_written_file(
    tmp_path: Path,
) -> None:
    """A frozen worker's lease lapses, SQS hands the message to a second attempt, and then
    the first wakes up and finishes: whatever it does, the sidecar is never partial."""
    make_file(tmp_path, "d/f.dat")
    request = SidecarRequest.parse({"filename": "d/f.dat", "results": "r" * 100_000})
    render = partial(render_sidecar, request, message_id="m-9")
    first, second = PausingOps(str(tmp_path)), PausingOps(str(tmp_path))
    attempts = {}

    def attempt(ops: PausingOps, count: int) -> None:
        place = placement(request, MessageFacts(message_id="m-9", receive_count=count))
        try:
            write_beside(ops, place, render, identity="test")
            attempts[count] = "published"
        except RetryableError as exc:
            attempts[count] = str(exc)

    threads = [
        threading.Thread(target=attempt, args=(first, 1)),
        threading.Thread(target=attempt, args=(second, 2)),
    ]
    threads[0].start()
    assert first.halfway.wait(10)
    threads[1].start()
    assert second.halfway.wait(10)  # the second attempt is halfway through its own file

    first.resume.set()  # the first wakes up and finishes
    threads[0].join(10)
    sidecar = tmp_path / "d" / "f-sidecar.json"
    assert not sidecar.exists() or read_sidecar(sidecar)["results"] == "r" * 100_000

    second.resume.set()
    threads[1].join(10)
    assert attempts[2] == "published"
    assert read_sidecar(sidecar)["results"] == "r" * 100_000
    assert temporaries(tmp_path) == []


def test_many_concurrent_jobs_each_get_their_sidecar(
    destination: Destination, sidecars: SidecarRunner
) -> None:
    for i in range(200):
        make_file(destination.root, f"batch/{i:03}.dat", b"y" * i)

    async def all_jobs() -> None:
        jobs = (sidecars.ajob(f"batch/{i:03}.dat", message_id=f"m{i}") for i in range(200))
        await asyncio.gather(*jobs)

    sidecars.loop.run(all_jobs())
    for i in range(200):
        document = read_sidecar(destination.root / f"batch/{i:03}-sidecar.json")
        assert (document["size"], document["message_id"]) == (i, f"m{i}")
    assert temporaries(destination.root) == []


def test_a_symlink_cannot_lead_a_write_out_of_sidecar_root(world: Path) -> None:
    outside = make_file(world, "elsewhere/f.dat").parent
    (world / "root" / "link").symlink_to(outside)
    runner = SidecarRunner(SidecarSettings(root=str(world / "root")))
    try:
        with pytest.raises(PermanentError, match="outside SIDECAR_ROOT"):
            runner.job("link/f.dat")
    finally:
        runner.close()
    assert sorted(p.name for p in outside.iterdir()) == ["f.dat"]


# --- about the NFS server itself ---------------------------------------------------------


@pytest.mark.nfs
def test_a_path_through_a_symlink_is_followed_inside_the_export(ganesha: Ganesha) -> None:
    make_file(ganesha.export_dir, "real/f.dat")
    (ganesha.export_dir / "link").symlink_to("real")
    runner = SidecarRunner(nfs_destination(ganesha).options)
    try:
        runner.job("link/f.dat", results="via link")
    finally:
        runner.close()
    assert read_sidecar(ganesha.export_dir / "real/f-sidecar.json")["results"] == "via link"


@pytest.mark.nfs
def test_a_directory_replaced_under_a_cached_handle_is_looked_up_again(ganesha: Ganesha) -> None:
    make_file(ganesha.export_dir, "d/f.dat", b"old")
    runner = SidecarRunner(nfs_destination(ganesha).options)
    try:
        runner.job("d/f.dat", message_id="m-1")  # caches the handle of d
        replace_directory_over_nfs(ganesha.url(), "d", "f.dat", b"newer")
        runner.job("d/f.dat", message_id="m-2")  # the cached handle is stale now
    finally:
        runner.close()
    assert read_sidecar(ganesha.export_dir / "d/f-sidecar.json")["size"] == 5


def replace_directory_over_nfs(url: str, directory: str, name: str, data: bytes) -> None:
    """Remove and recreate a directory through another NFS client (the PyPI binding), so the
    server itself sees the change (ganesha caches what it served, as servers do)."""
    with warnings.catch_warnings():  # the 2016 binding imports the deprecated `imp`
        warnings.simplefilter("ignore", DeprecationWarning)
        import libnfs

    client = libnfs.NFS(url)
    raw = client._nfs
    for entry in client.listdir(f"/{directory}"):
        if entry not in (".", ".."):
            assert libnfs.libnfs.nfs_unlink(raw, f"/{directory}/{entry}") == 0
    assert libnfs.libnfs.nfs_rmdir(raw, f"/{directory}") == 0
    assert libnfs.libnfs.nfs_mkdir(raw, f"/{directory}") == 0
    handle = client.open(f"/{directory}/{name}", "wb")
    handle.write(bytearray(data))
    handle.close()
    del client


@pytest.mark.nfs
def test_permission_denied_names_the_uid_and_gid(ganesha: Ganesha) -> None:
    os.chmod(ganesha.export_dir, 0o755)
    make_file(ganesha.export_dir, "f.dat")
    runner = SidecarRunner(nfs_destination(ganesha, uid=65534, gid=65533).options)
    try:
        with pytest.raises(PermanentError, match=r"permission denied .* as uid=65534 gid=65533"):
            runner.job("f.dat")
    finally:
        runner.close()
    assert not (ganesha.export_dir / "f-sidecar.json").exists()


def established_to(port: int) -> int:
    """TCP connections of this machine in ESTABLISHED state whose remote end is 127.0.0.1:port."""
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        remote, state = fields[2], fields[3]
        if state == "01" and remote == f"0100007F:{port:04X}":
            count += 1
    return count


@pytest.mark.nfs
def test_connections_are_opened_once_reused_and_closed_at_exit(ganesha: Ganesha) -> None:
    for i in range(60):
        make_file(ganesha.export_dir, f"f{i}.dat")
    options = nfs_destination(ganesha).options  # four connections
    runner = SidecarRunner(options)

    async def sixty_jobs() -> None:
        await asyncio.gather(*(runner.ajob(f"f{i}.dat", message_id=f"m{i}") for i in range(60)))

    try:
        runner.loop.run(sixty_jobs())
        assert 1 <= established_to(ganesha.nfs_port) <= options.nfs_connections
    finally:
        runner.close()
    assert established_to(ganesha.nfs_port) == 0


def unreadable_root(ganesha: Ganesha) -> SidecarRunner:
    """A runner as uid 65534 on an export whose root it may pass through (711), not read."""
    os.chmod(ganesha.export_dir, 0o711)
    make_file(ganesha.export_dir, "open/f.dat")
    os.chmod(ganesha.export_dir / "open", 0o777)
    ganesha.restart()  # so that it serves the new modes, not the ones it cached at start
    return SidecarRunner(nfs_destination(ganesha, uid=65534, gid=65534).options)


@pytest.mark.nfs
def test_an_export_root_we_may_not_list_still_takes_sidecars_below_it(ganesha: Ganesha) -> None:
    runner = unreadable_root(ganesha)
    try:
        with capture_logs() as logs:
            runner.job("open/f.dat", results="root handle from MOUNT")
    finally:
        runner.close()
    assert [e["event"] for e in logs].count("nfs.root_not_readable") == 1
    sidecar = read_sidecar(ganesha.export_dir / "open/f-sidecar.json")
    assert sidecar["results"] == "root handle from MOUNT"


@pytest.mark.nfs
def test_below_a_root_we_may_not_list_links_still_stay_in_the_export(
    ganesha: Ganesha, world: Path
) -> None:
    (world / "secret.bin").write_bytes(b"s" * 42)
    (ganesha.export_dir / "open").mkdir()
    (ganesha.export_dir / "open" / "out.bin").symlink_to(world / "secret.bin")
    (ganesha.export_dir / "open" / "up.bin").symlink_to("../../secret.bin")
    runner = unreadable_root(ganesha)
    try:
        for name in ("open/out.bin", "open/up.bin"):
            with pytest.raises(PermanentError, match="leads outside the export"):
                runner.job(name)
    finally:
        runner.close()
    assert sorted(p.name for p in (ganesha.export_dir / "open").iterdir()) == [
        "f.dat",
        "out.bin",
        "up.bin",
    ]


@pytest.mark.nfs
def test_the_root_handle_from_mount_is_the_one_libnfs_mounted(ganesha: Ganesha) -> None:
    context = NfsContext(ganesha.url(), timeout_ms=NFS_TIMEOUT_MS)
    try:
        by_open = Nfs3(context, timeout_s=2).root
        by_mount = mount_root(
            context.server,
            context.export.encode(),
            port=ganesha.mnt_port,
            uid=os.getuid(),
            gid=os.getgid(),
            timeout_s=2,
        )
    finally:
        context.close()
    assert by_mount == by_open


@pytest.mark.nfs
def test_a_mount_service_that_is_down_fails_the_root_lookup_in_time(ganesha: Ganesha) -> None:
    closed = free_port()
    started = time.monotonic()
    with pytest.raises(NfsError):
        mount_root(b"127.0.0.1", b"/x", port=closed, uid=0, gid=0, timeout_s=2)
    assert time.monotonic() - started < 3


@pytest.mark.nfs
def test_a_server_that_is_down_is_retryable(ganesha: Ganesha) -> None:
    make_file(ganesha.export_dir, "f.dat")
    runner = SidecarRunner(nfs_destination(ganesha).options)
    try:
        ganesha.stop()
        with pytest.raises(RetryableError, match=r"cannot mount nfs://127\.0\.0\.1/"):
            runner.job("f.dat")
    finally:
        runner.close()


@pytest.mark.nfs
def test_a_connection_is_reused_then_reopened_after_a_server_restart(ganesha: Ganesha) -> None:
    make_file(ganesha.export_dir, "f.dat")
    runner = SidecarRunner(nfs_destination(ganesha).options)
    try:
        runner.job("f.dat", message_id="m-1")
        ganesha.kill()
        with pytest.raises(RetryableError):
            runner.job("f.dat", message_id="m-2")
        ganesha.start()
        runner.job("f.dat", message_id="m-3")
    finally:
        runner.close()
    assert read_sidecar(ganesha.export_dir / "f-sidecar.json")["message_id"] == "m-3"


@pytest.mark.nfs
def test_the_event_loop_keeps_running_while_an_nfs_call_waits(ganesha: Ganesha) -> None:
    """A frozen server makes the NFS call wait; the loop must still run other tasks meanwhile.

    Were the call holding the GIL (or running on the loop), the sleeps below could not finish
    before the call itself ended, by its timeout, and the job would be done by then.
    """
    make_file(ganesha.export_dir, "f.dat")
    runner = SidecarRunner(nfs_destination(ganesha).options)

    async def scenario() -> list[int]:
        await runner.ajob("f.dat", message_id="warm-up")  # mount before freezing
        ganesha.pause()
        job = asyncio.create_task(runner.ajob("f.dat", results="late", message_id="m-2"))
        ticks = []
        for tick in range(10):
            await asyncio.sleep(0.05)
            assert not job.done(), "the NFS call ended while the server was frozen"
            ticks.append(tick)
        ganesha.resume()
        await job
        return ticks

    try:
        assert runner.loop.run(scenario()) == list(range(10))
    finally:
        ganesha.resume()
        runner.close()
    assert read_sidecar(ganesha.export_dir / "f-sidecar.json")["results"] == "late"
