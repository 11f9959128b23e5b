"""The sidecar job's pure core: payload checks, safe paths, names and the exact sidecar bytes."""

from __future__ import annotations

import json

import pytest

from worker.adapters.files import FileFacts
from worker.errors import PermanentError
from worker.handlers.sidecar_job import (
    SidecarRequest,
    iso_time,
    placement,
    render_sidecar,
    safe_parts,
    sidecar_name,
    temporary_name,
)
from worker.jobs import MessageFacts

FILE = FileFacts(
    size=1234,
    mtime_ns=1_700_000_000_123_456_789,
    ctime_ns=1_700_000_100_000_000_001,
    is_directory=False,
)


@pytest.mark.parametrize(
    ("filename", "parts"),
    [
        ("a.txt", ("a.txt",)),
        ("/a.txt", ("a.txt",)),
        ("dir/sub/a.txt", ("dir", "sub", "a.txt")),
        ("//dir/./sub//a.txt", ("dir", "sub", "a.txt")),
        ("dir/../a.txt", ("a.txt",)),
        ("dir/sub/../../dir/a.txt", ("dir", "a.txt")),
        ("..a/b..", ("..a", "b..")),
        ("é ü/ñ.dat", ("é ü", "ñ.dat")),
    ],
)
def test_names_inside_the_root_are_normalised(filename: str, parts: tuple[str, ...]) -> None:
    assert safe_parts(filename) == parts


@pytest.mark.parametrize(
    ("filename", "why"),
    [
        ("", "empty"),
        ("../a.txt", "leaves"),
        ("/../a.txt", "leaves"),
        ("dir/../../a.txt", "leaves"),
        ("..", "leaves"),
        ("a\x00.txt", "NUL"),
        ("/", "root"),
        (".", "root"),
        ("dir/..", "root"),
        ("\ud800.txt", "Unicode"),
    ],
)
def test_names_outside_the_root_are_refused(filename: str, why: str) -> None:
    with pytest.raises(PermanentError, match=why):
        safe_parts(filename)


@pytest.mark.parametrize(
    ("name", "sidecar"),
    [
        ("a.txt", "a-sidecar.json"),
        ("archive.tar.gz", "archive.tar-sidecar.json"),
        ("no_extension", "no_extension-sidecar.json"),
        (".hidden", ".hidden-sidecar.json"),
    ],
)
def test_sidecar_name_drops_the_extension(name: str, sidecar: str) -> None:
    assert sidecar_name(name) == sidecar


def test_placement_puts_sidecar_and_temporary_beside_the_file() -> None:
    request = SidecarRequest.parse({"filename": "/d/e/x.bin", "results": "ok"})
    place = placement(request, MessageFacts(message_id="m-1", receive_count=1))
    assert place.source == "d/e/x.bin"
    assert place.target == "d/e/x-sidecar.json"
    assert place.temporary.startswith("d/e/.x-sidecar.json.")
    assert place.temporary.endswith(".spotdrain-tmp")
    assert place.leftovers == ()  # a first attempt follows no other


def test_each_attempt_has_its_own_temporary_name_and_removes_the_earlier_ones() -> None:
    request = SidecarRequest.parse({"filename": "d/x.bin", "results": "ok"})
    third = placement(request, MessageFacts(message_id="m-1", receive_count=3))
    earlier = [placement(request, MessageFacts(message_id="m-1", receive_count=n)) for n in (1, 2)]
    assert third.leftovers == tuple(p.temporary for p in earlier)
    assert len({third.temporary, *third.leftovers}) == 3
    assert all(name.startswith("d/.x-sidecar.json.") for name in third.leftovers)


def test_temporary_names_differ_between_messages() -> None:
    assert temporary_name("a-sidecar.json", "m-1", 1) != temporary_name("a-sidecar.json", "m-2", 1)


def test_temporary_name_stays_a_legal_file_name_for_long_sidecars() -> None:
    sidecar = "x" * 241 + "-sidecar.json"
    name = temporary_name(sidecar, "m-1", 99)
    assert len(name.encode()) <= 255 and name.endswith(".spotdrain-tmp")


@pytest.mark.parametrize(
    ("payload", "why"),
    [
        ({"results": "r"}, "'filename' must be a string"),
        ({"filename": 7, "results": "r"}, "'filename' must be a string"),
        ({"filename": "a.txt"}, "'results' is missing"),
        ({"filename": "a.txt", "results": "\udc00"}, "UTF-8"),
    ],
)
def test_bad_payloads_are_permanent_errors(payload: dict[str, object], why: str) -> None:
    with pytest.raises(PermanentError, match=why):
        SidecarRequest.parse(payload)


def test_iso_time_has_a_utc_offset_and_microseconds() -> None:
    assert iso_time(1_700_000_000_123_456_789) == "2023-11-14T22:13:20.123456+00:00"
    assert iso_time(0) == "1970-01-01T00:00:00.000000+00:00"


def test_sidecar_bytes_are_exact() -> None:
    request = SidecarRequest.parse({"filename": "/d/x.bin", "results": "ok ✓"})
    data = render_sidecar(request, FILE, message_id="m-1")
    assert (
        data
        == (
            "{\n"
            '  "filename": "/d/x.bin",\n'
            '  "path": "/d/x.bin",\n'
            '  "size": 1234,\n'
            '  "created": "2023-11-14T22:15:00.000000+00:00",\n'
            '  "modified": "2023-11-14T22:13:20.123456+00:00",\n'
            '  "results": "ok ✓",\n'
            '  "message_id": "m-1"\n'
            "}\n"
        ).encode()
    )


def test_results_keep_their_json_shape() -> None:
    request = SidecarRequest.parse({"filename": "x", "results": {"score": 0.5, "tags": ["a"]}})
    document = json.loads(render_sidecar(request, FILE, message_id="m"))
    assert document["results"] == {"score": 0.5, "tags": ["a"]}
    assert list(document) == [
        "filename",
        "path",
        "size",
        "created",
        "modified",
        "results",
        "message_id",
    ]
