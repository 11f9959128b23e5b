"""Symbolic links planted under the root, as an attacker would: `python -m worker` on a moto
queue, writing through libnfs to real ganesha or to a plain directory (SIDECAR_ROOT).

A link is followed only while it stays beneath the root; one that leads out is a permanent
error naming the path (dead-lettered, nothing written, nothing outside described), and a
link planted under a sidecar's own name is replaced, never written through.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import drain_all
from tests.sidecar.conftest import Destination, nfs_destination, read_sidecar, temporaries
from tests.sidecar.test_worker import reasons, send
from tests.support.ganesha import Ganesha

pytestmark = pytest.mark.slow

Tree = dict[str, tuple[str, bytes | str | None]]


def tree(directory: Path) -> Tree:
    """Every entry under `directory`, links as links (never followed): kind and content."""
    entries: Tree = {}
    for parent, directories, files in os.walk(directory):
        for name in sorted(directories + files):
            path = Path(parent) / name
            key = str(path.relative_to(directory))
            if path.is_symlink():
                entries[key] = ("link", os.readlink(path))
            elif path.is_dir():
                entries[key] = ("directory", None)
            else:
                entries[key] = ("file", path.read_bytes())
    return entries


@pytest.fixture
def outside(destination: Destination) -> Path:
    """A secret beside the root, where no sidecar may look or write."""
    place = destination.root.parent / "elsewhere"
    place.mkdir()
    (place / "secret.bin").write_bytes(b"s" * 4242)
    (place / "victim.json").write_bytes(b"precious\n")
    return place


def run_worker(start_worker: Any, queue: Any, destination: Destination) -> None:
    worker = start_worker(QUEUE_URL=queue.url, DLQ_URL=queue.dlq_url, **destination.env)
    assert worker.wait() == 0


def test_links_that_lead_out_of_the_root_are_dead_lettered_and_describe_nothing(
    sqs: Any, make_queue: Any, start_worker: Any, destination: Destination, outside: Path
) -> None:
    data = destination.root / "data"
    data.mkdir()
    (data / "absolute.bin").symlink_to(outside / "secret.bin")
    (data / "relative.bin").symlink_to("../../elsewhere/secret.bin")
    (destination.root / "gone").symlink_to(outside)  # a directory link: gone/secret.bin
    names = ["data/absolute.bin", "data/relative.bin", "gone/secret.bin"]
    queue = make_queue()
    send(sqs, queue, [{"filename": name, "results": "stolen?"} for name in names])
    before = tree(destination.root.parent)

    run_worker(start_worker, queue, destination)

    outside_name = "SIDECAR_ROOT" if destination.kind == "local" else "the export"
    assert sorted(reasons(sqs, queue.dlq_url)) == [
        f"sidecar: {name!r} leads outside {outside_name} through a symbolic link" for name in names
    ]
    assert tree(destination.root.parent) == before


def test_a_link_planted_under_the_sidecars_name_is_replaced_not_written_through(
    sqs: Any, make_queue: Any, start_worker: Any, destination: Destination, outside: Path
) -> None:
    data = destination.root / "data"
    data.mkdir()
    (data / "scan.raw").write_bytes(b"r" * 77)
    (data / "scan-sidecar.json").symlink_to(outside / "victim.json")
    queue = make_queue()
    send(sqs, queue, [{"filename": "data/scan.raw", "results": "ok"}])

    run_worker(start_worker, queue, destination)

    sidecar = data / "scan-sidecar.json"
    assert not sidecar.is_symlink()
    assert read_sidecar(sidecar)["size"] == 77
    assert (outside / "victim.json").read_bytes() == b"precious\n"
    assert drain_all(sqs, queue.dlq_url) == []
    assert temporaries(destination.root) == []


def test_links_that_stay_inside_the_root_are_followed(
    sqs: Any, make_queue: Any, start_worker: Any, destination: Destination
) -> None:
    real = destination.root / "real"
    real.mkdir()
    (real / "f.raw").write_bytes(b"f" * 12)
    (destination.root / "data").mkdir()
    (destination.root / "data" / "alias.raw").symlink_to("../real/f.raw")
    (destination.root / "linked").symlink_to("real")
    queue = make_queue()
    send(
        sqs,
        queue,
        [
            {"filename": "data/alias.raw", "results": "through a file link"},
            {"filename": "linked/f.raw", "results": "through a directory link"},
        ],
    )

    run_worker(start_worker, queue, destination)

    assert drain_all(sqs, queue.dlq_url) == []
    beside_the_link = read_sidecar(destination.root / "data" / "alias-sidecar.json")
    assert (beside_the_link["size"], beside_the_link["results"]) == (12, "through a file link")
    in_the_real_directory = read_sidecar(real / "f-sidecar.json")
    assert in_the_real_directory["results"] == "through a directory link"


def test_a_link_loop_is_dead_lettered_naming_the_path(
    sqs: Any, make_queue: Any, start_worker: Any, destination: Destination
) -> None:
    (destination.root / "data").mkdir()
    (destination.root / "data" / "ping.raw").symlink_to("pong.raw")
    (destination.root / "data" / "pong.raw").symlink_to("ping.raw")
    queue = make_queue()
    send(sqs, queue, [{"filename": "data/ping.raw", "results": "x"}])
    before = tree(destination.root)

    run_worker(start_worker, queue, destination)

    assert reasons(sqs, queue.dlq_url) == [
        "sidecar: 'data/ping.raw' goes through more than 40 symbolic links"
    ]
    assert tree(destination.root) == before


@pytest.mark.nfs
def test_over_nfs_an_absolute_link_naming_the_exports_own_path_is_followed(
    sqs: Any, make_queue: Any, start_worker: Any, ganesha: Ganesha
) -> None:
    """As libnfs resolves them: the server stores the target, and the export's path on the
    server is its root (a link made on the server itself)."""
    destination = nfs_destination(ganesha)
    (ganesha.export_dir / "real").mkdir()
    (ganesha.export_dir / "real" / "f.raw").write_bytes(b"f" * 5)
    (ganesha.export_dir / "abs.raw").symlink_to(ganesha.export_dir / "real" / "f.raw")
    queue = make_queue()
    send(sqs, queue, [{"filename": "abs.raw", "results": "by the server's path"}])

    run_worker(start_worker, queue, destination)

    assert drain_all(sqs, queue.dlq_url) == []
    assert read_sidecar(ganesha.export_dir / "abs-sidecar.json")["size"] == 5
