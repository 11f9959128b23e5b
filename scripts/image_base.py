"""Stand-ins for Docker Hub's debian:<suite>-slim, made by debootstrap and cached as tarballs.

debuerreotype builds the real image from a minbase debootstrap plus a few apt and dpkg
settings (no package caches, no documentation, the three suites); doing the same here makes
apt inside a build behave, and the image size come out, as they do for a user's Docker.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIRROR = "http://deb.debian.org/debian"
KEYRING = "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
CLEAN = (
    '"rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb '
    '/var/cache/apt/*.bin || true"'
)


def slim_files(suite: str) -> dict[str, str]:
    """The apt and dpkg settings of the real slim image, and its sources for `suite`."""
    return {**SLIM_SETTINGS, "etc/apt/sources.list.d/debian.sources": sources(suite)}


def sources(suite: str) -> str:
    return (
        f"Types: deb\nURIs: {MIRROR}\nSuites: {suite} {suite}-updates\nComponents: main\n"
        f"{KEYRING}\nTypes: deb\nURIs: {MIRROR}-security\nSuites: {suite}-security\n"
        f"Components: main\n{KEYRING}"
    )


SLIM_SETTINGS = {
    "etc/apt/apt.conf.d/docker-clean": (
        f"DPkg::Post-Invoke {{ {CLEAN}; }};\nAPT::Update::Post-Invoke {{ {CLEAN}; }};\n"
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    ),
    "etc/apt/apt.conf.d/docker-autoremove-suggests": (
        'Apt::AutoRemove::SuggestsImportant "false";\n'
    ),
    "etc/apt/apt.conf.d/docker-gzip-indexes": 'Acquire::GzipIndexes "true";\n',
    "etc/apt/apt.conf.d/docker-no-languages": 'Acquire::Languages "none";\n',
    "etc/dpkg/dpkg.cfg.d/docker-apt-speedup": "force-unsafe-io\n",
    "etc/dpkg/dpkg.cfg.d/docker": (
        "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
        "path-exclude /usr/share/groff/*\npath-exclude /usr/share/info/*\n"
        "path-exclude /usr/share/linda/*\npath-exclude /usr/share/lintian/overrides/*\n"
        "path-exclude /usr/share/locale/*\npath-exclude /usr/share/man/*\n"
    ),
}

SLIM_REMOVE = (
    "var/cache/apt/archives/*.deb",
    "var/cache/apt/*.bin",
    "var/lib/apt/lists/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/groff/*",
    "usr/share/lintian/*",
)


def make_base_tarball(cache: Path, suite: str) -> Path:
    """The cached rootfs tarball of `suite`, made by debootstrap (about a minute) if missing."""
    tarball = cache / f"{suite}-slim.tar"
    if tarball.exists():
        return tarball
    cache.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(dir=cache) as rootfs:
        subprocess.run(
            ["debootstrap", "--variant=minbase", suite, rootfs, MIRROR],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        os.chmod(rootfs, 0o755)  # a temporary directory is 0700: as "/" no user could enter it
        slim(Path(rootfs), suite)
        partial = tarball.with_suffix(".partial")
        subprocess.run(["tar", "-C", rootfs, "-cf", str(partial), "."], check=True)
        partial.rename(tarball)  # only a complete tarball is ever reused
    seconds = time.monotonic() - started
    print(f"image: debootstrap {suite} base made in {seconds:.0f} s", file=sys.stderr)
    return tarball


def slim(rootfs: Path, suite: str) -> None:
    """Turn a minbase tree into the equivalent of debian:<suite>-slim."""
    for relative, text in slim_files(suite).items():
        (rootfs / relative).parent.mkdir(parents=True, exist_ok=True)
        (rootfs / relative).write_text(text)
    (rootfs / "etc/apt/sources.list").unlink(missing_ok=True)
    doomed = [path for pattern in SLIM_REMOVE for path in rootfs.glob(pattern)]
    doomed += [
        path
        for package in (rootfs / "usr/share/doc").iterdir()
        if package.is_dir() and not package.is_symlink()
        for path in package.iterdir()
        if path.name != "copyright"  # licences stay, as in the real image
    ]
    for path in doomed:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
