"""Fixtures of the image tests: the image built once per session and Debian base from the
unmodified Dockerfile (scripts/image.py), and containers running its own command against moto.

Every image test runs on both bases: Debian 13 (the Dockerfile's default, Python 3.13,
libnfs 5) and Debian 12 (`--build-arg BASE_IMAGE=debian:bookworm-slim`, Python 3.11, libnfs 4).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from scripts import image as image_tool
from tests.image.container import Hardening, ImageRun
from tests.support.moto_server import MotoServer

IMAGE = "localhost/spotdrain:test"  # and a suffix: the suite
REPORT: list[str] = []  # printed at the end of the run (pytest_terminal_summary)


@dataclass(frozen=True)
class BuiltImage:
    name: str
    suite: str
    size: int
    build_seconds: float
    config: dict[str, Any]


def unavailable() -> str | None:
    """Why the image cannot be built and run here (a reason to skip), or None."""
    if missing := image_tool.missing_tools():
        return f"{' '.join(missing)} not installed (scripts/bootstrap.sh test installs them)"
    if os.geteuid() != 0:
        return "buildah's chroot isolation and debootstrap need root on these machines"
    return None


def require_image_tools() -> None:
    reason = unavailable()
    if reason:
        pytest.skip(reason)


@pytest.fixture(scope="session", params=image_tool.SUITES)
def image(request: pytest.FixtureRequest) -> BuiltImage:
    require_image_tools()
    suite = str(request.param)
    name = f"{IMAGE}-{suite}"
    started = time.monotonic()
    image_tool.ensure_base(suite)  # debootstrap when nothing is cached (about a minute)
    base_seconds = time.monotonic() - started
    seconds = image_tool.build(name, suite=suite)
    built = BuiltImage(
        name, suite, image_tool.image_size(name), seconds, image_tool.image_config(name)
    )
    base_size = image_tool.image_size(image_tool.base_name(suite))
    REPORT.append(
        f"image {built.name}: {built.size / 1e6:.0f} MB (base {base_size / 1e6:.0f} MB); "
        f"base ready in {base_seconds:.0f} s, image built in {seconds:.0f} s"
    )
    return built


@pytest.fixture
def run_image(image: BuiltImage, moto: MotoServer) -> Iterator[Callable[..., ImageRun]]:
    """Start the image's command with moto's variables, fast test defaults and `env`."""
    started: list[ImageRun] = []

    def run(*, hardening: Hardening | None = None, **env: Any) -> ImageRun:
        variables = {
            **moto.env(),
            "SPOT_IMDS": "off",
            "WORKER_WAIT_SECONDS": "1",
            "WORKER_IDLE_EXIT_SECONDS": "1",
            **{k: str(v) for k, v in env.items()},
        }
        container = ImageRun(image.name, variables, hardening)
        started.append(container)
        return container

    yield run
    for container in started:
        container.kill()


def pytest_terminal_summary(terminalreporter: Any) -> None:
    for line in REPORT:
        terminalreporter.write_line(line)
