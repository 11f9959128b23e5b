"""The files a build sends (Docker's .dockerignore rules) and a digest of them.

An image whose build context, Dockerfile and base are unchanged need not be built again:
with vfs even a build whose every layer is cached takes a minute, copying trees.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

_WILDCARDS = re.compile(r"[*?\[]")


def _rules(context: Path) -> list[tuple[bool, re.Pattern[str], str]]:
    """(excludes, regex, literal prefix) per .dockerignore line, in order."""
    ignore = context / ".dockerignore"
    rules = []
    lines = ignore.read_text().splitlines() if ignore.exists() else []
    for raw in lines:
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        excludes = not line.startswith("!")
        pattern = os.path.normpath(line.lstrip("!").strip()).lstrip("/")
        regex = re.escape(pattern).replace(r"\*\*", "\0").replace(r"\*", "[^/]*")
        regex = regex.replace(r"\?", "[^/]").replace("\0", ".*")
        literal = _WILDCARDS.split(pattern, maxsplit=1)[0]
        rules.append((excludes, re.compile(regex), literal))
    return rules


def _excluded(relative: str, rules: list[tuple[bool, re.Pattern[str], str]]) -> bool:
    """Docker's rule: the last pattern matching the path or one of its parents decides."""
    parts = relative.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    verdict = False
    for excludes, regex, _ in rules:
        if any(regex.fullmatch(candidate) for candidate in candidates):
            verdict = excludes
    return verdict


def context_files(context: Path) -> list[str]:
    """Relative paths of the files a build of `context` receives, sorted."""
    rules = _rules(context)
    exceptions = [literal for excludes, _, literal in rules if not excludes]
    found = []
    for folder, directories, files in os.walk(context):
        base = os.path.relpath(folder, context)
        base = "" if base == "." else base + "/"
        directories[:] = [
            d
            for d in directories
            if not _excluded(base + d, rules)
            or any(
                e == "" or e.startswith(base + d + "/") or (base + d).startswith(e)
                for e in exceptions
            )
        ]
        found += [base + f for f in files if not _excluded(base + f, rules)]
    return sorted(found)


def context_digest(context: Path, *, dockerfile: Path, base_id: str) -> str:
    digest = hashlib.sha256(base_id.encode() + b"\0" + dockerfile.read_bytes())
    for relative in context_files(context):
        path = context / relative
        digest.update(f"\0{relative}\0{os.stat(path).st_mode & 0o111}\0".encode())
        digest.update(path.read_bytes())
    return digest.hexdigest()
