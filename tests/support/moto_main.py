"""Start moto's server with SQS ReceiveMessage made atomic per queue.

moto's threaded server runs concurrent ReceiveMessage calls on one queue without a lock, so two
of them can both take the same message (seen here with two receivers of one worker). Real SQS
hands a visible message to one receiver at a time; tests that count completions need that.
The worker still tolerates duplicates (handlers are idempotent), which tests show separately.
"""

from __future__ import annotations

import sys
import threading
from collections import defaultdict
from typing import Any

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

if __name__ == "__main__":
    main(sys.argv[1:])
