"""Fixtures for the sidecar tests: a real ganesha export or a plain directory, and job runners."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import serve_ganesha
from tests.support.ganesha import Ganesha
from worker import wiring
from worker.handlers import sidecar_job
from worker.jobs import Job, MessageFacts
from worker.metrics import Metrics
from worker.settings import SidecarSettings

# Every destination kind; "nfs" needs ganesha, "local" is SIDECAR_ROOT on a plain directory.
KINDS = [pytest.param("nfs", marks=pytest.mark.nfs), pytest.param("local")]
NFS_TIMEOUT_MS = 2000


@pytest.fixture
def world(tmp_path: Path) -> Path:
    """The directory tree a test may touch; the root (export or SIDECAR_ROOT) is world/root."""
    (tmp_path / "world" / "root").mkdir(parents=True)
    return tmp_path / "world"


@pytest.fixture
def ganesha(tmp_path: Path, world: Path) -> Iterator[Ganesha]:
    yield from serve_ganesha(tmp_path / "ganesha", export=world / "root")


@dataclass
class Destination:
    """Where sidecars go: `root` on this machine, and the options that point the worker there."""

    kind: str
    root: Path
    options: SidecarSettings
    env: dict[str, str]
    server: Ganesha | None = None


@pytest.fixture(params=KINDS)
def destination(request: pytest.FixtureRequest, world: Path) -> Destination:
    root = world / "root"
    if request.param == "local":
        return Destination(
            "local", root, SidecarSettings(root=str(root)), {"SIDECAR_ROOT": str(root)}
        )
    server: Ganesha = request.getfixturevalue("ganesha")
    return nfs_destination(server)


def nfs_destination(server: Ganesha, **url_options: Any) -> Destination:
    url = server.url(**url_options)
    options = SidecarSettings(nfs_url=url, nfs_timeout_ms=NFS_TIMEOUT_MS, nfs_connections=4)
    env = {"SIDECAR_NFS_URL": url, "SIDECAR_NFS_TIMEOUT_MS": str(NFS_TIMEOUT_MS)}
    return Destination("nfs", server.export_dir, options, env, server)


class SidecarRunner:
    """The real sidecar handler on its own event loop, as the worker builds it."""

    def __init__(self, options: SidecarSettings) -> None:
        self.loop = asyncio.Runner()
        self._stack = AsyncExitStack()
        store = wiring.sidecar_store(options)
        assert store is not None, "a destination names NFS or a local root"
        self._stack.push_async_callback(store.close)
        self.handler = sidecar_job.SidecarJob(store, Metrics.off())

    def job(
        self, filename: Any, results: Any = "ok", message_id: str = "m-1", attempt: int = 1
    ) -> str | None:
        return self.loop.run(self.ajob(filename, results, message_id, attempt))

    async def ajob(
        self, filename: Any, results: Any = "ok", message_id: str = "m-1", attempt: int = 1
    ) -> str | None:
        payload = {"filename": filename, "results": results}
        facts = MessageFacts(message_id=message_id, receive_count=attempt)
        return await self.handler(Job(kind="sidecar", payload=payload), facts)

    def close(self) -> None:
        self.loop.run(self._stack.aclose())
        self.loop.close()


@pytest.fixture
def sidecars(destination: Destination) -> Iterator[SidecarRunner]:
    runner = SidecarRunner(destination.options)
    yield runner
    runner.close()


def snapshot(directory: Path) -> dict[str, bytes | None]:
    """Every path under `directory` with its bytes (None for a directory)."""
    return {
        str(path.relative_to(directory)): None if path.is_dir() else path.read_bytes()
        for path in sorted(directory.rglob("*"))
    }


def temporaries(directory: Path) -> list[Path]:
    return sorted(directory.rglob("*.spotdrain-tmp"))


def read_sidecar(path: Path) -> dict[str, Any]:
    data = path.read_bytes()
    assert data.endswith(b"\n")
    document: dict[str, Any] = json.loads(data.decode("utf-8"))
    return document
