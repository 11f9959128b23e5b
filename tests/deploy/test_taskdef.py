"""taskdef.json is a Fargate task definition AWS accepts and Fargate Spot can run.

botocore checks the request shape against the ECS API model; the ranges AWS enforces on the
server (and moto does not) are checked explicitly; the worker's own settings parser checks
every value the task gives it.
"""

from __future__ import annotations

import re

import botocore.session
import pytest
from botocore.validate import ParamValidator

from tests.deploy.documents import (
    ROOT,
    USER_PLACEHOLDERS,
    container,
    environment,
    filled_taskdef,
    placeholders,
    stack,
    taskdef,
)
from worker import lifecycle
from worker.__main__ import OPTIONS
from worker.settings import Settings

# Fargate's CPU units and, for each, the memory sizes (MiB) AWS accepts (Linux, platform 1.4).
FARGATE_SIZES: dict[int, range] = {
    256: range(512, 2048 + 1, 512),
    512: range(1024, 4096 + 1, 1024),
    1024: range(2048, 8192 + 1, 1024),
    2048: range(4096, 16384 + 1, 1024),
    4096: range(8192, 30720 + 1, 1024),
    8192: range(16384, 61440 + 1, 4096),
    16384: range(32768, 122880 + 1, 8192),
}
FARGATE_STOP_TIMEOUT_MAX = 120
# Closing clients and pools and the interpreter's exit, after the budget (measured in chaos).
STOP_SLACK_SECONDS = 4.0


def test_taskdef_passes_botocore_validation_of_register_task_definition() -> None:
    model = botocore.session.get_session().get_service_model("ecs")
    shape = model.operation_model("RegisterTaskDefinition").input_shape
    report = ParamValidator().validate(filled_taskdef(), shape)
    assert not report.has_errors(), report.generate_report()


def test_taskdef_runs_on_fargate_spot() -> None:
    """Fargate Spot takes Linux x86_64 tasks with awsvpc networking only."""
    document = taskdef()
    assert document["requiresCompatibilities"] == ["FARGATE"]
    assert document["networkMode"] == "awsvpc"
    assert document["runtimePlatform"] == {
        "operatingSystemFamily": "LINUX",
        "cpuArchitecture": "X86_64",
    }


def test_cpu_and_memory_are_a_fargate_pair() -> None:
    document = taskdef()
    cpu, memory = int(document["cpu"]), int(document["memory"])
    assert cpu in FARGATE_SIZES, f"{cpu} CPU units is no Fargate size"
    assert memory in FARGATE_SIZES[cpu], f"{memory} MiB does not go with {cpu} CPU units"


def test_memory_leaves_room_for_concurrent_csv_jobs() -> None:
    """16 jobs in flight, plus one conversion process per vCPU, within the task's memory."""
    document = taskdef()
    assert int(document["cpu"]) >= 1024
    assert int(document["memory"]) >= 2048


def test_stop_timeout_is_within_fargates_maximum_and_covers_the_workers_stop_budget() -> None:
    """Grace, cancel and final flush as the worker reads them from the task's environment,
    plus the closing of clients and pools (the slack tests/chaos/test_graceful.py measures)."""
    worker = container(taskdef())
    settings = Settings.from_env({"QUEUE_URL": "https://sqs.example/q", **environment(taskdef())})
    assert worker["stopTimeout"] <= FARGATE_STOP_TIMEOUT_MAX == lifecycle.FARGATE_STOP_TIMEOUT_MAX
    assert settings.stop_budget_seconds + STOP_SLACK_SECONDS <= worker["stopTimeout"]


def test_ephemeral_storage_when_given_is_21_to_200_gib() -> None:
    storage = taskdef().get("ephemeralStorage")
    if storage is None:
        return  # Fargate's default 20 GiB: the CSV job streams, it keeps nothing on disk
    assert 21 <= storage["sizeInGiB"] <= 200


def test_worker_logs_go_to_cloudwatch_with_awslogs() -> None:
    logging = container(taskdef())["logConfiguration"]
    assert logging["logDriver"] == "awslogs"
    assert {"awslogs-group", "awslogs-region", "awslogs-stream-prefix"} <= set(logging["options"])


def test_container_is_essential_and_keeps_the_images_command_and_user() -> None:
    """No command, entry point or user override: the image's non-root `python -m worker`."""
    worker = container(taskdef())
    assert worker["essential"] is True
    assert not {"command", "entryPoint", "user"} & set(worker)


def test_every_variable_is_a_worker_option() -> None:
    unknown = set(environment(taskdef())) - set(OPTIONS) - {"AWS_REGION"}
    assert not unknown


def test_the_worker_accepts_every_value_of_the_filled_task_definition() -> None:
    settings = Settings.from_env(environment(filled_taskdef()))
    assert settings.spot_imds == "off"  # Fargate has no instance metadata: Spot is SIGTERM
    assert settings.concurrency == 16
    assert settings.dlq_url is not None
    assert settings.refresh.table is not None


def test_roles_are_marked_placeholders() -> None:
    document = taskdef()
    assert document["executionRoleArn"] == "${EXECUTION_ROLE_ARN}"
    assert document["taskRoleArn"] == "${TASK_ROLE_ARN}"


def test_every_placeholder_is_filled_from_a_stack_output() -> None:
    """Each output's description names the placeholder it fills (docs/deploy.md)."""
    described = {output["Description"] for output in stack()["Outputs"].values()}
    assert placeholders() - USER_PLACEHOLDERS <= described


@pytest.mark.parametrize(
    "name", ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"]
)
def test_no_credentials_in_the_task_definition(name: str) -> None:
    assert name not in environment(taskdef())
    assert "secrets" not in container(taskdef())


def test_the_deploy_guide_fills_every_placeholder() -> None:
    guide = (ROOT / "docs" / "deploy.md").read_text()
    (line,) = [line for line in guide.splitlines() if line.startswith("envsubst '")]
    assert set(re.findall(r"\$([A-Z_]+)", line)) == placeholders()


# ---- hardening: the worker runs with a read-only root, no capabilities and one scratch volume


def test_the_root_filesystem_is_read_only() -> None:
    assert container(taskdef())["readonlyRootFilesystem"] is True


def test_every_linux_capability_is_dropped_and_none_added() -> None:
    capabilities = container(taskdef())["linuxParameters"]["capabilities"]
    assert capabilities == {"drop": ["ALL"]}


def test_tmp_is_the_only_writable_path_an_ephemeral_task_volume() -> None:
    """/tmp (multiprocessing's scratch directory) on Fargate task storage; /dev/shm, where the
    converter pool's shared memory lives, is Fargate's own tmpfs, not part of the root
    filesystem, so it stays writable (tests/image runs the image this way)."""
    document = taskdef()
    assert document["volumes"] == [{"name": "tmp"}]  # no host path, no EFS: task storage
    assert container(document)["mountPoints"] == [
        {"sourceVolume": "tmp", "containerPath": "/tmp", "readOnly": False}
    ]
