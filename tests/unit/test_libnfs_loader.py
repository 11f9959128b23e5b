"""The libnfs loader binds only the ABIs it knows, and says so at start when it finds another."""

from __future__ import annotations

import pytest

from worker.adapters import libnfs
from worker.adapters.nfs import NfsStore
from worker.errors import ConfigError


def unknown_abi() -> object:
    """What `library()` does on a system whose only libnfs is libnfs 6 (soname .16)."""
    return libnfs.load(("libnfs.so.999-absent",), other="libnfs.so.16")


def test_the_known_sonames_are_debian_12s_and_debian_13s() -> None:
    assert libnfs.KNOWN_SONAMES == ("libnfs.so.14", "libnfs.so.13")


def test_the_libnfs_installed_here_loads_under_a_known_soname() -> None:
    lib = libnfs.library()
    assert lib._name in libnfs.KNOWN_SONAMES
    assert lib.nfs_pwrite.argtypes is not None  # declared, not guessed by ctypes


def test_a_libnfs_of_another_abi_is_refused_naming_it_and_what_would_do() -> None:
    with pytest.raises(libnfs.NfsUnavailable) as refused:
        unknown_abi()
    message = str(refused.value)
    assert "libnfs.so.16" in message
    assert "libnfs.so.999-absent" in message and "libnfs14" in message


def test_no_libnfs_at_all_is_refused_with_the_packages_to_install() -> None:
    with pytest.raises(libnfs.NfsUnavailable, match=r"no libnfs is installed.*libnfs13"):
        libnfs.load(("libnfs.so.999-absent",), other=None)


def test_an_unknown_libnfs_stops_the_sidecar_job_at_start_naming_sidecar_nfs_url(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A ConfigError is what makes the worker exit 2 before it receives anything."""
    monkeypatch.setattr(libnfs, "library", unknown_abi)
    with pytest.raises(ConfigError) as stopped:
        NfsStore("nfs://127.0.0.1/export", connections=1, timeout_ms=1000)
    assert stopped.value.option == "SIDECAR_NFS_URL"
    assert "libnfs.so.16" in str(stopped.value)
