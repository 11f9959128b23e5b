"""Run the image's own command in a buildah container and watch it as `docker run` would.

buildah's chroot isolation shares the host's network (the container reaches moto and ganesha
on 127.0.0.1) and its PID namespace, so the test can see the container's processes in /proc:
buildah-chroot-exec starts the image's command, which is the process Docker would run as
PID 1 and signal on `docker stop`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from scripts import image as image_tool
from tests.support.json_log import JsonLogLines


@dataclass(frozen=True)
class ProcessFacts:
    pid: int
    uid: int
    argv: list[str]


def process_facts(pid: int) -> ProcessFacts:
    status = Path(f"/proc/{pid}/status").read_text()
    uid_line = next(line for line in status.splitlines() if line.startswith("Uid:"))
    argv = Path(f"/proc/{pid}/cmdline").read_bytes().rstrip(b"\0").split(b"\0")
    return ProcessFacts(pid, int(uid_line.split()[2]), [a.decode() for a in argv])  # effective


def children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            with contextlib.suppress(OSError, IndexError):
                stat = Path(f"/proc/{entry}/stat").read_text()
                if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                    found.append(int(entry))
    return found


@dataclass(frozen=True)
class Hardening:
    """How ECS runs the container: root filesystem, capabilities, writable mounts."""

    read_only_root: bool = False
    cap_drop: tuple[str, ...] = ()
    writable: tuple[str, ...] = ()  # mount points, each an empty filesystem of its own

    @classmethod
    def of_task_definition(cls, document: dict[str, Any]) -> Hardening:
        (worker,) = document["containerDefinitions"]
        capabilities = worker.get("linuxParameters", {}).get("capabilities", {})
        mounts = tuple(m["containerPath"] for m in worker.get("mountPoints", []))
        # buildah's chroot writes /run/.containerenv before starting the command: on a
        # read-only root /run must be writable too (ECS needs nothing there).
        return cls(
            read_only_root=bool(worker.get("readonlyRootFilesystem")),
            cap_drop=tuple(capabilities.get("drop", ())),
            writable=(*mounts, "/run"),
        )


@dataclass
class ImageRun(JsonLogLines):
    """One `buildah run` of the image's command; stdout lines (the worker's JSON) collected."""

    what: ClassVar[str] = "container"

    image: str
    env: dict[str, str]
    hardening: Hardening | None = None  # run as the task definition hardens the task
    container: str = field(init=False)
    process: subprocess.Popen[str] = field(init=False)
    lines: list[str] = field(default_factory=list, init=False)
    _reader: threading.Thread = field(init=False)
    _stderr: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.container = image_tool.new_container(self.image)
        hardening = self.hardening or Hardening()
        if hardening.read_only_root:
            image_tool.make_read_only(self.container)
        argv = image_tool.run_argv(
            self.container,
            image_tool.command_of(self.image),
            env=self.env,
            cap_drop=hardening.cap_drop,
            tmpfs=hardening.writable,
        )
        self.process = subprocess.Popen(
            argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line)

    def command_process(self, timeout: float = 30) -> ProcessFacts:
        """The process running the image's command: the child of buildah-chroot-exec."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pending = [self.process.pid]
            while pending:
                pid = pending.pop()
                with contextlib.suppress(OSError):
                    if process_facts(pid).argv[0] == "buildah-chroot-exec":
                        started = children(pid)
                        if started:
                            return process_facts(started[0])
                    pending.extend(children(pid))
            time.sleep(0.05)
        raise AssertionError("the container's command process did not appear")

    def wait(self, timeout: float = 120) -> int:
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"container did not exit within {timeout}s") from None
        self._reader.join(5)
        if self.hardening is not None and self.hardening.read_only_root:
            return image_tool.command_status(code, self.stderr())
        return code

    def stderr(self) -> str:
        """What the container wrote to stderr, once it has exited."""
        if self.process.poll() is None or self.process.stderr is None:
            return ""
        if self._stderr is None:
            self._stderr = self.process.stderr.read()
        return self._stderr

    def kill(self) -> None:
        """Kill the command (buildah then ends too) and remove the container."""
        if self.process.poll() is None:
            with contextlib.suppress(AssertionError, OSError):
                os.kill(self.command_process(timeout=2).pid, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(10)
            if self.process.poll() is None:
                self.process.kill()
                self.process.wait()
        self._reader.join(5)
        for stream in (self.process.stdout, self.process.stderr):
            if stream is not None:
                stream.close()
        image_tool.remove_container(self.container)


def run_in(
    image: str, argv: list[str], hardening: Hardening | None = None
) -> subprocess.CompletedProcess[str]:
    """Run any command in a fresh container of `image` (as the image's user) and remove it."""
    container = image_tool.new_container(image)
    how = hardening or Hardening()
    try:
        if how.read_only_root:
            image_tool.make_read_only(container)
        command = image_tool.run_argv(container, argv, cap_drop=how.cap_drop, tmpfs=how.writable)
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if how.read_only_root:
            done.returncode = image_tool.command_status(done.returncode, done.stderr)
        return done
    finally:
        image_tool.remove_container(container)
