"""deploy/stack.yaml lints clean, agrees with taskdef.json, and grants what the code calls, no more.

The permissions are checked against the code itself: every AWS operation the worker (or the
launcher) calls, found in its source and named by botocore's service models, must be allowed
to its role, and every allowed action must be one the code needs.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import botocore.session
from botocore import xform_name
from cfnlint.api import lint_file

from launcher.metrics import METRICS as LAUNCHER_METRICS
from tests.deploy.documents import (
    EMF_JOBS,
    EMF_METRICS,
    ROOT,
    SAMPLE_SOURCE_BUCKETS,
    SAMPLE_STACK_VALUES,
    STACK,
    actions,
    deployed,
    environment,
    evaluate,
    exists,
    raw_stack,
    resource,
    resources_of_type,
    stack,
    statements,
    substituted,
    taskdef,
)
from worker.metrics import JOB_METRICS, QUEUE_METRICS

# IAM actions whose names differ from the API operation they authorise.
IAM_ACTION = {
    "s3:HeadObject": "s3:GetObject",
    "s3:CreateMultipartUpload": "s3:PutObject",
    "s3:UploadPart": "s3:PutObject",
    "s3:CompleteMultipartUpload": "s3:PutObject",
    "s3:ListMultipartUploads": "s3:ListBucketMultipartUploads",
    "s3:ListParts": "s3:ListMultipartUploadParts",
    "sqs:ChangeMessageVisibilityBatch": "sqs:ChangeMessageVisibility",
    "sqs:DeleteMessageBatch": "sqs:DeleteMessage",
    "sqs:SendMessageBatch": "sqs:SendMessage",
}

# Granted beyond the operations called, each for a stated reason.
TASK_EXTRAS = {
    "s3:GetObjectVersion",  # GetObject with the VersionId of a versioned bucket's event
    "s3:ListBucket",  # a missing source object answers 404, not 403
    "s3:ListMultipartUploadParts",  # with AbortMultipartUpload, cleaning an interrupted upload
}
LAUNCHER_EXTRAS = {
    "ecs:TagResource",  # RunTask tags the tasks it starts
    "iam:PassRole",  # RunTask hands the task and execution roles to ECS
    "logs:CreateLogStream",
    "logs:PutLogEvents",
}


# Source under a package that no role of the stack runs: worker/ops is the `spotdrain`
# operator command (status, dlq), run with the operator's own credentials (docs/deploy.md, 6.).
NOT_RUN_BY_A_ROLE = {"worker": ("ops",)}


def called_actions(package: str, services: tuple[str, ...]) -> set[str]:
    """The IAM actions of every AWS operation called in a package's source."""
    skipped = [ROOT / package / sub for sub in NOT_RUN_BY_A_ROLE.get(package, ())]
    paths = [
        path
        for path in sorted((ROOT / package).rglob("*.py"))
        if not any(path.is_relative_to(s) for s in skipped)
    ]
    text = "\n".join(path.read_text() for path in paths)
    names = set(re.findall(r"\.([a-z][a-z0-9_]+)\s*[(,]", text))
    names |= set(re.findall(r"get_paginator\(\"([a-z0-9_]+)\"\)", text))
    # The lean SQS path (adapters/sqs_wire.py) names its operations as the wire protocol does.
    wire_names = set(re.findall(r"\"([A-Z][A-Za-z]+)\"", text))
    session = botocore.session.get_session()
    found = set()
    for service in services:
        prefix = session.get_service_model(service).signing_name
        for operation in session.get_service_model(service).operation_names:
            if xform_name(operation) in names or (service == "sqs" and operation in wire_names):
                action = f"{prefix}:{operation}"
                found.add(IAM_ACTION.get(action, action))
    return found


def test_stack_passes_cfn_lint() -> None:
    problems = lint_file(Path(STACK))
    assert not problems, "\n".join(str(p) for p in problems)


def test_task_role_allows_every_aws_call_of_the_worker() -> None:
    needed = called_actions("worker", ("s3", "sqs", "dynamodb", "storagegateway"))
    assert needed, "no AWS call found in the worker: the source scan is broken"
    assert needed <= actions("TaskRole"), needed - actions("TaskRole")


def test_task_role_allows_nothing_the_worker_does_not_call() -> None:
    needed = called_actions("worker", ("s3", "sqs", "dynamodb", "storagegateway"))
    assert actions("TaskRole") - needed - TASK_EXTRAS == set()


def test_launcher_role_allows_every_aws_call_of_the_launcher() -> None:
    needed = called_actions("launcher", ("sqs", "ecs", "dynamodb"))
    assert {"sqs:SendMessage", "ecs:RunTask", "ecs:ListTasks", "dynamodb:UpdateItem"} <= needed
    assert needed <= actions("LauncherRole"), needed - actions("LauncherRole")


def test_launcher_role_allows_nothing_the_launcher_does_not_call() -> None:
    needed = called_actions("launcher", ("sqs", "ecs", "dynamodb"))
    assert actions("LauncherRole") - needed - LAUNCHER_EXTRAS == set()


def test_the_csv_result_queue_is_writable_exactly_when_its_arn_is_given() -> None:
    """CSV_RESULT_QUEUE_URL is optional: the worker checks the queue, then sends to it."""
    [(condition, granted, absent)] = [
        s["Fn::If"]
        for s in resource("TaskRole")["Policies"][0]["PolicyDocument"]["Statement"]
        if "Fn::If" in s and s["Fn::If"][0] == "HasCsvResultQueue"
    ]
    assert stack()["Conditions"][condition] == {
        "Fn::Not": [{"Fn::Equals": [{"Ref": "CsvResultQueueArn"}, ""]}]
    }
    assert set(granted["Action"]) == {"sqs:SendMessage", "sqs:GetQueueAttributes"}
    assert granted["Resource"] == {"Ref": "CsvResultQueueArn"}
    assert absent == {"Ref": "AWS::NoValue"}
    assert stack()["Parameters"]["CsvResultQueueArn"]["Default"] == ""


def test_no_role_has_a_wildcard_action() -> None:
    for role in ("ExecutionRole", "TaskRole", "LauncherRole"):
        assert not [a for a in actions(role) if "*" in a], role


def test_launcher_passes_only_the_two_task_roles_and_only_to_ecs_tasks() -> None:
    (passing,) = [s for s in statements("LauncherRole") if s["Action"] == "iam:PassRole"]
    assert passing["Resource"] == [
        {"Fn::GetAtt": ["ExecutionRole", "Arn"]},
        {"Fn::GetAtt": ["TaskRole", "Arn"]},
    ]
    assert passing["Condition"] == {
        "StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}
    }


def test_launcher_runs_only_the_worker_family_in_its_own_cluster() -> None:
    (running,) = [s for s in statements("LauncherRole") if s["Action"] == "ecs:RunTask"]
    assert running["Resource"]["Fn::Sub"].endswith(":task-definition/${TaskDefinitionFamily}:*")
    assert running["Condition"] == {
        "ArnEquals": {"ecs:cluster": {"Fn::GetAtt": ["Cluster", "Arn"]}}
    }
    assert stack()["Parameters"]["TaskDefinitionFamily"]["Default"] == taskdef()["family"]


def test_queue_visibility_equals_the_workers_lease() -> None:
    """The worker renews its lease on each message while the job runs (the heartbeat)."""
    visibility = resource("JobQueue")["VisibilityTimeout"]
    assert visibility == int(environment(taskdef())["WORKER_VISIBILITY_SECONDS"])


def test_redrive_lets_the_worker_dead_letter_first() -> None:
    """The worker moves a message with its reason; the redrive only catches crash loops."""
    redrive = resource("JobQueue")["RedrivePolicy"]
    assert redrive["deadLetterTargetArn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert redrive["maxReceiveCount"] > int(environment(taskdef())["WORKER_MAX_RECEIVES"])


def test_refresh_table_has_the_string_partition_key_target() -> None:
    table = resource("RefreshTable")
    assert table["KeySchema"] == [{"AttributeName": "target", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "target", "AttributeType": "S"}]


def test_cluster_offers_fargate_spot_first() -> None:
    cluster = resource("Cluster")
    assert set(cluster["CapacityProviders"]) == {"FARGATE", "FARGATE_SPOT"}
    assert cluster["DefaultCapacityProviderStrategy"][0]["CapacityProvider"] == "FARGATE_SPOT"
    launcher_env = resource("Launcher")["Environment"]["Variables"]
    assert launcher_env["CAPACITY_PROVIDERS"] == "FARGATE_SPOT,FARGATE"


def test_launcher_function_runs_the_contracts_handler_with_its_required_variables() -> None:
    function = resource("Launcher")
    assert function["Handler"] == "launcher.handler.lambda_handler"
    assert {"QUEUE_URL", "CLUSTER", "TASK_DEFINITION"} <= set(function["Environment"]["Variables"])


def test_output_is_written_only_under_the_taskdefs_output_prefix() -> None:
    prefix = environment(taskdef())["CSV_OUTPUT_PREFIX"]
    (writing,) = [s for s in statements("TaskRole") if s.get("Sid") == "WriteOutput"]
    text = str(writing["Resource"])
    assert text.count(f"/{prefix}*") == 3  # the output bucket, and each source bucket


def test_every_trigger_can_invoke_the_launcher() -> None:
    resources = stack()["Resources"]
    principals = {
        r["Properties"]["Principal"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::Permission"
    }
    assert principals == {"events.amazonaws.com", "sns.amazonaws.com", "s3.amazonaws.com"}
    assert resources["SnsSubscription"]["Properties"]["Protocol"] == "lambda"


def test_log_groups_exist_with_retention_for_the_worker_and_the_launcher() -> None:
    for name in ("WorkerLogGroup", "LauncherLogGroup"):
        assert resource(name)["RetentionInDays"] == {"Ref": "LogRetentionDays"}


# ---- the fleet heals itself: a schedule and a stopped-task rule invoke the launcher, and what
# cannot be delivered or handled lands in the failure queue.

LAUNCHER_ARN = {"Fn::GetAtt": ["Launcher", "Arn"]}
FAILURE_QUEUE_ARN = {"Fn::GetAtt": ["LauncherFailureQueue", "Arn"]}
# EventBridge's rate expressions: a singular unit for 1, a plural one above.
RATE = re.compile(r"rate\((1 (minute|hour|day)|[1-9][0-9]* (minutes|hours|days))\)")


def test_the_schedule_invokes_the_launcher_every_reconcile_minutes_one_by_default() -> None:
    parameter = stack()["Parameters"]["ReconcileMinutes"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 1, 1)
    rule = resource("ReconcileRule")
    assert [t["Arn"] for t in rule["Targets"]] == [LAUNCHER_ARN]
    assert "EventPattern" not in rule  # a scheduled rule sends the "Scheduled Event" itself
    expressions = {
        minutes: evaluate(rule["ScheduleExpression"], deployed({"ReconcileMinutes": minutes}))
        for minutes in ("1", "2", "5", "1440")
    }
    assert expressions == {
        "1": "rate(1 minute)",
        "2": "rate(2 minutes)",
        "5": "rate(5 minutes)",
        "1440": "rate(1440 minutes)",
    }
    assert all(RATE.fullmatch(e) for e in expressions.values()), expressions
    assert evaluate(rule["ScheduleExpression"], deployed()) == "rate(1 minute)"


def test_the_stopped_task_rule_matches_only_stopped_tasks_of_the_stacks_cluster() -> None:
    rule = resource("TaskStoppedRule")
    assert rule["EventPattern"] == {
        "source": ["aws.ecs"],
        "detail-type": ["ECS Task State Change"],
        "detail": {
            "clusterArn": [{"Fn::GetAtt": ["Cluster", "Arn"]}],
            "lastStatus": ["STOPPED"],
        },
    }
    assert [t["Arn"] for t in rule["Targets"]] == [LAUNCHER_ARN]


def test_every_eventbridge_rule_target_retries_then_dead_letters_to_the_failure_queue() -> None:
    rules = resources_of_type("AWS::Events::Rule")
    assert set(rules) == {"EventBridgeRule", "ReconcileRule", "TaskStoppedRule"}
    for name, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            retry = target["RetryPolicy"]
            assert 0 < retry["MaximumRetryAttempts"] <= 185, name
            assert 60 <= retry["MaximumEventAgeInSeconds"] <= 86400, name
            assert target["DeadLetterConfig"] == {"Arn": FAILURE_QUEUE_ARN}, name
            assert "RoleArn" not in target, name  # Lambda targets use the function's policy


def test_every_eventbridge_rule_may_invoke_the_launcher_through_its_own_permission() -> None:
    permissions = [
        (r.get("Condition"), r["Properties"])
        for r in resources_of_type("AWS::Lambda::Permission").values()
        if r["Properties"]["Principal"] == "events.amazonaws.com"
    ]
    for _, permission in permissions:
        assert permission["FunctionName"] == {"Ref": "Launcher"}
        assert permission["Action"] == "lambda:InvokeFunction"
    by_rule = {p["SourceArn"]["Fn::GetAtt"][0]: c for c, p in permissions}
    assert len(by_rule) == len(permissions)  # one permission per rule, each with its SourceArn
    rules = resources_of_type("AWS::Events::Rule")
    assert by_rule == {name: rule.get("Condition") for name, rule in rules.items()}


def test_the_failure_queue_accepts_only_eventbridge_sends_from_the_stacks_rules() -> None:
    (policy,) = resources_of_type("AWS::SQS::QueuePolicy").values()
    assert policy["Properties"]["Queues"] == [{"Ref": "LauncherFailureQueue"}]
    for trigger in ("true", "false"):
        parameters = deployed({"EventBridgeTrigger": trigger})
        document = evaluate(policy["Properties"]["PolicyDocument"], parameters)
        (statement,) = document["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"Service": "events.amazonaws.com"}
        assert statement["Action"] == "sqs:SendMessage"
        assert statement["Resource"] == FAILURE_QUEUE_ARN
        (condition,) = statement["Condition"].items()
        assert condition[0] == "ArnEquals"
        assert list(condition[1]) == ["aws:SourceArn"]
        allowed = condition[1]["aws:SourceArn"]
        rules = [n for n in resources_of_type("AWS::Events::Rule") if exists(n, parameters)]
        assert sorted(a["Fn::GetAtt"][0] for a in allowed) == sorted(rules), trigger
        assert all(a == {"Fn::GetAtt": [a["Fn::GetAtt"][0], "Arn"]} for a in allowed)
    assert not exists("EventBridgeRule", deployed({"EventBridgeTrigger": "false"}))


def test_the_failure_queue_keeps_its_records_for_14_days_under_a_fixed_name() -> None:
    queue = resource("LauncherFailureQueue")
    assert queue["QueueName"] == {"Fn::Sub": "${AWS::StackName}-launcher-failures"}
    assert queue["MessageRetentionPeriod"] == 14 * 24 * 3600
    assert queue["SqsManagedSseEnabled"] is True
    assert "RedrivePolicy" not in queue  # the end of the line
    outputs = stack()["Outputs"]
    assert outputs["LauncherFailureQueueUrl"]["Value"] == {"Ref": "LauncherFailureQueue"}
    assert outputs["LauncherFailureQueueName"]["Value"] == {
        "Fn::GetAtt": ["LauncherFailureQueue", "QueueName"]
    }


def test_failed_asynchronous_invocations_of_the_launcher_go_to_the_failure_queue() -> None:
    (config,) = resources_of_type("AWS::Lambda::EventInvokeConfig").values()
    properties = config["Properties"]
    assert properties["FunctionName"] == {"Ref": "Launcher"}
    assert properties["Qualifier"] == "$LATEST"
    assert properties["MaximumRetryAttempts"] == 2
    assert 60 <= properties["MaximumEventAgeInSeconds"] <= 21600
    assert properties["DestinationConfig"] == {"OnFailure": {"Destination": FAILURE_QUEUE_ARN}}
    assert "Condition" not in config


def test_the_launcher_role_may_send_to_the_failure_queue_and_nothing_else_new() -> None:
    launcher = list(statements("LauncherRole"))
    assert [s["Sid"] for s in launcher] == [
        "Logs",
        "Enqueue",
        "RunWorkers",
        "TagWorkersAtLaunch",
        "SizingLease",
        "CountWorkers",
        "HandOverRoles",
        "FailureDestination",
    ]
    (failing,) = [s for s in launcher if s["Sid"] == "FailureDestination"]
    assert failing == {
        "Sid": "FailureDestination",
        "Effect": "Allow",
        "Action": "sqs:SendMessage",
        "Resource": FAILURE_QUEUE_ARN,
    }
    others = [s for s in launcher if s is not failing]
    assert "LauncherFailureQueue" not in str(others)
    for role in ("ExecutionRole", "TaskRole"):
        assert "LauncherFailureQueue" not in str(resource(role))


def test_the_schedule_adds_no_iam_role_only_the_three_remain() -> None:
    kinds = {r["Type"] for r in stack()["Resources"].values()}
    assert {k for k in kinds if k.startswith("AWS::IAM::")} == {"AWS::IAM::Role"}
    assert "AWS::Scheduler::Schedule" not in kinds
    assert set(resources_of_type("AWS::IAM::Role")) == {
        "ExecutionRole",
        "TaskRole",
        "LauncherRole",
    }


# ---- hardening (issue 17): the fleet's bound, who may invoke the launcher, the image tags


def test_the_launcher_sizes_under_a_lease_in_a_table_of_its_own() -> None:
    table = resource("FleetLockTable")
    assert table["KeySchema"] == [{"AttributeName": "fleet", "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": "fleet", "AttributeType": "S"}]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    variables = resource("Launcher")["Environment"]["Variables"]
    assert variables["FLEET_LOCK_TABLE"] == {"Ref": "FleetLockTable"}
    assert "ReservedConcurrentExecutions" not in resource("Launcher")


def test_the_launcher_may_only_update_the_lease_item_table() -> None:
    (lease,) = [s for s in statements("LauncherRole") if s["Sid"] == "SizingLease"]
    assert lease["Action"] == "dynamodb:UpdateItem"
    assert lease["Resource"] == {"Fn::GetAtt": ["FleetLockTable", "Arn"]}


def test_each_source_bucket_alone_may_invoke_the_launcher_through_s3() -> None:
    permissions = {
        name: r["Properties"]
        for name, r in resources_of_type("AWS::Lambda::Permission").items()
        if r["Properties"]["Principal"] == "s3.amazonaws.com"
    }
    assert sorted(p["SourceArn"]["Fn::Sub"] for p in permissions.values()) == sorted(
        f"arn:${{AWS::Partition}}:s3:::{bucket}" for bucket in SAMPLE_SOURCE_BUCKETS
    )
    for name, properties in permissions.items():
        assert properties["SourceAccount"] == {"Ref": "AWS::AccountId"}
        assert stack()["Resources"][name]["Condition"] == "UseS3"
    # As written: one loop over the SourceBuckets parameter, under the transform that runs it.
    template = raw_stack()
    assert template["Transform"] == "AWS::LanguageExtensions"
    (loop,) = [v for k, v in template["Resources"].items() if k.startswith("Fn::ForEach::")]
    assert loop[1] == {"Ref": "SourceBuckets"}


def test_every_lambda_permission_names_its_source() -> None:
    for name, r in resources_of_type("AWS::Lambda::Permission").items():
        assert "SourceArn" in r["Properties"], name


def test_image_tags_are_immutable() -> None:
    assert resource("Repository")["ImageTagMutability"] == "IMMUTABLE"


# ---- alarms and the dashboard: every metric they name exists, with the dimensions it has.

# The AWS metrics the stack may name, with their namespace, their dimension names in the order
# written, and the values each dimension may take in a deployment (SAMPLE_STACK_VALUES). From
# the services' documentation: SQS (QueueName), Lambda (FunctionName), and Fargate's usage
# metric (AWS/Usage ResourceCount: Service Fargate, Type Resource, Resource vCPU, Class
# Standard/Spot or Standard/OnDemand, account-wide).
QUEUE_NAMES = {
    SAMPLE_STACK_VALUES[f"{q}.QueueName"]
    for q in ("JobQueue", "DeadLetterQueue", "LauncherFailureQueue")
}
FUNCTION_NAMES = {SAMPLE_STACK_VALUES["Launcher"]}
SQS_QUEUE = {"QueueName": QUEUE_NAMES}
AWS_METRICS: dict[tuple[str, str], dict[str, set[str]]] = {
    ("AWS/SQS", "ApproximateNumberOfMessagesVisible"): SQS_QUEUE,
    ("AWS/SQS", "ApproximateNumberOfMessagesNotVisible"): SQS_QUEUE,
    ("AWS/SQS", "ApproximateNumberOfMessagesDelayed"): SQS_QUEUE,
    ("AWS/SQS", "ApproximateAgeOfOldestMessage"): SQS_QUEUE,
    ("AWS/Lambda", "Errors"): {"FunctionName": FUNCTION_NAMES},
    ("AWS/Lambda", "Throttles"): {"FunctionName": FUNCTION_NAMES},
    ("AWS/Usage", "ResourceCount"): {
        "Service": {"Fargate"},
        "Type": {"Resource"},
        "Resource": {"vCPU"},
        "Class": {"Standard/Spot", "Standard/OnDemand"},
    },
}
STATISTIC = re.compile(r"SampleCount|Average|Sum|Minimum|Maximum|p(\d{1,2}(\.\d+)?|100)")

# Each alarm: what it watches, of which resource, how, and what it makes of missing data.
# SQS emits a queue's metrics only while the queue is active (an API call in six hours), so
# the alarms on messages waiting keep their state through silence (`ignore`); the age of the
# oldest message and Lambda's Errors fall silent when there is nothing to report.
ALARMS = {
    "DeadLettersAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": {"Fn::GetAtt": ["DeadLetterQueue", "QueueName"]}},
        ("Maximum", 60, 1, 1),
        0,
        "ignore",
    ),
    "OldestMessageAlarm": (
        "AWS/SQS",
        "ApproximateAgeOfOldestMessage",
        {"QueueName": {"Fn::GetAtt": ["JobQueue", "QueueName"]}},
        ("Maximum", 60, 5, 3),
        {"Ref": "OldestMessageAlarmSeconds"},
        "notBreaching",
    ),
    "LauncherErrorsAlarm": (
        "AWS/Lambda",
        "Errors",
        {"FunctionName": {"Ref": "Launcher"}},
        ("Sum", 300, 1, 1),
        0,
        "notBreaching",
    ),
    "LauncherFailuresAlarm": (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
        {"QueueName": {"Fn::GetAtt": ["LauncherFailureQueue", "QueueName"]}},
        ("Maximum", 60, 1, 1),
        0,
        "ignore",
    ),
}
TOPIC = "arn:aws:sns:eu-west-1:123456789012:oncall"


def test_the_emf_metrics_are_the_ones_the_worker_and_the_launcher_write() -> None:
    written: dict[str, tuple[str, ...]] = {
        name: ("Queue",) for name in (*QUEUE_METRICS, *LAUNCHER_METRICS)
    }
    written |= {name: ("Queue", "Job") for name in JOB_METRICS}
    assert written == EMF_METRICS


def test_each_alarm_watches_its_metric_of_its_resource_above_its_threshold() -> None:
    assert set(resources_of_type("AWS::CloudWatch::Alarm")) == set(ALARMS)
    for name, (namespace, metric, dimensions, shape, threshold, missing) in ALARMS.items():
        alarm = resource(name)
        assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric), name
        assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == dimensions, name
        assert [d["Name"] for d in alarm["Dimensions"]] == list(AWS_METRICS[namespace, metric])
        statistic, period, evaluated, to_alarm = shape
        assert alarm["Statistic"] == statistic, name
        assert alarm["Period"] == period, name
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (evaluated, to_alarm)
        assert alarm["ComparisonOperator"] == "GreaterThanThreshold", name
        assert alarm["Threshold"] == threshold, name
        assert alarm["TreatMissingData"] == missing, name
        assert "Condition" not in stack()["Resources"][name]  # every deployment has them


def test_the_oldest_message_alarm_fires_above_the_parameter_900_s_by_default() -> None:
    parameter = stack()["Parameters"]["OldestMessageAlarmSeconds"]
    assert (parameter["Type"], parameter["Default"], parameter["MinValue"]) == ("Number", 900, 60)
    threshold = resource("OldestMessageAlarm")["Threshold"]
    assert evaluate(threshold, deployed({"OldestMessageAlarmSeconds": "1800"})) == "1800"
    assert evaluate(threshold, deployed()) == "900"


def test_the_alarms_notify_the_topic_exactly_when_alarm_topic_arn_is_given() -> None:
    parameter = stack()["Parameters"]["AlarmTopicArn"]
    assert parameter["Default"] == ""
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("") and pattern.fullmatch(TOPIC)
    assert not pattern.fullmatch("oncall")  # a name, not an ARN
    for name in ALARMS:
        silent = evaluate(resource(name), deployed())
        assert not {"AlarmActions", "OKActions", "InsufficientDataActions"} & set(silent), name
        notifying = evaluate(resource(name), deployed({"AlarmTopicArn": TOPIC}))
        assert notifying["AlarmActions"] == [TOPIC], name
        assert notifying["OKActions"] == [TOPIC], name
        assert "InsufficientDataActions" not in notifying, name


def test_every_alarm_description_says_what_it_means_and_which_command_to_run() -> None:
    for name in ALARMS:
        alarm = resource(name)
        assert alarm["AlarmName"] == {
            "Fn::Sub": "${AWS::StackName}-" + re.sub(r"(?<!^)(?=[A-Z])", "-", name[:-5]).lower()
        }
        text = substituted(alarm["AlarmDescription"]["Fn::Sub"])
        assert len(text) <= 1024, name  # CloudWatch's limit
        commands = re.findall(r"`((?:spotdrain|aws) [^`]+)`", text)
        assert commands, f"{name}: no runbook command in {text!r}"
        assert re.search(r"\b(Run|run|Check|check|fix)\b", text), name
        assert "${" not in text, name


def test_the_alarm_names_are_outputs() -> None:
    outputs = stack()["Outputs"]
    for name in ALARMS:
        assert outputs[f"{name}Name"]["Value"] == {"Ref": name}


def dashboard() -> dict[str, Any]:
    """The dashboard body as a deployment renders it (sample values for every `${...}`)."""
    body = resource("Dashboard")["DashboardBody"]
    document: dict[str, Any] = json.loads(substituted(body["Fn::Sub"]))
    return document


def metric_rows() -> list[tuple[str, str, list[str], dict[str, str], dict[str, Any], str]]:
    """(namespace, metric, dimension names, dimensions, options, widget stat) of every row."""
    rows = []
    for widget in dashboard()["widgets"]:
        if widget["type"] != "metric":
            continue
        properties = widget["properties"]
        for row in properties["metrics"]:
            assert row[0] not in ("...", "."), "write dashboard rows out in full"
            options = row[-1] if isinstance(row[-1], dict) else {}
            namespace, metric, *pairs = row[:-1] if options else row
            assert len(pairs) % 2 == 0, row
            names, values = pairs[::2], pairs[1::2]
            stat = options.get("stat", properties.get("stat", ""))
            rows.append(
                (namespace, metric, names, dict(zip(names, values, strict=True)), options, stat)
            )
    return rows


def test_the_dashboard_is_valid_json_with_its_widgets_in_the_stacks_region() -> None:
    assert resource("Dashboard")["DashboardName"] == {"Fn::Sub": "${AWS::StackName}"}
    widgets = dashboard()["widgets"]
    assert {w["type"] for w in widgets} == {"metric", "alarm"}
    for widget in widgets:
        assert widget["x"] >= 0 and widget["x"] + widget["width"] <= 24, widget
        if widget["type"] == "metric":
            assert widget["properties"]["region"] == SAMPLE_STACK_VALUES["AWS::Region"]
            assert widget["properties"]["metrics"], widget


def test_the_dashboard_names_only_metrics_that_exist_with_their_dimensions() -> None:
    namespace_of_emf = SAMPLE_STACK_VALUES["MetricsNamespace"]
    for namespace, metric, names, dimensions, _, stat in metric_rows():
        row = (namespace, metric, dimensions)
        assert STATISTIC.fullmatch(stat), row
        if namespace == namespace_of_emf:
            assert tuple(names) == EMF_METRICS[metric], row
            assert dimensions["Queue"] == SAMPLE_STACK_VALUES["JobQueue.QueueName"], row
            assert dimensions.get("Job", "csv") in EMF_JOBS, row
        else:
            allowed = AWS_METRICS[namespace, metric]
            assert names == list(allowed), row
            assert all(dimensions[n] in allowed[n] for n in names), row


def test_the_dashboard_shows_every_emf_metric_each_job_and_every_queue() -> None:
    rows = metric_rows()
    namespace_of_emf = SAMPLE_STACK_VALUES["MetricsNamespace"]
    assert {m for ns, m, *_ in rows if ns == namespace_of_emf} == set(EMF_METRICS)
    jobs = {d["Job"] for ns, m, _, d, _, _ in rows if m == "JobDuration"}
    assert jobs == EMF_JOBS
    durations = {(d["Job"], stat) for _, m, _, d, _, stat in rows if m == "JobDuration"}
    assert durations == {(job, p) for job in EMF_JOBS for p in ("p50", "p90")}
    visible = {d["QueueName"] for _, m, _, d, _, _ in rows if m.endswith("MessagesVisible")}
    assert visible == QUEUE_NAMES
    fleet = {d["Class"] for _, m, _, d, _, _ in rows if m == "ResourceCount"}
    assert fleet == {"Standard/Spot", "Standard/OnDemand"}


def test_the_dashboard_shows_the_state_of_every_alarm() -> None:
    (widget,) = [w for w in dashboard()["widgets"] if w["type"] == "alarm"]
    assert widget["properties"]["alarms"] == [SAMPLE_STACK_VALUES[f"{name}.Arn"] for name in ALARMS]


def test_the_dashboards_name_and_console_url_are_outputs() -> None:
    outputs = stack()["Outputs"]
    assert outputs["DashboardName"]["Value"] == {"Ref": "Dashboard"}
    url = substituted(
        outputs["DashboardUrl"]["Value"]["Fn::Sub"],
        SAMPLE_STACK_VALUES | {"Dashboard": "spotdrain"},
    )
    assert url == (
        "https://eu-west-1.console.aws.amazon.com/cloudwatch/home?region=eu-west-1"
        "#dashboards:name=spotdrain"
    )


def test_the_launcher_receives_the_metrics_namespace_from_the_parameter() -> None:
    variables = resource("Launcher")["Environment"]["Variables"]
    assert variables["METRICS_NAMESPACE"] == {"Ref": "MetricsNamespace"}
    parameter = stack()["Parameters"]["MetricsNamespace"]
    assert parameter["Default"] == "spotdrain"
    pattern = re.compile(parameter["AllowedPattern"])
    assert pattern.fullmatch("spotdrain") and pattern.fullmatch("team/spotdrain-prod")
    assert not pattern.fullmatch("AWS/SQS") and not pattern.fullmatch("")
