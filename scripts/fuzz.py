"""Fuzz the C converter under AddressSanitizer and UBSan for a time budget (`make fuzz`).

    python -m scripts.fuzz --seconds 300 [--seed 7] [--only convert framing]

It compiles worker/csvconv/_fastcsv.c with `-fsanitize=address,undefined` and gcov coverage,
then runs the properties of tests/fuzz/properties.py in a child Python that loads that build
(libasan preloaded, PYTHONMALLOC=malloc so every Python buffer is a guarded allocation).
Hypothesis draws the inputs, seeded round by round so a run can be repeated.

A property that fails is shrunk by Hypothesis and reported with its smallest input; a crash
(a sanitizer report, a signal) ends the child, and the input it was running is read back
from disk. The summary line is JSON: executions per property, seconds, line and branch
coverage of the C file, findings. Exit status 1 when anything was found.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.util
import json
import os
import pickle
import re
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
SOURCE = ROOT / "worker" / "csvconv" / "_fastcsv.c"
SANITIZERS = "address,undefined"
EXAMPLES_PER_ROUND = 100  # rounds short enough to keep the time budget


def build(directory: Path, *, sanitize: bool = True, coverage: bool = True) -> Path:
    """The extension compiled with sanitizers (and coverage counters) into `directory`."""
    suffix = sysconfig.get_config_var("EXT_SUFFIX") or ".so"
    target = directory / f"_fastcsv{suffix}"
    flags = ["-shared", "-fPIC", "-O1", "-g", "-fno-omit-frame-pointer"]
    if sanitize:
        flags += [f"-fsanitize={SANITIZERS}", "-fno-sanitize-recover=all"]
    if coverage:
        flags += ["--coverage"]
    include = sysconfig.get_paths()["include"]
    command = ["cc", *flags, f"-I{include}", str(SOURCE), "-o", str(target)]
    subprocess.run(command, check=True, cwd=directory)
    return target


def runtime_library() -> str:
    """libasan, which must be the first library loaded when Python is not built with it."""
    found = subprocess.run(
        ["cc", "-print-file-name=libasan.so"], check=True, capture_output=True, text=True
    ).stdout.strip()
    if not os.path.isabs(found):
        raise SystemExit("no libasan: install the C compiler's sanitizer runtime (libasan8)")
    return os.path.realpath(found)


def child_environment(extension: Path, *, sanitize: bool) -> dict[str, str]:
    env = dict(os.environ, SPOTDRAIN_FUZZ_EXTENSION=str(extension), PYTHONPATH=str(ROOT))
    if sanitize:
        env.update(
            LD_PRELOAD=runtime_library(),
            PYTHONMALLOC="malloc",
            # CPython frees little at exit: leaks are not what this run looks for.
            ASAN_OPTIONS="detect_leaks=0:abort_on_error=0:halt_on_error=1:exitcode=86",
            UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:exitcode=87",
        )
    return env


def coverage(directory: Path) -> dict[str, str]:
    """gcov's line and branch figures for the C file, from the counters the child left."""
    notes = sorted(directory.glob("*.gcno"))
    if not notes:
        return {}
    result = subprocess.run(
        ["gcov", "-b", "-n", str(notes[0])],
        cwd=directory,
        capture_output=True,
        text=True,
    )
    figures: dict[str, str] = {}
    for label, key in (("Lines executed", "lines"), ("Branches executed", "branches")):
        match = re.search(rf"{label}:([\d.]+% of \d+)", result.stdout)
        if match:
            figures[key] = match.group(1)
    return figures


def parent(args: argparse.Namespace) -> int:
    with tempfile.TemporaryDirectory(prefix="spotdrain-fuzz-") as scratch:
        directory = Path(scratch)
        extension = build(directory, sanitize=not args.no_sanitize)
        last_input = directory / "last-input.pickle"
        command = [sys.executable, "-m", "scripts.fuzz", "--child", str(last_input)]
        command += ["--seconds", str(args.seconds), "--seed", str(args.seed)]
        command += ["--only", *args.only] if args.only else []
        command += ["--canary"] if args.canary else []
        command += ["--findings", str(Path(args.findings).resolve())]
        env = child_environment(extension, sanitize=not args.no_sanitize)
        started = time.monotonic()
        child = subprocess.run(command, env=env, cwd=ROOT, capture_output=True, text=True)
        summary = _summary(child.stdout)
        if child.returncode != 0 and summary is None:
            summary = {"executions": {}, "findings": [_crash(child, last_input, args.findings)]}
        assert summary is not None
        summary["seconds"] = round(time.monotonic() - started, 1)
        summary["sanitizers"] = SANITIZERS if not args.no_sanitize else "none"
        summary["coverage"] = coverage(directory)
        print(json.dumps(summary))
        return 1 if summary["findings"] else 0


def _summary(stdout: str) -> dict[str, Any] | None:
    for line in reversed(stdout.splitlines()):
        with contextlib.suppress(ValueError):
            document = json.loads(line)
            if isinstance(document, dict) and "executions" in document:
                return document
    return None


def _crash(
    child: subprocess.CompletedProcess[str], last_input: Path, findings: str
) -> dict[str, Any]:
    report = [line for line in child.stderr.splitlines() if line.strip()]
    headline = next((line for line in report if "ERROR:" in line or "runtime error" in line), "")
    finding: dict[str, Any] = {
        "kind": "crash",
        "exit": child.returncode,
        "report": headline or "\n".join(report[-5:]),
    }
    if last_input.exists():
        name, arguments = pickle.loads(last_input.read_bytes())
        kept = _keep(last_input, Path(findings), name)
        finding.update(property=name, input=str(kept), example=repr(arguments)[:2000])
    return finding


def load_extension(path: str) -> None:
    """Make `path` the module worker.csvconv._fastcsv, before anything imports the real one."""
    spec = importlib.util.spec_from_file_location("worker.csvconv._fastcsv", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["worker.csvconv._fastcsv"] = module
    spec.loader.exec_module(module)


def child(args: argparse.Namespace) -> int:
    load_extension(os.environ["SPOTDRAIN_FUZZ_EXTENSION"])
    from hypothesis import given, settings
    from hypothesis import seed as seeded
    from hypothesis import strategies as st

    from tests.fuzz import properties
    from worker.csvconv import blocks

    assert blocks._fastcsv is sys.modules["worker.csvconv._fastcsv"]
    if args.canary:
        _overflow()
    names = args.only or list(properties.PROPERTIES)
    counts = dict.fromkeys(names, 0)
    findings: list[dict[str, Any]] = []
    failed: set[str] = set()
    record = open(args.child, "wb")  # noqa: SIM115 (open for the whole run)
    deadline = time.monotonic() + args.seconds
    rounds = 0
    while time.monotonic() < deadline and len(failed) < len(names):
        for name in names:
            if name in failed or (rounds and time.monotonic() >= deadline):  # one round each
                continue
            function, strategies = properties.PROPERTIES[name]

            run = _recorded(name, function, record, counts)
            round_settings = settings(properties.SETTINGS, max_examples=EXAMPLES_PER_ROUND)
            test = seeded(args.seed * 100_003 + rounds)(
                round_settings(given(st.tuples(*strategies))(run))
            )
            try:
                test()
            except Exception as exc:
                failed.add(name)
                notes = "\n".join(getattr(exc, "__notes__", []))
                error, example = repr(exc)[:2000], notes[:4000]
                record.flush()  # Hypothesis ran the shrunk example last: keep it
                kept = _keep(Path(args.child), Path(args.findings), name)
                findings.append(
                    {"kind": "property", "property": name, "error": error, "example": example,
                     "input": str(kept)}
                )  # fmt: skip
        rounds += 1
    record.close()
    print(json.dumps({"executions": counts, "rounds": rounds, "findings": findings}))
    return 0


def _keep(recorded: Path, directory: Path, name: str) -> Path:
    """Copy the input just run to `directory` (a pickle of (property, arguments))."""
    directory.mkdir(parents=True, exist_ok=True)
    kept = directory / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}.pickle"
    kept.write_bytes(recorded.read_bytes())
    return kept


def _recorded(name: str, function: Any, record: Any, counts: dict[str, int]) -> Any:
    """The property, writing each input to disk first (a crash leaves it there to read)."""
    from tests.fuzz import properties

    def run(arguments: tuple[Any, ...]) -> None:
        record.seek(0)
        record.write(pickle.dumps((name, arguments)))
        record.truncate()
        record.flush()
        counts[name] += 1
        properties.flat(function, arguments)

    return run


def _overflow() -> None:
    """Write past a heap block on purpose: proves the sanitizer watches this process."""
    import ctypes

    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    block = libc.malloc(16)
    ctypes.memmove(block, b"x" * 64, 64)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--only", nargs="*", default=[])
    parser.add_argument("--no-sanitize", action="store_true", help="plain build (faster)")
    parser.add_argument("--canary", action="store_true", help="overflow on purpose, then stop")
    parser.add_argument(
        "--findings", default=".fuzz-findings", help="where failing inputs are kept (pickles)"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    return child(args) if args.child else parent(args)


if __name__ == "__main__":
    raise SystemExit(main())
