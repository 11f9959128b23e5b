"""Our SigV4 signer gives, header for header, the signature botocore's signer gives."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials as BotoCredentials

from worker.adapters.sigv4 import Credentials, Signer

BODY = (
    b'{"QueueUrl":"https://sqs.eu-west-1.amazonaws.com/123456789012/jobs","MaxNumberOfMessages":10}'
)


def botocore_headers(
    credentials: Credentials, url: str, target: str, body: bytes, region: str
) -> dict[str, str]:
    request = AWSRequest(
        method="POST",
        url=url,
        data=body,
        headers={"Content-Type": "application/x-amz-json-1.0", "X-Amz-Target": target},
    )
    boto = BotoCredentials(credentials.access_key, credentials.secret_key, credentials.token)
    SigV4Auth(boto, "sqs", region).add_auth(request)
    return dict(request.headers.items())


@pytest.mark.parametrize(
    ("url", "host", "path"),
    [
        ("https://sqs.eu-west-1.amazonaws.com/", "sqs.eu-west-1.amazonaws.com", "/"),
        ("http://127.0.0.1:4566/", "127.0.0.1:4566", "/"),
        ("https://proxy.example.com/sqs/", "proxy.example.com", "/sqs/"),
    ],
)
@pytest.mark.parametrize("token", [None, "FwoGZXIvYXdzE//session+token=="])
def test_signatures_match_botocore(url: str, host: str, path: str, token: str | None) -> None:
    credentials = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", token)
    target = "AmazonSQS.ReceiveMessage"
    expected = botocore_headers(credentials, url, target, BODY, "eu-west-1")
    signed_at = datetime.strptime(expected["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    ours = Signer("sqs", "eu-west-1").headers(
        credentials,
        host=host,
        path=path,
        target=target,
        content_type="application/x-amz-json-1.0",
        body=BODY,
        now=signed_at,
    )

    assert ours["Authorization"] == expected["Authorization"]
    assert ours.get("X-Amz-Security-Token") == expected.get("X-Amz-Security-Token")


def test_the_signing_key_follows_the_date_and_the_secret() -> None:
    signer = Signer("sqs", "us-east-1")
    first = Credentials("AKID", "secret-one")
    day_one = datetime(2026, 11, 22, 23, 59, 59, tzinfo=UTC)
    day_two = datetime(2026, 11, 23, 0, 0, 1, tzinfo=UTC)
    common = {"host": "h", "path": "/", "target": "t", "content_type": "c", "body": b""}

    def signature(credentials: Credentials, now: datetime) -> str:
        return signer.headers(credentials, now=now, **common)["Authorization"]

    assert signature(first, day_one) != signature(first, day_two)
    assert signature(first, day_one) != signature(Credentials("AKID", "secret-two"), day_one)
    assert (
        signature(first, day_one)
        == Signer("sqs", "us-east-1").headers(first, now=day_one, **common)["Authorization"]
    )
