"""The container image, built from the unmodified Dockerfile and run as a user runs it.

The image's own command (its entry point) runs under buildah against the session's moto
server, the local Storage Gateway endpoint and a real ganesha export, all on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest

from scripts import image as image_tool
from tests.conftest import QueueFactory, drain_all, first_message_id, serve_ganesha, unique
from tests.deploy.documents import ROOT, taskdef
from tests.image.conftest import REPORT, BuiltImage
from tests.image.container import Hardening, ImageRun, run_in
from tests.support.ganesha import Ganesha
from tests.support.moto_server import MotoServer
from tests.support.storage_gateway import StorageGatewayEndpoint

# A cold build (debootstrap, apt and pip) takes minutes: longer than the suite's per-test limit.
pytestmark = [pytest.mark.image, pytest.mark.slow, pytest.mark.timeout(1800)]

RunImage = Callable[..., ImageRun]
IMAGE_SIZE_LIMIT = 300_000_000  # bytes, uncompressed; today about 250 MB
USER_ID = 10001  # the Dockerfile's USER


@pytest.fixture
def ganesha(tmp_path: Path) -> Iterator[Ganesha]:
    yield from serve_ganesha(tmp_path / "ganesha", export=tmp_path / "export")


@pytest.fixture
def gateway() -> Iterator[StorageGatewayEndpoint]:
    with StorageGatewayEndpoint() as endpoint:
        yield endpoint


def done(run: ImageRun) -> dict[str, str]:
    """job kind -> outcome of every finished message."""
    return {e["job"]: e["outcome"] for e in run.events("message.done")}


def test_image_runs_python_m_worker_as_a_non_root_user(image: BuiltImage) -> None:
    assert image.config["Entrypoint"] == ["python", "-m", "worker"]
    assert not image.config.get("Cmd")
    assert image.config["User"] == f"{USER_ID}:{USER_ID}"
    assert "PYTHONUNBUFFERED=1" in image.config["Env"]


def test_image_holds_no_credentials(image: BuiltImage) -> None:
    names = {item.split("=", 1)[0] for item in image.config["Env"]}
    assert not {n for n in names if n.startswith("AWS_")}


def test_the_build_time_pip_config_and_ca_bundle_are_not_baked_in(image: BuiltImage) -> None:
    """buildah leaves empty mount points where the build mounted them; no content stays."""
    script = "cat /etc/pip.conf /run/host-ca.crt 2>/dev/null | wc -c"
    result = run_in(image.name, ["sh", "-c", script])
    assert (result.returncode, result.stdout.strip()) == (0, "0"), result.stderr


def test_image_stays_small(image: BuiltImage) -> None:
    assert image.size < IMAGE_SIZE_LIMIT, f"{image.size / 1e6:.0f} MB"


def test_image_carries_the_csv_converter_compiled_in_its_build_stage(image: BuiltImage) -> None:
    """The host's build of the extension never enters the context (.dockerignore)."""
    probe = "from worker.csvconv import blocks; print(blocks.ACCELERATED)"
    result = run_in(image.name, ["python", "-c", probe])
    assert (result.returncode, result.stdout.strip()) == (0, "True"), result.stderr


BASE_FACTS = {"trixie": ([3, 13], "libnfs.so.14"), "bookworm": ([3, 11], "libnfs.so.13")}


def test_the_image_runs_its_bases_python_and_binds_its_bases_libnfs(image: BuiltImage) -> None:
    probe = (
        "import json, sys; from worker.adapters import libnfs; "
        "print(json.dumps([list(sys.version_info[:2]), libnfs.library()._name]))"
    )
    result = run_in(image.name, ["python", "-c", probe])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == list(BASE_FACTS[image.suite])


def test_the_image_holds_the_locked_versions_and_no_pypi_libnfs_binding(
    image: BuiltImage,
) -> None:
    locked = {
        name: version
        for line in (ROOT / "requirements.lock").read_text().splitlines()
        if (pin := line.split(" ", 1)[0]).count("==") == 1 and ";" not in line
        for name, version in [pin.split("==")]
    }
    probe = (
        "import importlib.metadata as m, importlib.util as u, json; "
        f"print(json.dumps([{{n: m.version(n) for n in {sorted(locked)!r}}}, "
        "u.find_spec('libnfs') is None]))"
    )
    result = run_in(image.name, ["python", "-c", probe])
    assert result.returncode == 0, result.stderr
    versions, no_binding = json.loads(result.stdout)
    assert versions == locked
    assert no_binding


UNIT_SUITE = ["tests/unit", "tests/csv/test_core.py", "tests/csv/test_wide_records.py"]
TEST_TOOLS = ["pytest", "pytest-timeout", "pytest-asyncio", "hypothesis"]


@pytest.fixture(scope="session")
def test_tools(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """pytest and its plugins for an image's Python, in a directory a container mounts: pure
    Python wheels that pip on this machine fetches for that Python version."""
    made: dict[str, Path] = {}

    def for_python(version: str) -> Path:
        if version not in made:
            target = tmp_path_factory.mktemp(f"test-tools-{version}")
            pip = [sys.executable, "-m", "pip", "install", "-q", "--target", str(target)]
            wheels = ["--python-version", version, "--only-binary=:all:", *TEST_TOOLS]
            subprocess.run([*pip, *wheels], check=True, capture_output=True)
            target.chmod(0o755)
            made[version] = target
        return made[version]

    return for_python


def test_the_unit_suite_passes_on_the_images_own_python(
    image: BuiltImage, test_tools: Callable[[str], Path]
) -> None:
    """tests/unit and the CSV core's tests, run by the image's Python (3.13 on Debian 13)
    against the package installed in it, C converter included; the tests, pyproject.toml
    (pytest's settings) and the test tools come in through read-only mounts."""
    version = ".".join(str(n) for n in BASE_FACTS[image.suite][0])
    volumes = [
        f"{test_tools(version)}:/opt/test-tools:ro",
        f"{ROOT / 'tests'}:/src/tests:ro",
        f"{ROOT / 'pyproject.toml'}:/src/pyproject.toml:ro",
    ]
    command = ["python", "-m", "pytest", "-q", "-p", "no:cacheprovider", "--rootdir", "/src"]
    command += ["-c", "/src/pyproject.toml", *(f"/src/{path}" for path in UNIT_SUITE)]
    container = image_tool.new_container(image.name)
    env = {"PYTHONPATH": "/opt/test-tools", "HYPOTHESIS_STORAGE_DIRECTORY": "/tmp/hypothesis"}
    try:
        argv = image_tool.run_argv(container, command, env=env, volumes=volumes)
        result = subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)
    finally:
        image_tool.remove_container(container)
    summary = result.stdout.strip().splitlines()[-1:]
    REPORT.append(f"unit suite in {image.name} (Python {version}): {summary}")
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "skipped" not in result.stdout  # the C converter's half of test_core ran too


def test_worker_in_image_exits_2_naming_a_missing_queue_url(run_image: RunImage) -> None:
    run = run_image(QUEUE_URL="")
    assert run.wait() == 2
    assert "QUEUE_URL" in run.stderr()


PROBE_WRITES = """
import json, pathlib
from multiprocessing import shared_memory
wrote = {}
for path in ("/probe", "/app/probe", "/home/probe", "/var/tmp/probe", "/tmp/probe", "/dev/shm/p"):
    try:
        pathlib.Path(path).write_text("x")
        wrote[path] = True
    except OSError:
        wrote[path] = False
memory = shared_memory.SharedMemory(create=True, size=1 << 20)
memory.close()
memory.unlink()
status = pathlib.Path("/proc/self/status").read_text().splitlines()
caps = {l.split(":")[0]: int(l.split()[1], 16) for l in status if l.startswith("Cap")}
print(json.dumps([wrote, caps["CapEff"], caps["CapPrm"]]))
"""


def test_as_the_task_definition_runs_it_only_its_mount_points_are_writable(
    image: BuiltImage,
) -> None:
    """A read-only root, no capabilities; /tmp (the task volume) and the converter pool's
    shared memory still work."""
    hardening = Hardening.of_task_definition(taskdef())
    done = run_in(image.name, ["python", "-c", PROBE_WRITES], hardening)
    assert done.returncode == 0, done.stderr[-2000:]
    wrote, effective, permitted = json.loads(done.stdout.strip().splitlines()[-1])
    assert wrote == {
        "/probe": False,
        "/app/probe": False,
        "/home/probe": False,
        "/var/tmp/probe": False,
        "/tmp/probe": True,
        "/dev/shm/p": True,
    }
    assert (effective, permitted) == (0, 0)


@pytest.mark.parametrize("hardened", [False, True], ids=["plain", "as-taskdef-hardens-it"])
def test_worker_in_image_drains_one_job_of_each_kind_and_exits_0(
    hardened: bool,
    moto: MotoServer,
    sqs: Any,
    s3: Any,
    make_queue: QueueFactory,
    gateway: StorageGatewayEndpoint,
    ganesha: Ganesha,
    run_image: RunImage,
) -> None:
    bucket = unique("bucket")
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key="in/people.csv", Body=b"name,age\nAda,36\nLinus,54\n")
    table = unique("refresh")
    dynamodb = boto3.client("dynamodb", endpoint_url=moto.url)
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "target", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "target", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    share = gateway.add_share(bucket)
    folder = ganesha.export_dir / "scans"
    folder.mkdir()
    (folder / "scan.raw").write_bytes(b"x" * 1234)
    os.chown(folder, USER_ID, USER_ID)  # the export grants the image's user its folder
    queue = make_queue()
    now = datetime.now(UTC).isoformat()
    for body in (
        {"job": "csv", "bucket": bucket, "key": "in/people.csv"},
        {"job": "refresh", "bucket": bucket, "key": "in/people.csv", "event_time": now},
        {"job": "sidecar", "filename": "scans/scan.raw", "results": "clean"},
    ):
        sqs.send_message(QueueUrl=queue.url, MessageBody=json.dumps(body))

    run = run_image(
        QUEUE_URL=queue.url,
        REFRESH_TABLE=table,
        REFRESH_WINDOW_SECONDS=1,
        AWS_ENDPOINT_URL_STORAGE_GATEWAY=gateway.url,
        SIDECAR_NFS_URL=ganesha.url(),
        WORKER_IDLE_EXIT_SECONDS=2,
        # Hardened: a read-only root, taskdef.json's capabilities dropped, only its mount
        # points writable (and /run, which buildah itself needs).
        hardening=Hardening.of_task_definition(taskdef()) if hardened else None,
    )

    assert run.wait() == 0, run.stderr()
    assert done(run) == {
        "csv": "acked",
        "refresh": "acked",
        "refresh_due": "acked",
        "sidecar": "acked",
    }
    output = s3.get_object(Bucket=bucket, Key="converted/in/people.json")["Body"].read()
    assert [json.loads(line) for line in output.splitlines()] == [
        {"name": "Ada", "age": "36"},
        {"name": "Linus", "age": "54"},
    ]
    assert [call.params["FileShareARN"] for call in gateway.refreshes()] == [share]
    sidecar = json.loads((folder / "scan-sidecar.json").read_text())
    assert sidecar["filename"] == "scans/scan.raw"
    assert sidecar["size"] == 1234
    assert sidecar["results"] == "clean"
    assert datetime.fromisoformat(sidecar["created"]).utcoffset() is not None
    assert (folder / "scan-sidecar.json").stat().st_uid == USER_ID  # written as the image's user
    assert drain_all(sqs, queue.url) == [] and drain_all(sqs, queue.dlq_url) == []


@dataclass(frozen=True)
class LongJob:
    run: ImageRun
    queue_url: str
    message_id: str


@pytest.fixture
def long_job(sqs: Any, make_queue: QueueFactory, run_image: RunImage) -> LongJob:
    """A container whose worker is busy with a 60 s probe job."""
    queue = make_queue()
    body = json.dumps({"job": "probe", "seconds": 60})
    message_id = sqs.send_message(QueueUrl=queue.url, MessageBody=body)["MessageId"]
    run = run_image(QUEUE_URL=queue.url, WORKER_PROBE_JOBS="true", WORKER_SHUTDOWN_GRACE_SECONDS=1)
    run.wait_for("worker.started", timeout=60)
    deadline = time.monotonic() + 30
    while held(sqs, queue.url) != 1:  # received: the job is running
        assert time.monotonic() < deadline, "the worker did not take the probe job"
        time.sleep(0.1)
    return LongJob(run, queue.url, message_id)


def held(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessagesNotVisible"])


def test_the_worker_process_in_the_image_runs_as_the_non_root_user(long_job: LongJob) -> None:
    assert long_job.run.command_process().uid == USER_ID


def test_sigterm_reaches_the_worker_in_the_image_and_the_long_job_is_handed_back(
    sqs: Any, long_job: LongJob
) -> None:
    """`docker stop` signals the container's first process: the exec form makes it Python."""
    command = long_job.run.command_process()
    assert command.argv[1:] == ["-m", "worker"] and Path(command.argv[0]).name == "python"
    os.kill(command.pid, signal.SIGTERM)
    assert long_job.run.wait() == 0, long_job.run.stderr()
    (finished,) = long_job.run.events("message.done")
    assert finished["message_id"] == long_job.message_id
    assert finished["outcome"] == "handed_back"
    (back,) = drain_all(sqs, long_job.queue_url)  # visible again at once, not after a lease
    assert first_message_id(back) == long_job.message_id  # a copy: the stop is not counted
