"""The csv job end to end: moto S3 over HTTP, a real worker process, the contract's rules."""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest

from tests.conftest import drain_all, unique
from tests.csv.conftest import Run, job, ndjson, output, s3_created

pytestmark = pytest.mark.slow

RunJobs = Callable[..., Run]

TRICKY = (
    "\ufeffid,name,comment,empty,code\r\n"
    '1,Zürich,"quoted, with comma",,007\r\n'
    '2,東京,"say ""hi""\r\nand a new line",,0012\r\n'
    "3,plain,,,\r\n"
).encode()


def test_a_csv_object_becomes_ndjson_equal_to_what_the_csv_module_reads(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    s3.put_object(Bucket=bucket, Key="in/data.csv", Body=TRICKY)
    run = run_jobs(job(bucket, "in/data.csv"))
    assert run.outcome() == "acked"
    expected = list(csv.DictReader(io.StringIO(TRICKY.decode("utf-8-sig"), newline="")))
    assert ndjson(output(s3, bucket, "converted/in/data.json")) == expected


def test_the_output_carries_the_source_etag_and_its_row_count(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    etag = s3.put_object(Bucket=bucket, Key="a.CSV", Body=b"x,y\n1,2\n3,4\n")["ETag"]
    run_jobs(job(bucket, "a.CSV"))
    head = s3.head_object(Bucket=bucket, Key="converted/a.json")
    assert head["Metadata"]["source-etag"] == etag
    assert head["ContentType"] == "application/x-ndjson"
    tags = s3.get_object_tagging(Bucket=bucket, Key="converted/a.json")["TagSet"]
    assert {t["Key"]: t["Value"] for t in tags} == {"rows": "2", "columns": "2"}


def test_an_s3_event_converts_its_object_and_our_own_output_is_never_converted(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    s3.put_object(Bucket=bucket, Key="my file.csv", Body=b"a\n1\n")
    s3.put_object(Bucket=bucket, Key="converted/old.csv", Body=b"a\n1\n")
    run = run_jobs(s3_created(bucket, "my file.csv"), s3_created(bucket, "converted/old.csv"))
    assert {e["outcome"] for e in run.done()} == {"acked"}
    assert ndjson(output(s3, bucket, "converted/my file.json")) == [{"a": "1"}]
    listed = s3.list_objects_v2(Bucket=bucket, Prefix="converted/converted/")
    assert listed.get("KeyCount", 0) == 0


def test_json_format_with_inference_keeps_identifiers_as_strings(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    s3.put_object(Bucket=bucket, Key="t.csv", Body=b"id,n,ok,x\n007,-2.50,TRUE,\n42,3,false,1e5\n")
    run_jobs(job(bucket, "t.csv"), CSV_OUTPUT_FORMAT="json", CSV_INFER_TYPES="true")
    document = output(s3, bucket, "converted/t.json")
    assert json.loads(document) == [
        {"id": "007", "n": -2.5, "ok": True, "x": None},
        {"id": 42, "n": 3, "ok": False, "x": "1e5"},
    ]
    assert b'"n":-2.50' in document  # the number's text is kept as written


def test_a_header_only_file_gives_an_empty_output_and_zero_rows(
    s3: Any, sqs: Any, bucket: str, run_jobs: RunJobs
) -> None:
    results = sqs.create_queue(QueueName=unique("results"))["QueueUrl"]
    s3.put_object(Bucket=bucket, Key="h.csv", Body=b"a,b,c\r\n")
    run_jobs(job(bucket, "h.csv"), CSV_RESULT_QUEUE_URL=results)
    assert output(s3, bucket, "converted/h.json") == b""
    (message,) = drain_all(sqs, results)
    assert json.loads(message["Body"])["rows"] == 0


def test_a_one_column_file_converts(s3: Any, bucket: str, run_jobs: RunJobs) -> None:
    s3.put_object(Bucket=bucket, Key="one.csv", Body=b"name\nada\n\ngrace\n")
    run_jobs(job(bucket, "one.csv"))
    assert ndjson(output(s3, bucket, "converted/one.json")) == [{"name": "ada"}, {"name": "grace"}]


def test_ragged_rows_are_dead_lettered_naming_the_line(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    s3.put_object(Bucket=bucket, Key="r.csv", Body=b"a,b\n1,2\n3\n")
    run = run_jobs(job(bucket, "r.csv"))
    assert run.outcome() == "dead_lettered"
    assert "line 3: 1 fields where the header has 2" in run.reason()
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="converted/")


def test_ragged_rows_are_padded_when_asked(s3: Any, bucket: str, run_jobs: RunJobs) -> None:
    s3.put_object(Bucket=bucket, Key="r.csv", Body=b"a,b\n1,2\n3\n")
    run_jobs(job(bucket, "r.csv"), CSV_RAGGED="pad")
    assert ndjson(output(s3, bucket, "converted/r.json"))[1] == {"a": "3", "b": None}


def test_latin1_converts_with_csv_encoding(s3: Any, bucket: str, run_jobs: RunJobs) -> None:
    s3.put_object(Bucket=bucket, Key="l.csv", Body="name;city\nJosé;Malmö\n".encode("latin-1"))
    run_jobs(job(bucket, "l.csv"), CSV_ENCODING="latin-1", CSV_DELIMITER="auto")
    assert ndjson(output(s3, bucket, "converted/l.json")) == [{"name": "José", "city": "Malmö"}]


def test_latin1_bytes_without_csv_encoding_are_dead_lettered_naming_the_line(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    s3.put_object(Bucket=bucket, Key="l.csv", Body="name\nok\nJosé\n".encode("latin-1"))
    run = run_jobs(job(bucket, "l.csv"))
    assert run.outcome() == "dead_lettered"
    assert "line 3" in run.reason() and "CSV_ENCODING" in run.reason()


def test_a_binary_file_is_dead_lettered(s3: Any, bucket: str, run_jobs: RunJobs) -> None:
    png = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)) * 8
    s3.put_object(Bucket=bucket, Key="image.csv", Body=png)
    run = run_jobs(job(bucket, "image.csv"))
    assert run.outcome() == "dead_lettered"
    assert "line 1" in run.reason()


def test_a_vanished_object_is_dead_lettered_with_the_reason(
    bucket: str, run_jobs: RunJobs
) -> None:
    run = run_jobs(job(bucket, "gone.csv"))
    assert run.outcome() == "dead_lettered"
    assert "does not exist" in run.reason()


def test_the_result_message_holds_location_rows_source_and_inline_records(
    s3: Any, sqs: Any, bucket: str, run_jobs: RunJobs
) -> None:
    results = sqs.create_queue(QueueName=unique("results"))["QueueUrl"]
    etag = s3.put_object(Bucket=bucket, Key="r.csv", Body=b"a,b\n1,x\n2,y\n")["ETag"]
    run_jobs(job(bucket, "r.csv"), CSV_RESULT_QUEUE_URL=results)
    (message,) = drain_all(sqs, results)
    body = json.loads(message["Body"])
    assert body == {
        "bucket": bucket,
        "key": "converted/r.json",
        "format": "ndjson",
        "rows": 2,
        "columns": 2,
        "bytes": len(output(s3, bucket, "converted/r.json")),
        "source_bucket": bucket,
        "source_key": "r.csv",
        "source_etag": etag,
        "records": [{"a": "1", "b": "x"}, {"a": "2", "b": "y"}],
    }


def test_records_too_large_for_one_message_are_left_out_of_it(
    s3: Any, sqs: Any, bucket: str, run_jobs: RunJobs
) -> None:
    results = sqs.create_queue(QueueName=unique("results"))["QueueUrl"]
    s3.put_object(Bucket=bucket, Key="big.csv", Body=b"a\n" + (b"y" * 100 + b"\n") * 3001)
    run_jobs(job(bucket, "big.csv"), CSV_RESULT_QUEUE_URL=results)
    (message,) = drain_all(sqs, results)
    body = json.loads(message["Body"])
    assert body["rows"] == 3001 and "records" not in body


def test_a_redelivered_job_is_acknowledged_without_converting_again(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    s3.put_object(Bucket=bucket, Key="d.csv", Body=b"a\n1\n")
    run_jobs(job(bucket, "d.csv"))
    first = s3.head_object(Bucket=bucket, Key="converted/d.json")
    again = run_jobs(job(bucket, "d.csv"))
    assert again.outcome() == "acked"
    assert again.worker.events("csv.unchanged") and not again.worker.events("csv.converted")
    assert s3.head_object(Bucket=bucket, Key="converted/d.json")["ETag"] == first["ETag"]


def test_a_changed_source_is_converted_again(s3: Any, bucket: str, run_jobs: RunJobs) -> None:
    s3.put_object(Bucket=bucket, Key="d.csv", Body=b"a\n1\n")
    run_jobs(job(bucket, "d.csv"))
    s3.put_object(Bucket=bucket, Key="d.csv", Body=b"a\n2\n")
    run_jobs(job(bucket, "d.csv"))
    assert ndjson(output(s3, bucket, "converted/d.json")) == [{"a": "2"}]


def big_csv(rows: int, *, bad_at: int | None = None) -> bytes:
    lines = [b"id,text,amount"]
    for i in range(rows):
        lines.append(b"%d,row number %d with some text,%d.%02d" % (i, i, i, i % 100))
        if i == bad_at:
            lines.append(b"ragged")
    return b"\n".join(lines) + b"\n"


def test_a_large_output_goes_up_in_parts_and_leaves_no_upload_behind(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    data = big_csv(200_000)
    s3.put_object(Bucket=bucket, Key="big.csv", Body=data)
    run = run_jobs(job(bucket, "big.csv"), CSV_PART_SIZE_MB="5")
    (converted,) = run.worker.events("csv.converted")
    assert converted["multipart"] is True and converted["rows"] == 200_000
    rows = ndjson(output(s3, bucket, "converted/big.json"))
    assert rows == list(csv.DictReader(io.StringIO(data.decode(), newline="")))
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)


def test_a_conversion_that_fails_after_some_parts_aborts_its_upload(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    s3.put_object(Bucket=bucket, Key="bad.csv", Body=big_csv(300_000, bad_at=290_000))
    run = run_jobs(job(bucket, "bad.csv"), CSV_PART_SIZE_MB="5")
    assert run.outcome() == "dead_lettered"
    assert "fields where the header has 3" in run.reason()
    assert "Uploads" not in s3.list_multipart_uploads(Bucket=bucket)
    assert "Contents" not in s3.list_objects_v2(Bucket=bucket, Prefix="converted/")


def test_an_explicit_job_for_our_own_output_is_refused(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    s3.put_object(Bucket=bucket, Key="converted/x.csv", Body=b"a\n1\n")
    run = run_jobs(job(bucket, "converted/x.csv"))
    assert run.outcome() == "dead_lettered"
    assert "refusing to convert our own output" in run.reason()


def test_output_goes_to_the_output_bucket_under_the_output_prefix(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    target = unique("out")
    s3.create_bucket(Bucket=target)
    s3.put_object(Bucket=bucket, Key="dir/x.csv", Body=b"a\n1\n")
    run_jobs(job(bucket, "dir/x.csv"), CSV_OUTPUT_BUCKET=target, CSV_OUTPUT_PREFIX="json/")
    assert ndjson(output(s3, target, "json/dir/x.json")) == [{"a": "1"}]


def test_large_conversions_take_turns_on_the_converter_processes(
    s3: Any, bucket: str, run_jobs: RunJobs
) -> None:
    for name in ("a", "b", "c"):
        s3.put_object(Bucket=bucket, Key=f"{name}.csv", Body=big_csv(60_000))  # > 256 KiB each
    run = run_jobs(*(job(bucket, f"{name}.csv") for name in "abc"), CSV_PROCESSES="1")
    spans = sorted(
        (end - event["seconds"], end)
        for event in run.worker.events("csv.converted")
        for end in [datetime.fromisoformat(event["timestamp"]).timestamp()]
    )
    assert len(spans) == 3
    for (_, first_end), (second_start, _) in itertools.pairwise(spans):
        assert second_start >= first_end - 0.01  # one at a time, never side by side
