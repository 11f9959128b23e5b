"""Duplicates: every job delivered twice yields one correct output.

Two ways a job comes twice. A producer sends it twice (S3 notifications and retrying
publishers do): two messages, taken at once by two workers. Or SQS delivers one message
again while a worker still runs it: here a worker is frozen (SIGSTOP) right after it took
messages (the other worker is paused for that moment, so that it is the one to take them),
kept frozen past its lease while the other worker receives them again, and thawed (SIGCONT)
to finish them at the same time, as a worker stalled by a long pause or a network
partition would. (The other worker's own leases may lapse in its short pause: the same
scenario, the other way round.)
"""

from __future__ import annotations

import random
import signal
import time
from collections.abc import Callable
from typing import Any

import pytest
from aiobotocore.session import get_session
from aiobotocore.stub import AioStubber

from tests.chaos.conftest import (
    Run,
    StartWorker,
    redelivered,
    wait_all,
    wait_for_a_receive,
)
from tests.support.latency import slow_answers
from tests.support.moto_server import MotoServer
from worker.adapters.s3 import S3
from worker.errors import RetryableError

VISIBILITY = 2
FREEZES = 5


@pytest.mark.slow
@pytest.mark.nfs
def test_every_job_sent_twice_and_taken_by_two_workers_at_once_yields_one_correct_output(
    mixed_run: Callable[..., Run], start_worker: StartWorker
) -> None:
    run = mixed_run(jobs=60, large=1, rate=20, copies=2)
    workers = [start_worker(**run.world.env(WORKER_IDLE_EXIT_SECONDS=3)) for _ in range(2)]
    run.feeder.start()
    assert wait_all(workers) == ""
    assert run.problems() == []


@pytest.mark.slow
@pytest.mark.nfs
def test_a_message_redelivered_while_a_frozen_worker_still_holds_it_yields_one_output(
    mixed_run: Callable[..., Run],
    start_worker: StartWorker,
    sqs: Any,
    moto: MotoServer,
    seed: int,
) -> None:
    rng = random.Random(seed)
    run = mixed_run(jobs=80, large=4, rate=3)  # the feed lasts as long as the freezes
    env = run.world.env(WORKER_VISIBILITY_SECONDS=VISIBILITY, WORKER_IDLE_EXIT_SECONDS=4)
    # The frozen worker's SQS answers come 0.3 s late: once moto has served its receive, the
    # freeze surely comes before the messages are done (quick jobs take milliseconds).
    with slow_answers(moto, 0.3) as late_sqs:
        frozen = start_worker(**env, AWS_ENDPOINT_URL_SQS=late_sqs)
        other = start_worker(**env)
        frozen.wait_for("worker.started", timeout=60)
        run.feeder.start()
        for _ in range(FREEZES):
            time.sleep(rng.uniform(0.2, 1.5))
            other.signal(signal.SIGSTOP)  # so that the next messages go to `frozen`
            wait_for_a_receive(sqs, run.world.queue.url, timeout=3)
            frozen.signal(signal.SIGSTOP)
            other.signal(signal.SIGCONT)
            time.sleep(VISIBILITY + rng.uniform(0.5, 2.0))  # its leases run out; `other` takes over
            frozen.signal(signal.SIGCONT)
        assert wait_all([frozen, other]) == "", f"seed {seed}"
    # Moving a message to the dead-letter queue is a send, then a delete: two holders of one
    # poison message may both send it. A copy of poison is tolerated; anything else is not.
    assert run.problems(dead_letter_repeats=True) == [], f"seed {seed}"
    # Nothing fails in this run: a later delivery means a lease ran out under a frozen holder.
    taken_over = redelivered([frozen, other])
    print(f"{FREEZES} freezes; {taken_over} messages settled on a later delivery")
    assert taken_over > 0, "no freeze caught a message in hand: the scenario tested nothing"


async def test_an_upload_aborted_by_a_concurrent_retry_makes_the_conversion_retry() -> None:
    # A retry of a csv job first aborts the uploads an interrupted attempt left; when that
    # attempt is not dead but frozen (the scenario above), its next UploadPart meets S3's
    # answer for an aborted upload: 404 NoSuchUpload. moto answers 500 there instead, so the
    # frozen-worker run cannot show this; the stubber gives S3's answer, checked against the
    # API model. Retrying finds the other attempt's output; failing would dead-letter the job.
    session = get_session()
    async with session.create_client(
        "s3", region_name="us-east-1", aws_access_key_id="a", aws_secret_access_key="b"
    ) as client:
        with AioStubber(client) as stubber:
            stubber.add_response(
                "create_multipart_upload", {"Bucket": "b", "Key": "k", "UploadId": "u-1"}
            )
            stubber.add_client_error(
                "upload_part",
                service_error_code="NoSuchUpload",
                service_message="The specified upload does not exist. The upload ID may be "
                "invalid, or the upload may have been aborted or completed.",
                http_status_code=404,
            )
            stubber.add_response("abort_multipart_upload", {})
            writer = S3(client).writer(
                "b", "k", part_bytes=5, metadata={}, content_type="application/x-ndjson"
            )
            await writer.write([b"12345"])
            with pytest.raises(RetryableError, match="UploadPart 1"):
                await writer.close({"rows": "1"})
            await writer.abort()
