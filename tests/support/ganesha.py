"""A real nfs-ganesha exporting one directory over NFSv3/TCP on 127.0.0.1, for tests and benches.

    server = Ganesha(workdir)           # picks free ports once; they stay across restarts
    server.start()                      # rpcbind if needed, then ganesha; waits until it answers
    url = server.url()                  # nfs://127.0.0.1/<export>?nfsport=..&mountport=..
    server.stop() / server.kill() / server.pause() / server.resume() / server.restart()

Signals go to the PID in ganesha's pidfile, never to a process name, so several servers (other
suites, other people's tests) can run side by side. The export is `workdir/export` unless given.
`python -m tests.support.ganesha start DIR` / `stop DIR` does the same from a shell (the demo).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Self

from tests.support.ports import free_port

NFS_PROGRAM, NFS_VERSION = 100003, 3
MOUNT_PROGRAM, MOUNT_VERSION = 100005, 3
PORTMAP_PORT = 111

CONFIG = """\
NFS_CORE_PARAM {{
    Protocols = 3; Bind_addr = 127.0.0.1;
    NFS_Port = {nfs_port}; MNT_Port = {mnt_port}; NLM_Port = {nlm_port};
    Enable_NLM = false; Enable_RQUOTA = false;
}}
NFSV4 {{ Graceless = true; RecoveryBackend = fs; RecoveryRoot = "{recovery}"; }}
EXPORT {{
    Export_Id = 1; Path = "{export}"; Pseudo = "{export}";
    Access_Type = RW; Squash = No_Root_Squash; Protocols = 3; Transports = TCP; SecType = sys;
    FSAL {{ Name = VFS; }}
}}
LOG {{ Default_Log_Level = WARN; }}
"""


def unavailable() -> str | None:
    """Why ganesha cannot run on this machine (a reason to skip), or None when it can."""
    for program in ("ganesha.nfsd", "rpcbind"):
        if shutil.which(program) is None and not Path("/usr/sbin", program).exists():
            return f"{program} is not installed (scripts/bootstrap.sh installs it)"
    if os.geteuid() != 0:
        return "nfs-ganesha needs root to serve a directory"
    return None


def ensure_rpcbind(timeout: float = 10.0) -> None:
    """Start the portmapper unless one answers already (ganesha exits without it)."""
    if _answers(PORTMAP_PORT, 100000, 2):
        return
    rpcbind = shutil.which("rpcbind") or "/usr/sbin/rpcbind"
    subprocess.run([rpcbind, "-w"], check=True, capture_output=True)  # it daemonises itself
    _wait_until(lambda: _answers(PORTMAP_PORT, 100000, 2), timeout, "rpcbind did not answer")


@dataclass
class Ganesha:
    """One ganesha process with its own config, log, pidfile and export under `workdir`."""

    workdir: Path
    export: Path | None = None
    nfs_port: int = field(default_factory=free_port)
    mnt_port: int = field(default_factory=free_port)
    nlm_port: int = field(default_factory=free_port)
    _process: subprocess.Popen[bytes] | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        self.workdir = Path(self.workdir).resolve()
        self.export = Path(self.export or self.workdir / "export").resolve()

    @property
    def export_dir(self) -> Path:
        assert self.export is not None
        return self.export

    @property
    def pidfile(self) -> Path:
        return self.workdir / "ganesha.pid"

    @property
    def logfile(self) -> Path:
        return self.workdir / "ganesha.log"

    @property
    def config(self) -> Path:
        return self.workdir / "ganesha.conf"

    def url(self, *, uid: int | None = None, gid: int | None = None, **options: object) -> str:
        """The libnfs URL of the export; the ports skip the portmapper, which others share."""
        query = {"nfsport": self.nfs_port, "mountport": self.mnt_port, **options}
        if uid is not None:
            query["uid"] = uid
        if gid is not None:
            query["gid"] = gid
        return f"nfs://127.0.0.1{self.export_dir}?" + "&".join(f"{k}={v}" for k, v in query.items())

    @property
    def pid(self) -> int | None:
        """The PID in the pidfile while that process is alive, else None."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return None
        return pid if _alive(pid) else None

    @property
    def running(self) -> bool:
        return self.pid is not None

    def start(self, timeout: float = 20.0, *, detach: bool = False, attempts: int = 3) -> None:
        """Start ganesha (and rpcbind if needed); return once NFS and MOUNT both answer.

        `detach` puts it in its own session, so it outlives the caller's terminal (the demo).
        A start that never answers is killed and tried again, on the same ports, up to
        `attempts` times: a CI run once saw a live ganesha stay silent for 30 s, which no
        number of local starts reproduced, so each failed try reports what the server was doing.
        """
        for attempt in range(1, attempts + 1):
            try:
                self._start_once(timeout, detach=detach)
                return
            except _Silent as silent:
                print(f"ganesha start {attempt}/{attempts} failed: {silent}", file=sys.stderr)
                if attempt == attempts:
                    raise RuntimeError(str(silent)) from None

    def _start_once(self, timeout: float, *, detach: bool) -> None:
        if self.running:
            return
        self.export_dir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "recovery").mkdir(parents=True, exist_ok=True)
        self.config.write_text(
            CONFIG.format(
                nfs_port=self.nfs_port,
                mnt_port=self.mnt_port,
                nlm_port=self.nlm_port,
                recovery=self.workdir / "recovery",
                export=self.export_dir,
            )
        )
        ensure_rpcbind()
        self.pidfile.unlink(missing_ok=True)
        daemon = shutil.which("ganesha.nfsd") or "/usr/bin/ganesha.nfsd"
        command = [daemon, "-F", "-f", str(self.config), "-L", str(self.logfile)]
        command += ["-p", str(self.pidfile)]
        with (self.workdir / "ganesha.out").open("ab") as out:
            self._process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, start_new_session=detach
            )
        process = self._process

        def ready() -> bool:
            if process.poll() is not None:
                raise RuntimeError(f"ganesha exited ({process.returncode}); see {self.logfile}")
            return (
                self.pid is not None
                and _answers(self.nfs_port, NFS_PROGRAM, NFS_VERSION)
                and _answers(self.mnt_port, MOUNT_PROGRAM, MOUNT_VERSION)
            )

        try:
            _wait_until(ready, timeout, f"ganesha did not answer on port {self.nfs_port}")
        except RuntimeError as error:
            if process.poll() is not None:
                raise  # it exited by itself: a configuration or bind error, not a hang
            diagnosis = self._diagnose(process.pid)
            self.kill()
            raise _Silent(f"{error}\n{diagnosis}") from None
        except BaseException:
            self.kill()
            raise

    def _diagnose(self, pid: int) -> str:
        """Where each ganesha thread is blocked, and the end of its log."""
        lines = [
            f"  pidfile written: {self.pid is not None}; "
            f"rpcbind answers: {_answers(PORTMAP_PORT, 100000, 2)}"
        ]
        if _alive(pid):
            for task in sorted(Path(f"/proc/{pid}/task").glob("*")):
                with contextlib.suppress(OSError):
                    name = (task / "comm").read_text().strip()
                    wchan = (task / "wchan").read_text().strip()
                    lines.append(f"  thread {task.name} {name}: waiting in {wchan or '-'}")
        with contextlib.suppress(OSError):
            tail = self.logfile.read_text(errors="replace").splitlines()[-15:]
            lines += ["  log: " + line for line in tail]
        return "\n".join(lines)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop gracefully (SIGTERM), escalating to SIGKILL after `timeout` seconds."""
        stopping = self._signal(signal.SIGCONT) and self._signal(signal.SIGTERM)
        if stopping and not self._wait_gone(timeout):
            self.kill()
        self._reap()

    def kill(self) -> None:
        """Kill at once (SIGKILL), as a crash or an OOM kill would."""
        if self._signal(signal.SIGKILL):
            self._wait_gone(10.0)
        self._reap()

    def pause(self) -> None:
        """Freeze the server (SIGSTOP): connections stay open, nothing answers."""
        self._signal(signal.SIGSTOP)

    def resume(self) -> None:
        self._signal(signal.SIGCONT)

    def restart(self, timeout: float = 20.0) -> None:
        self.stop()
        self.start(timeout)

    def _signal(self, signum: int) -> bool:
        pid = self.pid
        if pid is None and self._process is not None and self._process.poll() is None:
            pid = self._process.pid  # started by us but stuck before writing its pidfile
        if pid is None:
            return False
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signum)
            return True
        return False

    def _wait_gone(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                return True
            if self.pid is None:
                return True
            time.sleep(0.05)
        return False

    def _reap(self) -> None:
        if self._process is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self._process.wait(5)
            self._process = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class _Silent(Exception):
    """ganesha is alive but does not answer RPC calls."""


def _alive(pid: int) -> bool:
    """True for a live process; a zombie (exited, not yet reaped) counts as gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")


def _wait_until(check: Callable[[], bool], timeout: float, problem: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.1)
    raise RuntimeError(problem)


def _answers(port: int, program: int, version: int) -> bool:
    """True when an RPC NULL call to `program` on 127.0.0.1:`port` over TCP succeeds."""
    xid = int.from_bytes(os.urandom(4), "big")
    call = struct.pack(">6I4I", xid, 0, 2, program, version, 0, 0, 0, 0, 0)
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(struct.pack(">I", 0x80000000 | len(call)) + call)
            reply = _read_record(sock)
    except OSError:
        return False
    # xid, REPLY(1), MSG_ACCEPTED(0), verifier flavour and length, then accept_stat SUCCESS(0)
    if len(reply) < 24:
        return False
    rxid, kind, accepted, _flavour, length = struct.unpack(">5I", reply[:20])
    if (rxid, kind, accepted) != (xid, 1, 0) or len(reply) < 24 + length:
        return False
    return struct.unpack(">I", reply[20 + length : 24 + length])[0] == 0


def _read_record(sock: socket.socket) -> bytes:
    data = b""
    while True:
        header = _read_exact(sock, 4)
        (marker,) = struct.unpack(">I", header)
        data += _read_exact(sock, marker & 0x7FFFFFFF)
        if marker & 0x80000000:
            return data


def _read_exact(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("connection closed")
        data += chunk
    return data


def main(argv: list[str] | None = None) -> int:
    """`start DIR` prints the URL as JSON and leaves ganesha running; `stop DIR` ends it."""
    parser = argparse.ArgumentParser(prog="python -m tests.support.ganesha")
    parser.add_argument("action", choices=("start", "stop"))
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args(argv)
    state = args.workdir / "server.json"
    if args.action == "start":
        reason = unavailable()
        if reason:
            print(json.dumps({"error": reason}))
            return 1
        server = Ganesha(args.workdir)
        server.start(detach=True)
        server._process = None  # leave it running after we exit; `stop` finds it by pidfile
        info = {"url": server.url(), "export": str(server.export_dir)}
        info["pidfile"] = str(server.pidfile)
        state.write_text(json.dumps(info))
        print(json.dumps(info))
        return 0
    server = Ganesha(args.workdir)
    server.stop()
    state.unlink(missing_ok=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
