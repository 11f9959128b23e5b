"""requirements.lock pins every runtime dependency with its hashes, and the image installs
exactly it (`make lock` refreshes it)."""

from __future__ import annotations

import re
import tomllib

from tests.deploy.documents import DOCKERFILE, ROOT

LOCK = ROOT / "requirements.lock"


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def pins() -> dict[str, list[str]]:
    """Each pinned line of the lock (name==version ; marker) and its hashes."""
    found: dict[str, list[str]] = {}
    current = ""
    for line in LOCK.read_text().splitlines():
        if line and not line.startswith((" ", "#")):
            current = line.rstrip(" \\")
            found[current] = []
        elif line.strip().startswith("--hash=sha256:"):
            found[current].append(line.strip().removesuffix(" \\"))
    return found


def test_every_runtime_dependency_is_pinned_to_one_version_per_python() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = (re.split(r"[<>=!~;\[ ]", d, maxsplit=1)[0] for d in project["dependencies"])
    wanted = {normalised(name) for name in names}
    pinned = {normalised(line.split("==", 1)[0]) for line in pins()}
    assert wanted <= pinned, wanted - pinned
    for line in pins():
        assert re.fullmatch(r"[A-Za-z0-9._-]+==[^ ;]+( ; .+)?", line), line


def test_every_pin_carries_hashes() -> None:
    assert pins()
    for line, hashes in pins().items():
        assert hashes, line


def test_the_image_installs_the_lock_with_its_hashes_and_nothing_unlocked() -> None:
    text = DOCKERFILE.read_text()
    assert "pip install --require-hashes --no-deps -r requirements.lock" in text
    # The project itself comes after, without its dependencies (they are the lock's).
    assert "pip install --no-deps ." in text


def test_the_lock_says_how_it_was_made() -> None:
    header = LOCK.read_text().splitlines()[:3]
    assert any("uv pip compile pyproject.toml --universal" in line for line in header), header
