"""Sidecar writes per second: our sidecar job code beside the reference design, on real ganesha.

    .venv/bin/python bench/sidecar.py                   # 2,000 jobs per run (about a minute)
    .venv/bin/python bench/sidecar.py --jobs 500 --repeat 3 --alternatives

Every run writes one sidecar for each of N fresh files on a loopback nfs-ganesha export:
  reference  the known design: a new mount per message (PyPI libnfs binding), stat, write the
             sidecar in place, close (which COMMITs), one message at a time;
  ours       worker.handlers.sidecar_job with its libnfs store, as the worker runs it with its
             defaults: 16 jobs in flight (WORKER_CONCURRENCY) over 16 reused connections
             (SIDECAR_NFS_CONNECTIONS), temporary file + FILE_SYNC write + rename;
  floor      the same bytes written with plain local-file calls into the exported directory
             (no NFS, no fsync): what no NFS client can beat;
  processes  (--alternatives) the other design the issue allows: a pool of processes, each
             owning one PyPI-binding context, running our atomic sequence.
Then reference and ours again through bench/latency_proxy.py, which adds 1 ms of round trip.
sidecars/s = N / wall time of the run; CPU columns: each process's CPU over the run (100% =
one core; "client" is this process, which runs reference, ours and floor alike).
Exit status 0 when both targets are met.

    .venv/bin/python bench/sidecar.py --paths --jobs 1000 --repeat 3

compares instead, bare and through the proxy, two ways of writing the same sidecars with the
same job code, 16 in flight over 16 reused contexts, runs alternating (ABBA):
  handles    ours: NFSv3 procedures by file handle (nfs3.py), directory handles cached;
  paths      libnfs's path calls on the same kind of reused context (nfs_stat64, nfs_create
             O_SYNC, nfs_pwrite, nfs_close, nfs_rename), each walking the path itself.
It prints sidecars/s, client CPU ms per sidecar and, through the proxy (which counts the RPC
calls that pass), NFS round trips per sidecar.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import socket
import statistics
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import structlog

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support.ganesha import Ganesha, free_port  # noqa: E402 - after the path fix
from worker.adapters import libnfs as binding  # noqa: E402
from worker.adapters.files import FileFacts, Placement, Render, write_beside  # noqa: E402
from worker.adapters.nfs import NfsStore, identity_of  # noqa: E402
from worker.handlers.sidecar_job import (  # noqa: E402
    SidecarJob,
    SidecarRequest,
    render_sidecar,
    sidecar_name,
)
from worker.jobs import Job, MessageFacts  # noqa: E402
from worker.metrics import Metrics  # noqa: E402

RESULTS = "QC passed; 12 findings; model v3.2 " * 4
IN_FLIGHT = 16
TARGETS = {"bare": 3.0, "latency": 8.0}


def prepare(export: Path, run: str, count: int) -> list[str]:
    """N fresh source files under export/run/, named as upstream systems would announce them."""
    (export / run).mkdir()
    for i in range(count):
        (export / run / f"scan-{i:05}.raw").write_bytes(b"\0" * (100 + i % 900))
    return [f"{run}/scan-{i:05}.raw" for i in range(count)]


def sidecar_bytes(name: str, size: int, ctime_ns: int, mtime_ns: int, message_id: str) -> bytes:
    request = SidecarRequest.parse({"filename": name, "results": RESULTS})
    facts = FileFacts(size=size, mtime_ns=mtime_ns, ctime_ns=ctime_ns, is_directory=False)
    return render_sidecar(request, facts, message_id=message_id)


def sidecar_path(name: str) -> str:
    directory, _, base = name.rpartition("/")
    return f"/{directory}/{sidecar_name(base)}"


def reference(url: str, names: list[str]) -> None:
    import libnfs  # the PyPI binding, as the reference design uses it

    for i, name in enumerate(names):
        nfs = libnfs.NFS(url)
        st = nfs.stat("/" + name)
        ctime = st["ctime"]["sec"] * 10**9 + st["ctime"]["nsec"]
        mtime = st["mtime"]["sec"] * 10**9 + st["mtime"]["nsec"]
        data = sidecar_bytes(name, st["size"], ctime, mtime, f"m{i}")
        handle = nfs.open(sidecar_path(name), "wb")
        handle.write(bytearray(data))
        handle.close()
        del nfs  # the binding destroys its context (and connection) here


async def ours(url: str, names: list[str], connections: int, lags: list[float]) -> None:
    store = NfsStore(url, connections=connections, timeout_ms=5000)
    job = SidecarJob(store, Metrics.off())
    slots = asyncio.Semaphore(IN_FLIGHT)
    loop = asyncio.get_running_loop()
    running = True

    async def ticker() -> None:  # how late the event loop wakes: it must stay small
        while running:
            before = loop.time()
            await asyncio.sleep(0.005)
            lags.append(loop.time() - before - 0.005)

    async def one(i: int, name: str) -> None:
        async with slots:
            payload = {"filename": name, "results": RESULTS}
            facts = MessageFacts(message_id=f"m{i}", receive_count=1)
            await job(Job(kind="sidecar", payload=payload), facts)

    watch = asyncio.create_task(ticker())
    try:
        await asyncio.gather(*(one(i, name) for i, name in enumerate(names)))
    finally:
        running = False
        await watch
        await store.close()


class PathCalls:
    """files.FileOps by libnfs path call on one context: each call walks its path anew."""

    FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_SYNC  # every WRITE FILE_SYNC

    def __init__(self, context: binding.NfsContext) -> None:
        self._nfs = context

    def stat(self, path: str) -> FileFacts:
        st = self._nfs.stat(b"/" + path.encode())
        return FileFacts(st.size, st.mtime_ns, st.ctime_ns, (st.mode & 0o170000) == 0o040000)

    def create_exclusive(self, path: str) -> int:
        return self._nfs.create(b"/" + path.encode(), self.FLAGS, 0o644)

    def write_all(self, handle: int, data: bytes) -> None:
        self._nfs.write_all(handle, data)

    def flush(self, handle: int) -> None:
        pass

    def close(self, handle: int) -> None:
        self._nfs.close_file(handle)

    def rename(self, old: str, new: str) -> None:
        self._nfs.rename(b"/" + old.encode(), b"/" + new.encode())

    def unlink(self, path: str) -> None:
        self._nfs.unlink(b"/" + path.encode())


class PathCallStore:
    """A SidecarStore like NfsStore (a context per thread, reused), but by path calls."""

    def __init__(self, url: str, *, connections: int, timeout_ms: int) -> None:
        self._url, self._timeout_ms, self.identity = url, timeout_ms, identity_of(url)
        self._executor = ThreadPoolExecutor(connections, thread_name_prefix="nfs-paths")
        self._local = threading.local()
        self._contexts: list[binding.NfsContext] = []

    async def write_beside(self, place: Placement, render: Render) -> FileFacts:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self._write, place, render)

    def _write(self, place: Placement, render: Render) -> FileFacts:
        context = getattr(self._local, "context", None)
        if context is None:
            context = self._local.context = binding.NfsContext(self._url, timeout_ms=5000)
            self._contexts.append(context)
        return write_beside(PathCalls(context), place, render, identity=self.identity)

    async def close(self) -> None:
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        for context in self._contexts:
            context.close()


async def by_store(store: Any, names: list[str]) -> None:
    """The sidecar job over `store`, IN_FLIGHT jobs at a time."""
    job = SidecarJob(store, Metrics.off())
    slots = asyncio.Semaphore(IN_FLIGHT)

    async def one(i: int, name: str) -> None:
        async with slots:
            payload = {"filename": name, "results": RESULTS}
            facts = MessageFacts(message_id=f"m{i}", receive_count=1)
            await job(Job(kind="sidecar", payload=payload), facts)

    try:
        await asyncio.gather(*(one(i, name) for i, name in enumerate(names)))
    finally:
        await store.close()


def floor(export: Path, names: list[str]) -> None:
    for i, name in enumerate(names):
        st = os.stat(export / name)
        data = sidecar_bytes(name, st.st_size, st.st_ctime_ns, st.st_mtime_ns, f"m{i}")
        with open(export / sidecar_path(name).lstrip("/"), "wb") as handle:
            handle.write(data)


_context: Any = None


def _process_init(url: str) -> None:
    global _context
    import libnfs

    _context = libnfs.NFS(url)


def _process_job(name: str, message_id: str) -> None:
    import libnfs.libnfs as raw

    nfs, flags = _context._nfs, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_SYNC
    st = raw.nfs_stat_64()
    if raw.nfs_stat64(nfs, "/" + name, st) < 0:
        raise OSError("stat failed")
    data = bytearray(sidecar_bytes(name, st.nfs_size, st.nfs_ctime * 10**9, 0, message_id))
    target = sidecar_path(name)
    temporary = target + f".{message_id}.spotdrain-tmp"
    handle = raw.new_NFSFileHandle()
    if raw.nfs_create(nfs, temporary, flags, 0o644, handle) < 0:
        raise OSError("create failed")
    handle = raw.NFSFileHandle_value(handle)
    if raw.nfs_write(nfs, handle, len(data), data) != len(data) or raw.nfs_close(nfs, handle):
        raise OSError("write failed")
    if raw.nfs_rename(nfs, temporary, target) < 0:
        raise OSError("rename failed")


async def processes(url: str, names: list[str], count: int) -> None:
    loop = asyncio.get_running_loop()
    with ProcessPoolExecutor(count, initializer=_process_init, initargs=(url,)) as pool:
        slots = asyncio.Semaphore(IN_FLIGHT)

        async def one(i: int, name: str) -> None:
            async with slots:
                await loop.run_in_executor(pool, _process_job, name, f"m{i}")

        await asyncio.gather(*(one(i, name) for i, name in enumerate(names)))


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def timed(action: Callable[[], None], pids: list[int], count: int) -> tuple[float, list[float]]:
    """(sidecars per second, each process's CPU use over the run: 1.0 = one whole core)."""
    cpu, start = [cpu_seconds(pid) for pid in pids], time.perf_counter()
    action()
    elapsed = time.perf_counter() - start
    return count / elapsed, [(cpu_seconds(p) - c) / elapsed for p, c in zip(pids, cpu, strict=True)]


def null_rtt_ms(port: int, rounds: int = 200) -> float:
    """Median time of an NFS NULL call on one connection to 127.0.0.1:port."""
    times = []
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for xid in range(1, rounds + 1):
            call = struct.pack(">10I", xid, 0, 2, 100003, 3, 0, 0, 0, 0, 0)
            start = time.perf_counter()
            sock.sendall(struct.pack(">I", 0x80000000 | len(call)) + call)
            reply = b""
            while len(reply) < 4 or len(reply) < 4 + (int.from_bytes(reply[:4]) & 0x7FFFFFFF):
                reply += sock.recv(4096)
            times.append(time.perf_counter() - start)
    return statistics.median(times) * 1000


class LatencyProxy:
    """bench/latency_proxy.py in its own process, in front of ganesha's NFS and MOUNT ports."""

    def __init__(self, server: Ganesha, rtt_ms: float) -> None:
        self.nfs_port, self.mnt_port = free_port(), free_port()
        pairs = [f"{self.nfs_port}:{server.nfs_port}", f"{self.mnt_port}:{server.mnt_port}"]
        script = Path(__file__).with_name("latency_proxy.py")
        self.process = subprocess.Popen(
            [sys.executable, str(script), "--rtt-ms", str(rtt_ms), *pairs],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None and self.process.stdout.readline().strip() == "ready"

    def url(self, server: Ganesha) -> str:
        return server.url().split("?")[0] + f"?nfsport={self.nfs_port}&mountport={self.mnt_port}"

    def calls(self) -> int:
        """RPC calls the proxy has passed to the server so far."""
        assert self.process.stdout is not None
        self.process.send_signal(signal.SIGUSR1)
        line = self.process.stdout.readline().split()
        assert line[0] == "calls", line
        return int(line[1])

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


def scenario(
    label: str,
    url: str,
    server: Ganesha,
    args: argparse.Namespace,
    counter: list[int],
    proxy: LatencyProxy | None = None,
) -> dict[str, list[float]]:
    rates: dict[str, list[float]] = {}
    cpu: dict[str, list[list[float]]] = {}
    pids = [os.getpid(), server.pid or 0] + ([proxy.process.pid] if proxy else [])
    lags: list[float] = []

    def record(variant: str, action: Callable[[list[str]], None]) -> None:
        counter[0] += 1
        names = prepare(server.export_dir, f"{label}-{variant}-{counter[0]}", args.jobs)
        rate, used = timed(lambda: action(names), pids, args.jobs)
        rates.setdefault(variant, []).append(rate)
        cpu.setdefault(variant, []).append(used)

    for _ in range(args.repeat):
        record("reference", lambda names: reference(url, names))
        record("ours", lambda names: asyncio.run(ours(url, names, args.connections, lags)))
        if label == "bare":
            record("floor", lambda names: floor(server.export_dir, names))
        if args.alternatives:
            record("processes", lambda names: asyncio.run(processes(url, names, args.processes)))
    base = statistics.median(rates["reference"])
    for variant, values in rates.items():
        rate = statistics.median(values)
        use = [statistics.median(run[i] for run in cpu[variant]) for i in range(len(pids))]
        print(
            f"  {variant:<11}{rate:>10.0f}/s{rate / base:>9.1f}x"
            + "".join(f"{u * 100:>11.0f}%" for u in use)
            + ("" if len(values) == 1 else f"   (runs: {', '.join(f'{v:.0f}' for v in values)})")
        )
    lags.sort()
    print(
        f"  event loop during ours: p99 wake-up lag {lags[int(len(lags) * 0.99)] * 1000:.1f} ms, "
        f"max {lags[-1] * 1000:.1f} ms"
    )
    return rates


def compare_paths(
    label: str,
    url: str,
    server: Ganesha,
    args: argparse.Namespace,
    counter: list[int],
    proxy: LatencyProxy | None = None,
) -> None:
    """handles vs paths, alternating ABBA: sidecars/s, client CPU and round trips per sidecar."""
    stores: dict[str, Callable[[], Any]] = {
        "handles": lambda: NfsStore(url, connections=args.connections, timeout_ms=5000),
        "paths": lambda: PathCallStore(url, connections=args.connections, timeout_ms=5000),
    }
    found: dict[str, list[tuple[float, float, float]]] = {name: [] for name in stores}
    for round_ in range(args.repeat):
        for variant in list(stores) if round_ % 2 == 0 else list(stores)[::-1]:
            counter[0] += 1
            names = prepare(server.export_dir, f"{label}-{variant}-{counter[0]}", args.jobs)
            calls = proxy.calls() if proxy else 0
            cpu, start = cpu_seconds(os.getpid()), time.perf_counter()
            asyncio.run(by_store(stores[variant](), names))
            elapsed, used = time.perf_counter() - start, cpu_seconds(os.getpid()) - cpu
            trips = (proxy.calls() - calls) / args.jobs if proxy else float("nan")
            found[variant].append((args.jobs / elapsed, used * 1000 / args.jobs, trips))
    for variant, runs in found.items():
        rate = statistics.median(r[0] for r in runs)
        cpu_ms = statistics.median(r[1] for r in runs)
        trips = statistics.median(r[2] for r in runs)
        print(
            f"  {variant:<9}{rate:>9.0f}/s{cpu_ms:>10.3f} ms{trips:>10.2f}"
            f"   (runs: {', '.join(f'{r[0]:.0f}' for r in runs)})"
        )
    print(f"  load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


def paths_main(args: argparse.Namespace, server: Ganesha, counter: list[int]) -> int:
    print(f"  {'':<9}{'sidecars':>10}{'CPU/sidecar':>13}{'RTs/sidecar':>12}")
    print(f"bare loopback (NFS NULL round trip {null_rtt_ms(server.nfs_port):.3f} ms)")
    compare_paths("bare", server.url(), server, args, counter)
    proxy = LatencyProxy(server, args.rtt_ms)
    try:
        print(f"through the latency proxy (NULL round trip {null_rtt_ms(proxy.nfs_port):.3f} ms)")
        compare_paths("latency", proxy.url(server), server, args, counter, proxy)
    finally:
        proxy.stop()
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description="Sidecars per second: ours vs the reference.")
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument("--connections", type=int, default=IN_FLIGHT, help="NFS contexts")
    parser.add_argument("--rtt-ms", type=float, default=1.0)
    parser.add_argument("--alternatives", action="store_true", help="also a process pool")
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--paths", action="store_true", help="handles vs libnfs path calls")
    args = parser.parse_args()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.INFO))

    work = Path(tempfile.mkdtemp(prefix="sidecar-bench-"))
    server = Ganesha(work)
    server.start()
    proxy = None
    counter = [0]
    try:
        print(f"sidecar bench: {args.jobs} jobs per run, {os.cpu_count()} cores, export {work}, "
              f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
        if args.paths:
            return paths_main(args, server, counter)
        columns = ("client CPU", "ganesha", "proxy")
        print(f"  {'':<11}{'sidecars':>11}{'vs ref':>10}" + "".join(f"{c:>12}" for c in columns))
        print(f"bare loopback (NFS NULL round trip {null_rtt_ms(server.nfs_port):.3f} ms)")
        bare = scenario("bare", server.url(), server, args, counter)
        proxy = LatencyProxy(server, args.rtt_ms)
        print(f"through the latency proxy (NULL round trip {null_rtt_ms(proxy.nfs_port):.3f} ms)")
        slow = scenario("latency", proxy.url(server), server, args, counter, proxy)
    finally:
        if proxy is not None:
            proxy.stop()
        server.stop()
    met = True
    for label, rates in (("bare", bare), ("latency", slow)):
        ratio = statistics.median(rates["ours"]) / statistics.median(rates["reference"])
        ok = ratio >= TARGETS[label]
        met &= ok
        print(f"target {label}: ours {ratio:.1f}x reference, needs {TARGETS[label]:.0f}x: "
              f"{'met' if ok else 'NOT MET'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
