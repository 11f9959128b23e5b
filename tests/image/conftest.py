"""Fixtures of the image tests: the image built once per session from the unmodified
Dockerfile (scripts/image.py), and containers running its own command against moto."""

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

IMAGE = "localhost/spotdrain:test"
REPORT: list[str] = []  # printed at the end of the run (pytest_terminal_summary)


@dataclass(frozen=True)
class BuiltImage:
    name: str
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


@pytest.fixture(scope="session")
def image() -> BuiltImage:
    reason = unavailable()
    if reason:
        pytest.skip(reason)
    started = time.monotonic()
    image_tool.ensure_base()  # debootstrap when nothing is cached (about 40 s)
    base_seconds = time.monotonic() - started
    seconds = image_tool.build(IMAGE)
    built = BuiltImage(IMAGE, image_tool.image_size(IMAGE), seconds, image_tool.image_config(IMAGE))
    base_size = image_tool.image_size(image_tool.BASE_NAME)
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
