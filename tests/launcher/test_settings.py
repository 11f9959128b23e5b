"""Settings.from_env: the launcher's options, their defaults and the errors that name them."""

from __future__ import annotations

import json

import pytest

from launcher.errors import ConfigError
from launcher.settings import KeyFilter, Settings, default_started_by

QUEUE = "https://sqs.us-east-1.amazonaws.com/123456789012/jobs"
REQUIRED = {"QUEUE_URL": QUEUE, "CLUSTER": "c", "TASK_DEFINITION": "spotdrain-worker"}


def from_env(**env: str) -> Settings:
    return Settings.from_env({**REQUIRED, **env})


def test_defaults_follow_the_contract() -> None:
    settings = from_env()

    assert settings.capacity_providers == ("FARGATE_SPOT", "FARGATE")
    assert settings.max_tasks == 10
    assert settings.messages_per_task == 100
    assert settings.assign_public_ip == "DISABLED"
    assert settings.key_filter == KeyFilter()
    assert settings.container_name == "worker"
    assert settings.subnets == settings.security_groups == ()


@pytest.mark.parametrize("name", ["QUEUE_URL", "CLUSTER", "TASK_DEFINITION"])
def test_required_options_are_named_when_missing(name: str) -> None:
    env = {**REQUIRED, name: " "}

    with pytest.raises(ConfigError, match=f"^{name} is required"):
        Settings.from_env(env)


@pytest.mark.parametrize(
    ("env", "option"),
    [
        ({"MAX_TASKS": "0"}, "MAX_TASKS"),
        ({"MAX_TASKS": "ten"}, "MAX_TASKS"),
        ({"MESSAGES_PER_TASK": "0"}, "MESSAGES_PER_TASK"),
        ({"CAPACITY_PROVIDERS": " , "}, "CAPACITY_PROVIDERS"),
        ({"CAPACITY_PROVIDERS": "FARGATE,FARGATE"}, "CAPACITY_PROVIDERS"),
        ({"ASSIGN_PUBLIC_IP": "yes"}, "ASSIGN_PUBLIC_IP"),
        ({"SECURITY_GROUPS": "sg-1"}, "SUBNETS"),
        ({"STARTED_BY": "has space"}, "STARTED_BY"),
        ({"STARTED_BY": "x" * 37}, "STARTED_BY"),
    ],
)
def test_invalid_values_name_their_option(env: dict[str, str], option: str) -> None:
    with pytest.raises(ConfigError) as caught:
        from_env(**env)

    assert caught.value.option == option


def test_lists_are_comma_separated() -> None:
    settings = from_env(
        SUBNETS="subnet-1, subnet-2",
        SECURITY_GROUPS="sg-1",
        CAPACITY_PROVIDERS="FARGATE",
        KEY_SUFFIXES=".csv,.tsv",
        KEY_PREFIXES="in/",
        ASSIGN_PUBLIC_IP="enabled",
    )

    assert settings.subnets == ("subnet-1", "subnet-2")
    assert settings.security_groups == ("sg-1",)
    assert settings.capacity_providers == ("FARGATE",)
    assert settings.key_filter == KeyFilter(suffixes=(".csv", ".tsv"), prefixes=("in/",))
    assert settings.assign_public_ip == "ENABLED"


def test_started_by_is_derived_from_the_queue_within_36_characters() -> None:
    long_name = "https://sqs.eu-west-1.amazonaws.com/123456789012/" + "n" * 80 + ".fifo"

    for url in (QUEUE, long_name):
        started_by = default_started_by(url)
        assert len(started_by) <= 36
        assert set(started_by) <= set(
            "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_/"
        )
        assert default_started_by(url) == started_by
    assert default_started_by(QUEUE).endswith("-jobs")


def test_queues_with_the_same_name_elsewhere_get_different_started_by() -> None:
    other_account = QUEUE.replace("123456789012", "210987654321")

    assert default_started_by(QUEUE) != default_started_by(other_account)


def test_started_by_may_be_set_explicitly() -> None:
    assert from_env(STARTED_BY="nightly/jobs").started_by == "nightly/jobs"


def test_the_worker_options_present_are_forwarded_and_nothing_else() -> None:
    settings = from_env(
        CSV_SUFFIXES=".csv,.txt",
        REFRESH_TABLE="refreshes",
        SIDECAR_ROOT="/mnt/export",
        DLQ_URL="https://sqs/dlq",
        WORKER_CONCURRENCY="32",
        MAX_TASKS="4",
        AWS_REGION="us-east-1",
        KEY_SUFFIXES=".csv",
    )

    assert dict(settings.worker_environment) == {
        "CSV_SUFFIXES": ".csv,.txt",
        "REFRESH_TABLE": "refreshes",
        "SIDECAR_ROOT": "/mnt/export",
        "DLQ_URL": "https://sqs/dlq",
        "WORKER_CONCURRENCY": "32",
    }


def test_overrides_carry_the_queue_and_forwarded_options_for_the_named_container() -> None:
    settings = from_env(CONTAINER_NAME="app", CSV_OUTPUT_PREFIX="json/")

    assert settings.overrides() == {
        "containerOverrides": [
            {
                "name": "app",
                "environment": [
                    {"name": "QUEUE_URL", "value": QUEUE},
                    {"name": "CSV_OUTPUT_PREFIX", "value": "json/"},
                ],
            }
        ]
    }


def test_overrides_beyond_ecs_limit_are_a_configuration_error() -> None:
    with pytest.raises(ConfigError, match="8192"):
        from_env(CSV_RESULT_QUEUE_URL="x" * 8200)


def test_overrides_just_within_the_limit_are_accepted() -> None:
    base = len(json.dumps(from_env(CSV_X="").overrides(), separators=(",", ":")))

    from_env(CSV_X="x" * (8192 - base))
