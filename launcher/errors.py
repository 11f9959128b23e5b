"""The launcher's error tree.

    LauncherError
    ├── ConfigError      an option is missing or invalid: every invocation fails until it is fixed
    ├── InvalidEvent     the event is not one the launcher accepts: nothing from it is enqueued
    └── EnqueueFailed    nothing could be enqueued (or, without partial batch responses, not
                         everything): raised so that Lambda retries the invocation

The launcher is a separate artefact from the worker and never imports it; these mirror the
worker's errors only in spirit.
"""

from __future__ import annotations


class LauncherError(Exception):
    """Base of every error the launcher raises on purpose."""


class ConfigError(LauncherError):
    """An option is missing or invalid; the message names it."""

    def __init__(self, option: str, problem: str) -> None:
        super().__init__(f"{option} {problem}")
        self.option = option
        self.problem = problem


class InvalidEvent(LauncherError):
    """The invocation's event (or one SQS record of it) has a shape the launcher rejects."""


class EnqueueFailed(LauncherError):
    """Messages that had to be enqueued were not; the invocation must be retried."""
