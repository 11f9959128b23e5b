"""The worker's error tree.

    SpotdrainError
    ├── ConfigError          an option is invalid: the worker exits 2 before receiving anything
    └── JobError             a job did not succeed; the consumer decides the queue outcome
        ├── RetryableError   may succeed later (throttling, 5xx, a server down): back off, retry
        └── PermanentError   can never succeed (bad payload, missing object): dead-letter
            └── InvalidMessage   the body is not a message we accept (not JSON, unknown shape)

Adapters translate service errors (botocore ClientError codes, libnfs errno values) into
RetryableError or PermanentError at the boundary; nothing above them reads service codes.
"""

from __future__ import annotations


class SpotdrainError(Exception):
    """Base of every error the worker raises on purpose."""


class ConfigError(SpotdrainError):
    """An option is missing or invalid."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option} {problem}")
        self.option = option
        self.problem = problem


class JobError(SpotdrainError):
    """A job failed; subclasses say whether trying again can help."""


class RetryableError(JobError):
    """A transient failure: the message is retried with backoff."""


class PermanentError(JobError):
    """A failure that no retry can fix: the message is dead-lettered with this reason."""


class InvalidMessage(PermanentError):
    """The message body is not one of the shapes the worker accepts."""
