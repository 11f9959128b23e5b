"""Start moto's server with two of its races closed, as the real services close them.

- SQS: moto's threaded server runs concurrent ReceiveMessage calls on one queue without a
  lock, so two of them can both take the same message (seen here with two receivers of one
  worker). Real SQS hands a visible message to one receiver at a time; tests that count
  completions need that. The worker still tolerates duplicates (handlers are idempotent).
- DynamoDB: concurrent UpdateItem calls on one item race (two first writes both create the
  item and one is lost; a conditional write can act on a state another thread is changing).
  Real DynamoDB applies each write to an item atomically, which the refresh table relies on.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from typing import Any

from moto.dynamodb.models import DynamoDBBackend
from moto.server import main
from moto.sqs import models

_locks: defaultdict[tuple[str, str, str], threading.Lock] = defaultdict(threading.Lock)
_guard = threading.Lock()
_receive = models.SQSBackend.receive_message


def _atomic_receive(self: Any, queue_name: str, *args: Any, **kwargs: Any) -> Any:
    with _guard:
        lock = _locks[(self.account_id, self.region_name, queue_name)]
    with lock:
        return _receive(self, queue_name, *args, **kwargs)


models.SQSBackend.receive_message = _atomic_receive  # type: ignore[method-assign]

_item_lock = threading.RLock()


def _atomic_items(name: str) -> None:
    original = getattr(DynamoDBBackend, name)

    def locked(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _item_lock:
            return original(self, *args, **kwargs)

    setattr(DynamoDBBackend, name, locked)


for _name in ("put_item", "get_item", "update_item", "delete_item", "transact_write_items"):
    _atomic_items(_name)

if __name__ == "__main__":
    main(sys.argv[1:])
