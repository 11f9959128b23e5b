"""AWS failures sorted once, by botocore's own retry rules: `mapped` around any call."""

from __future__ import annotations

import aiohttp
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from botocore.retries.standard import ThrottledRetryableChecker

from worker.adapters.aws_errors import is_throttling, is_transient, mapped
from worker.errors import ConfigError, PermanentError, RetryableError


def answer(code: str, status: int) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code, "Message": f"says {code}"},
            "ResponseMetadata": {"HTTPStatusCode": status},
        },
        "SendMessage",
    )


def test_every_code_botocore_throttles_on_is_throttling() -> None:
    codes = ThrottledRetryableChecker()._throttled_error_codes
    assert {"BandwidthLimitExceeded", "EC2ThrottledException", "PriorRequestNotComplete"} <= set(
        codes
    )
    assert all(is_throttling(code) for code in codes)


@pytest.mark.parametrize(
    ("code", "status", "throttling", "transient"),
    [
        ("AWS.SimpleQueueService.RequestThrottled", 403, True, False),  # query-compatible SQS
        ("KMS.ThrottlingException", 400, True, False),
        ("Anything", 429, True, False),
        ("RequestTimeout", 400, False, True),
        ("InternalError", 500, False, True),
        ("ServiceUnavailable", 503, False, True),
        ("InsufficientCapacity", 507, False, True),
        ("AccessDenied", 403, False, False),
        ("ValidationError", 400, False, False),
    ],
)
def test_codes_and_statuses_are_throttling_transient_or_neither(
    code: str, status: int, throttling: bool, transient: bool
) -> None:
    assert (is_throttling(code, status), is_transient(code, status)) == (throttling, transient)


@pytest.mark.parametrize(
    ("failure", "kind"),
    [
        (answer("ThrottlingException", 400), RetryableError),
        (answer("InternalError", 500), RetryableError),
        (answer("AccessDenied", 403), PermanentError),
        (EndpointConnectionError(endpoint_url="http://sqs"), RetryableError),
        (ConnectionResetError(104, "reset"), RetryableError),
        (aiohttp.ServerDisconnectedError(), RetryableError),
        (TimeoutError(), RetryableError),
    ],
)
def test_a_failure_leaves_mapped_as_our_error_naming_the_call(
    failure: Exception, kind: type[Exception]
) -> None:
    with pytest.raises(kind, match=r"^SendMessage: ") as caught, mapped("SendMessage"):
        raise failure
    assert caught.value.__cause__ is failure


def test_a_refine_names_what_one_calls_answer_means_and_defers_the_rest() -> None:
    def missing(exc: ClientError, what: str) -> ConfigError | None:
        return ConfigError("QUEUE_URL", "no such queue") if "NonExistent" in str(exc) else None

    with pytest.raises(ConfigError), mapped("GetQueueAttributes", missing):
        raise answer("AWS.SimpleQueueService.NonExistentQueue", 400)
    with pytest.raises(RetryableError), mapped("GetQueueAttributes", missing):
        raise answer("Throttling", 400)


def test_anything_else_passes_through_unchanged() -> None:
    with pytest.raises(KeyError), mapped("SendMessage"):
        raise KeyError("a bug, not an AWS failure")
