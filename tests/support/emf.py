"""Embedded metric format records, read back and held against the published specification.

The rules checked (CloudWatch's "Specification: Embedded metric format"): the root holds
`_aws` with an integer `Timestamp` (milliseconds since the epoch) and a `CloudWatchMetrics`
array of directives; each directive has a `Namespace` string, `Dimensions` (an array of
dimension sets, each an array of at most 30 names of root members whose values are strings)
and `Metrics` (each a `Name` of a root member, at most 100 per directive, and an optional
`Unit` from CloudWatch's list, `StorageResolution` 1 or 60); a metric's member is a number
or an array of at most 100 numbers.
"""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

UNITS = frozenset(
    {
        "Seconds",
        "Microseconds",
        "Milliseconds",
        "Bytes",
        "Kilobytes",
        "Megabytes",
        "Gigabytes",
        "Terabytes",
        "Bits",
        "Kilobits",
        "Megabits",
        "Gigabits",
        "Terabits",
        "Percent",
        "Count",
        "Bytes/Second",
        "Kilobytes/Second",
        "Megabytes/Second",
        "Gigabytes/Second",
        "Terabytes/Second",
        "Bits/Second",
        "Kilobits/Second",
        "Megabits/Second",
        "Gigabits/Second",
        "Terabits/Second",
        "Count/Second",
        "None",
    }
)


def emf_records(lines: list[str]) -> list[dict[str, Any]]:
    """The log lines that are EMF records (a root `_aws` member), each checked."""
    records = []
    for line in lines:
        try:
            document = json.loads(line)
        except ValueError:
            continue
        if isinstance(document, dict) and "_aws" in document:
            problems = specification_problems(document)
            assert not problems, f"{problems}: {line}"
            records.append(document)
    return records


def specification_problems(record: dict[str, Any]) -> list[str]:
    problems: list[str] = []
    meta = record["_aws"]
    if not isinstance(meta.get("Timestamp"), int) or isinstance(meta.get("Timestamp"), bool):
        problems.append("_aws.Timestamp must be an integer of milliseconds")
    directives = meta.get("CloudWatchMetrics")
    if not isinstance(directives, list) or not directives:
        return [*problems, "_aws.CloudWatchMetrics must be a non-empty array"]
    for directive in directives:
        if not isinstance(directive.get("Namespace"), str) or not directive["Namespace"]:
            problems.append("a directive needs a Namespace string")
        for dimension_set in directive.get("Dimensions", []):
            if len(dimension_set) > 30:
                problems.append(f"more than 30 dimensions: {dimension_set}")
            for name in dimension_set:
                if not isinstance(record.get(name), str):
                    problems.append(f"dimension {name!r} is not a string member of the root")
        metrics = directive.get("Metrics", [])
        if len(metrics) > 100:
            problems.append("more than 100 metrics in a directive")
        for metric in metrics:
            name = metric.get("Name")
            value = record.get(name)
            if "Unit" in metric and metric["Unit"] not in UNITS:
                problems.append(f"{name}: unknown unit {metric['Unit']!r}")
            if metric.get("StorageResolution", 60) not in (1, 60):
                problems.append(f"{name}: StorageResolution must be 1 or 60")
            if isinstance(value, list):
                if len(value) > 100 or not all(_number(v) for v in value):
                    problems.append(f"{name}: an array of at most 100 numbers is required")
            elif not _number(value):
                problems.append(f"{name}: the root member must be a number, got {value!r}")
    return problems


def _number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def totals(records: list[dict[str, Any]], **dimensions: str) -> dict[str, float]:
    """Each metric summed over the records with exactly these dimension values (an array
    counts its values)."""
    sums: dict[str, float] = defaultdict(float)
    for record in records:
        [directive] = record["_aws"]["CloudWatchMetrics"]
        [names] = directive["Dimensions"]
        if {n: record[n] for n in names} != dimensions:
            continue
        for metric in directive["Metrics"]:
            value = record[metric["Name"]]
            sums[metric["Name"]] += sum(value) if isinstance(value, list) else value
    return dict(sums)


def samples(records: list[dict[str, Any]], name: str, **dimensions: str) -> list[float]:
    """Every value of a distribution metric over the records with these dimension values."""
    found: list[float] = []
    for record in records:
        [directive] = record["_aws"]["CloudWatchMetrics"]
        [names] = directive["Dimensions"]
        if {n: record[n] for n in names} == dimensions and name in record:
            value = record[name]
            found += value if isinstance(value, list) else [value]
    return found
