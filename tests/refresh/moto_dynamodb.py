"""moto's server with DynamoDB item operations made atomic, as DynamoDB's own are.

moto's threaded server runs concurrent UpdateItem calls without a lock: two first writes to
the same new item both create it and one of them is lost, and a conditional write can act on
a state another thread is changing. Real DynamoDB applies each write to an item atomically,
which is what the refresh table's conditional writes rely on. (The lock could join the SQS
receive lock of tests/support/moto_main.py, which this server also applies; until then the
refresh tests run their own DynamoDB on this server, through AWS_ENDPOINT_URL_DYNAMODB.)
"""

from __future__ import annotations

import sys
import threading
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main

import tests.support.moto_main  # noqa: F401  (its atomic SQS receive, for the bench's queues)

_lock = threading.RLock()


def _atomic(name: str) -> None:
    original = getattr(DynamoDBBackend, name)

    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _lock:
            return original(self, *args, **kwargs)

    setattr(DynamoDBBackend, name, locked)


for _name in ("put_item", "get_item", "update_item", "delete_item", "transact_write_items"):
    _atomic(_name)

if __name__ == "__main__":
    main(sys.argv[1:])
