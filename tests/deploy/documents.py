"""Read the deployment documents (taskdef.json, deploy/stack.yaml, Dockerfile) for the tests."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

from cfnlint.decode import decode_str

ROOT = Path(__file__).resolve().parents[2]
TASKDEF = ROOT / "taskdef.json"
STACK = ROOT / "deploy" / "stack.yaml"
DOCKERFILE = ROOT / "Dockerfile"
PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")

# Placeholders a user fills in from their own account rather than from the stack's outputs.
USER_PLACEHOLDERS = {"IMAGE", "AWS_REGION"}

# What a deployment fills in, shaped as AWS would print it (docs/deploy.md uses envsubst).
SAMPLE_VALUES = {
    "IMAGE": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/spotdrain-worker:0.1.0",
    "AWS_REGION": "eu-west-1",
    "QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/spotdrain-jobs",
    "DLQ_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/spotdrain-dlq",
    "REFRESH_TABLE": "spotdrain-refresh",
    "LOG_GROUP": "/ecs/spotdrain/worker",
    "EXECUTION_ROLE_ARN": "arn:aws:iam::123456789012:role/spotdrain-ExecutionRole-AbC123",
    "TASK_ROLE_ARN": "arn:aws:iam::123456789012:role/spotdrain-TaskRole-DeF456",
}


@cache
def taskdef_text() -> str:
    return TASKDEF.read_text()


def taskdef() -> dict[str, Any]:
    """taskdef.json as written, placeholders included."""
    document: dict[str, Any] = json.loads(taskdef_text())
    return document


def filled_taskdef(values: dict[str, str] = SAMPLE_VALUES) -> dict[str, Any]:
    """taskdef.json with every placeholder replaced, as `envsubst` does it."""
    text = PLACEHOLDER.sub(lambda m: values[m.group(1)], taskdef_text())
    document: dict[str, Any] = json.loads(text)
    return document


def placeholders() -> set[str]:
    return set(PLACEHOLDER.findall(taskdef_text()))


def container(document: dict[str, Any]) -> dict[str, Any]:
    (worker,) = [c for c in document["containerDefinitions"] if c["name"] == "worker"]
    return worker


def environment(document: dict[str, Any]) -> dict[str, str]:
    return {item["name"]: item["value"] for item in container(document)["environment"]}


@cache
def _stack() -> Any:
    template, problems = decode_str(STACK.read_text())
    assert not problems, problems
    return template


# The SourceBuckets of a sample deployment: what `Fn::ForEach` loops over in `stack()`.
SAMPLE_SOURCE_BUCKETS = ("in-bucket", "raw.data.2026")


@cache
def _expanded() -> dict[str, Any]:
    template: dict[str, Any] = copy.deepcopy(_stack())
    resources: dict[str, Any] = {}
    for name, body in template["Resources"].items():
        if name.startswith("Fn::ForEach::"):
            resources.update(for_each(body, {"SourceBuckets": list(SAMPLE_SOURCE_BUCKETS)}))
        else:
            resources[name] = body
    template["Resources"] = resources
    return template


def for_each(loop: list[Any], lists: dict[str, list[str]]) -> dict[str, Any]:
    """What the AWS::LanguageExtensions transform makes of one `Fn::ForEach` over a list
    parameter: a copy of the body per item, `${Id}` replaced in its strings and `&{Id}` (the
    item without its non-alphanumeric characters) in its logical name."""
    identifier, collection, templates = loop
    expanded: dict[str, Any] = {}
    for item in lists[collection["Ref"]]:
        for key_template, body in templates.items():
            key = key_template.replace(f"&{{{identifier}}}", re.sub(r"[^A-Za-z0-9]", "", item))
            expanded[key] = _substitute(copy.deepcopy(body), identifier, item)
    return expanded


def _substitute(node: Any, identifier: str, item: str) -> Any:
    if isinstance(node, str):
        return node.replace(f"${{{identifier}}}", item)
    if isinstance(node, list):
        return [_substitute(v, identifier, item) for v in node]
    if isinstance(node, dict):
        return {k: _substitute(v, identifier, item) for k, v in node.items()}
    return node


def raw_stack() -> dict[str, Any]:
    """The template as written (its `Fn::ForEach` loops not expanded)."""
    template: dict[str, Any] = _stack()
    return template


def stack() -> dict[str, Any]:
    """The CloudFormation template, intrinsic functions in their long form (`Fn::Sub`), its
    `Fn::ForEach` loops expanded for SAMPLE_SOURCE_BUCKETS."""
    return _expanded()


def resource(name: str) -> dict[str, Any]:
    properties: dict[str, Any] = stack()["Resources"][name]["Properties"]
    return properties


def statements(role: str) -> Iterator[dict[str, Any]]:
    """Every statement of a role's inline policies; both branches of an `Fn::If`."""
    for policy in resource(role)["Policies"]:
        for statement in policy["PolicyDocument"]["Statement"]:
            if isinstance(statement, dict) and "Fn::If" in statement:
                _, *branches = statement["Fn::If"]
                yield from (b for b in branches if isinstance(b, dict) and "Effect" in b)
            else:
                yield statement


def actions(role: str) -> set[str]:
    found: set[str] = set()
    for statement in statements(role):
        assert statement["Effect"] == "Allow"
        action = statement["Action"]
        found.update([action] if isinstance(action, str) else action)
    return found


def resources_of_type(kind: str) -> dict[str, dict[str, Any]]:
    """Every resource of one type, by logical name, as written (Type, Condition, Properties)."""
    return {name: r for name, r in stack()["Resources"].items() if r["Type"] == kind}


NO_VALUE = object()  # what `Ref AWS::NoValue` resolves to: the item or property disappears


def deployed(parameters: dict[str, str] | None = None) -> dict[str, str]:
    """The parameter values of a deployment: the template's defaults, then `parameters`.

    CloudFormation hands every parameter to the intrinsic functions as a string.
    """
    values = {
        name: str(p["Default"]) for name, p in stack()["Parameters"].items() if "Default" in p
    }
    return values | (parameters or {})


def evaluate(node: Any, parameters: dict[str, str]) -> Any:
    """Resolve the conditions, `Fn::If`, `Ref` to a parameter and `Fn::Sub` of parameters.

    What needs a deployed stack (`Fn::GetAtt`, `Ref` to a resource) stays as written.
    """
    if isinstance(node, list):
        items = [evaluate(item, parameters) for item in node]
        return [item for item in items if item is not NO_VALUE]
    if not isinstance(node, dict):
        return node
    if len(node) == 1:
        ((key, value),) = node.items()
        if key == "Ref" and value == "AWS::NoValue":
            return NO_VALUE
        if key == "Ref" and value in parameters:
            return parameters[value]
        if key in ("Condition", "Fn::If"):
            name = value if key == "Condition" else value[0]
            holds = evaluate(stack()["Conditions"][name], parameters)
            return holds if key == "Condition" else evaluate(value[1 if holds else 2], parameters)
        if key == "Fn::Equals":
            left, right = (str(evaluate(v, parameters)) for v in value)
            return left == right
        if key == "Fn::Not":
            return not evaluate(value[0], parameters)
        if key == "Fn::And":
            return all(evaluate(v, parameters) for v in value)
        if key == "Fn::Or":
            return any(evaluate(v, parameters) for v in value)
        if key == "Fn::Sub" and isinstance(value, str):
            return re.sub(
                r"\$\{([A-Za-z0-9]+)\}",
                lambda m: parameters.get(m.group(1), m.group(0)),
                value,
            )
    resolved = {k: evaluate(v, parameters) for k, v in node.items()}
    return {k: v for k, v in resolved.items() if v is not NO_VALUE}


def exists(name: str, parameters: dict[str, str]) -> bool:
    """Whether a resource is created with these parameters (its `Condition` holds)."""
    condition = stack()["Resources"][name].get("Condition")
    return condition is None or bool(evaluate({"Condition": condition}, parameters))


# ---- the metrics the stack's dashboard may name

# The embedded-metric-format metrics of the worker (worker/metrics.py: QUEUE_METRICS and
# JOB_METRICS) and the launcher (launcher/metrics.py: METRICS), by name, with the dimension
# names each is written with. It must match the names the worker and the launcher write: a
# dashboard row naming anything else draws nothing, silently.
EMF_METRICS: dict[str, tuple[str, ...]] = {
    # the worker, per queue
    "MessagesReceived": ("Queue",),
    "MessagesSucceeded": ("Queue",),
    "MessagesRetried": ("Queue",),
    "MessagesDeadLettered": ("Queue",),
    "MessagesHandedBack": ("Queue",),
    "QueueDwell": ("Queue",),
    "CsvBytesIn": ("Queue",),
    "CsvBytesOut": ("Queue",),
    "SidecarsWritten": ("Queue",),
    "RefreshCacheCalls": ("Queue",),
    "RefreshCacheBusy": ("Queue",),
    # the worker, per queue and job kind
    "JobDuration": ("Queue", "Job"),
    # the launcher, per queue
    "JobsEnqueued": ("Queue",),
    "TasksStarted": ("Queue",),
    "RunTaskFailures": ("Queue",),
}
EMF_JOBS = {"csv", "refresh", "sidecar"}  # the values of the Job dimension

# What a deployed stack substitutes into a `Fn::Sub` string, shaped as AWS would: the
# pseudo-parameters, a `Ref` (parameter or resource) and a `Fn::GetAtt` by its dotted name.
SAMPLE_STACK_VALUES = {
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "spotdrain",
    "AWS::Partition": "aws",
    "MetricsNamespace": "spotdrain-sample",
    "OldestMessageAlarmSeconds": "900",
    "JobQueue": SAMPLE_VALUES["QUEUE_URL"],
    "JobQueue.QueueName": "spotdrain-jobs",
    "DeadLetterQueue": SAMPLE_VALUES["DLQ_URL"],
    "DeadLetterQueue.QueueName": "spotdrain-dlq",
    "LauncherFailureQueue": (
        "https://sqs.eu-west-1.amazonaws.com/123456789012/spotdrain-launcher-failures"
    ),
    "LauncherFailureQueue.QueueName": "spotdrain-launcher-failures",
    "Launcher": "spotdrain-launcher",
    "LauncherLogGroup": "/aws/lambda/spotdrain-launcher",
    "Cluster": "spotdrain",
    **{
        f"{alarm}Alarm.Arn": f"arn:aws:cloudwatch:eu-west-1:123456789012:alarm:spotdrain-{name}"
        for alarm, name in (
            ("DeadLetters", "dead-letters"),
            ("OldestMessage", "oldest-message"),
            ("LauncherErrors", "launcher-errors"),
            ("LauncherFailures", "launcher-failures"),
        )
    },
}
SUB_REFERENCE = re.compile(r"\$\{([A-Za-z0-9:.]+)\}")


def substituted(text: str, values: dict[str, str] = SAMPLE_STACK_VALUES) -> str:
    """A `Fn::Sub` string as CloudFormation renders it; a name without a sample fails."""
    assert "${!" not in text, "a literal ${ in a Sub string: extend this helper"
    return SUB_REFERENCE.sub(lambda m: values[m.group(1)], text)
