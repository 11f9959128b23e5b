"""Resolving beneath a root: where NFS links lead (splice), and the local walk used where the
kernel has no openat2, on a real directory tree."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from worker.adapters import beneath
from worker.errors import PermanentError


@pytest.mark.parametrize(
    ("directory", "target", "expected"),
    [
        (("a", "b"), "c", ("a", "b", "c")),
        (("a", "b"), "../c/d", ("a", "c", "d")),
        (("a",), "./x//y/", ("a", "x", "y")),
        (("a",), "..", ()),
        (("a",), "../..", None),
        ((), "../etc/passwd", None),
        (("a",), "/srv/export/real/f", ("real", "f")),
        (("a",), "/srv/export", ()),
        (("a",), "/srv/export/../secret", None),
        (("a",), "/srv/exports/f", None),
        (("a",), "/etc/passwd", None),
    ],
)
def test_a_link_leads_beneath_the_export_or_nowhere(
    directory: tuple[str, ...], target: str, expected: tuple[str, ...] | None
) -> None:
    assert beneath.splice(directory, target, "/srv/export") == expected


def test_an_export_at_the_servers_root_takes_every_absolute_target() -> None:
    assert beneath.splice(("a",), "/x/y", "/") == ("x", "y")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    (tmp_path / "root" / "d").mkdir(parents=True)
    (tmp_path / "root" / "d" / "f").write_bytes(b"12345")
    (tmp_path / "root" / "d" / "inner").symlink_to("f")
    (tmp_path / "secret").write_bytes(b"s")
    (tmp_path / "root" / "out").symlink_to(tmp_path / "secret")
    return tmp_path / "root"


@pytest.fixture
def open_root(root: Path) -> Iterator[Callable[[bool | None], beneath.LocalRoot]]:
    """Opens the root with the kernel's resolver, the walk, or whichever this kernel has."""
    opened: list[beneath.LocalRoot] = []

    def open_with(kernel: bool | None) -> beneath.LocalRoot:
        opened.append(beneath.LocalRoot(str(root), label="the root", use_openat2=kernel))
        return opened[-1]

    yield open_with
    for each in opened:
        each.close()


Opener = Callable[[bool | None], beneath.LocalRoot]
KERNELS = pytest.mark.parametrize("kernel", [True, False], ids=["openat2", "walk"])


def test_this_kernel_resolves_beneath_with_openat2(open_root: Opener) -> None:
    assert open_root(None).kernel


@KERNELS
def test_plain_paths_open_beneath_the_root(root: Path, open_root: Opener, kernel: bool) -> None:
    opened = open_root(kernel)
    with opened.opened("d/f") as fd:
        assert os.fstat(fd).st_size == 5
    with opened.opened("d", directory=True) as fd:
        assert stat.S_ISDIR(os.fstat(fd).st_mode)
    with opened.opened("", directory=True) as fd:
        assert os.path.samestat(os.fstat(fd), os.stat(root))
    with pytest.raises(FileNotFoundError), opened.opened("d/missing"):
        pass
    with pytest.raises(NotADirectoryError), opened.opened("d/f", directory=True):
        pass


@KERNELS
def test_a_link_out_of_the_root_is_refused(open_root: Opener, kernel: bool) -> None:
    with pytest.raises(PermanentError, match="'out'"), open_root(kernel).opened("out"):
        pass


def test_without_openat2_even_a_link_inside_the_root_is_refused(open_root: Opener) -> None:
    with pytest.raises(PermanentError, match="no openat2"), open_root(False).opened("d/inner"):
        pass


def test_with_openat2_a_link_inside_the_root_is_followed(open_root: Opener) -> None:
    with open_root(True).opened("d/inner") as fd:
        assert os.fstat(fd).st_size == 5
