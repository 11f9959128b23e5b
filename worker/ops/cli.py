"""`spotdrain`: parse the command line, run one command, print text or JSON; exit 0, 1 or 2.

Exit status: 0 done, 1 an AWS call failed (or a dead letter was not found, or some could not
be moved), 2 a usage error. Every error is one line on stderr.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from botocore.exceptions import BotoCoreError, ClientError, NoRegionError

from launcher.errors import ConfigError as LauncherConfigError
from launcher.settings import check_started_by
from worker.ops.aws import Clients, describe
from worker.ops.commands import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Failure,
    Io,
    Report,
    UsageError,
    run_list,
    run_purge,
    run_redrive,
    run_show,
    run_status,
)
from worker.ops.dead_letters import DEFAULT_LEASE_SECONDS, DEFAULT_MAX
from worker.ops.output import document

PROG = "spotdrain"
MAX_LEASE_SECONDS = 43_200  # SQS's longest visibility timeout


class Parser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line instead of printing the usage."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{_tidy(message)} (see '{self.prog} --help')")


def _tidy(message: str) -> str:
    found = re.fullmatch(r"the following arguments are required: (.+)", message)
    if not found:
        return message
    names = found.group(1).split(", ")
    if len(names) == 1:
        return f"{names[0]} is required"
    return f"{', '.join(names[:-1])} and {names[-1]} are required"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _lease(text: str) -> int:
    value = _positive(text)
    if value > MAX_LEASE_SECONDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_LEASE_SECONDS}, got {value}")
    return value


def _started_by(text: str) -> str:
    try:
        check_started_by(text)
    except LauncherConfigError as exc:
        raise argparse.ArgumentTypeError(exc.problem) from None
    return text


def build_parser() -> Parser:
    common = Parser(add_help=False)
    common.add_argument(
        "--json",
        action="store_true",
        default=argparse.SUPPRESS,
        help="print one JSON document instead of text",
    )
    parser = Parser(
        prog=PROG,
        description="Look at a spotdrain queue and handle its dead letters. AWS_REGION, "
        "AWS_ENDPOINT_URL(_<SERVICE>) and the credential chain apply as usual.",
        epilog="Exit status: 0 done, 1 an AWS call failed, 2 a usage error.",
    )
    # Its own flag: a parent's action is shared, so its default must stay SUPPRESS there.
    parser.add_argument("--json", action="store_true", help="print one JSON document")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    show_status = commands.add_parser(
        "status", parents=[common], help="counts, oldest message, dead letters and workers"
    )
    show_status.add_argument("--queue-url", required=True, metavar="URL")
    show_status.add_argument(
        "--dlq-url", metavar="URL", help="default: the queue's redrive policy's dead-letter queue"
    )
    show_status.add_argument("--cluster", metavar="C", help="count this queue's workers in C")
    show_status.add_argument(
        "--started-by",
        type=_started_by,
        metavar="S",
        help="the launcher's STARTED_BY (default: derived from the queue URL, as it does)",
    )
    show_status.set_defaults(run=run_status)

    dlq = commands.add_parser("dlq", parents=[common], help="list, show, redrive, purge")
    actions = dlq.add_subparsers(dest="action", metavar="ACTION", required=True)

    def action(name: str, run: Callable[..., Report], help_text: str) -> Parser:
        sub: Parser = actions.add_parser(name, parents=[common], help=help_text)
        sub.add_argument("--dlq-url", required=True, metavar="URL")
        sub.add_argument(
            "--max",
            type=_positive,
            default=DEFAULT_MAX,
            metavar="N",
            help=f"read at most N dead letters (default {DEFAULT_MAX})",
        )
        sub.add_argument(
            "--visibility-timeout",
            type=_lease,
            default=DEFAULT_LEASE_SECONDS,
            metavar="S",
            help="how long messages read stay hidden if spotdrain dies before handing them "
            f"back (default {DEFAULT_LEASE_SECONDS})",
        )
        sub.set_defaults(run=run)
        return sub

    action("list", run_list, "dead letters by reason, left in place")
    show = action("show", run_show, "one dead letter, left in place")
    show.add_argument("id", metavar="ID", help="its message id or spotdrain-original-message-id")
    redrive = action("redrive", run_redrive, "move dead letters back to the queue")
    redrive.add_argument("--queue-url", required=True, metavar="URL")
    redrive.add_argument(
        "--reason",
        metavar="TEXT",
        help="only those whose reason contains TEXT (as `dlq list` shows it); "
        "--reason '' moves all batch by batch, dropping spotdrain-* attributes",
    )
    redrive.add_argument("--limit", type=_positive, metavar="N", help="move at most N")
    redrive.add_argument("--dry-run", action="store_true", help="count, move nothing")
    redrive.add_argument(
        "--launcher", metavar="NAME", help="invoke this launcher Lambda afterwards"
    )
    purge = action("purge", run_purge, "delete dead letters")
    purge.add_argument("--reason", required=True, metavar="TEXT")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    io = Io(sys.stdin, sys.stdout, sys.stderr)
    try:
        args = build_parser().parse_args(sys.argv[1:] if argv is None else list(argv))
    except UsageError as exc:
        return _fail(io, EXIT_USAGE, str(exc))
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    try:
        report: Report = args.run(args, Clients(os.environ), io)
    except UsageError as exc:
        return _fail(io, EXIT_USAGE, str(exc))
    except Failure as exc:
        return _fail(io, EXIT_FAILED, str(exc))
    except NoRegionError:
        return _fail(io, EXIT_USAGE, "no AWS region: set AWS_REGION or AWS_DEFAULT_REGION")
    except (ClientError, BotoCoreError) as exc:
        return _fail(io, EXIT_FAILED, describe(exc))
    except KeyboardInterrupt:
        return _fail(io, 130, "interrupted")
    if args.json:
        print(document(report.doc), file=io.stdout)
    else:
        print("\n".join(report.lines), file=io.stdout)
    for line in report.errors:
        print(f"{PROG}: {line}", file=io.stderr)
    return report.code


def _fail(io: Io, code: int, line: str) -> int:
    print(f"{PROG}: error: {' '.join(line.split())}", file=io.stderr)
    return code
