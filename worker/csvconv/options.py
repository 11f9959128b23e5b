"""What one conversion is asked to do, how header names become keys, how a delimiter is sniffed."""

from __future__ import annotations

import codecs
import csv
import io
from dataclasses import dataclass
from typing import Literal

from worker.csvconv.values import json_string

Ragged = Literal["error", "pad", "truncate"]
SNIFF_CANDIDATES = (",", ";", "\t", "|")
SNIFF_RECORDS = 100


@dataclass(frozen=True, kw_only=True)
class CsvOptions:
    """The conversion's inputs besides the bytes (built from CsvSettings by the handler)."""

    delimiter: str = ","  # one character, or "auto"
    encoding: str = "utf-8"
    infer_types: bool = False
    ragged: Ragged = "error"
    output_format: Literal["ndjson", "json"] = "ndjson"
    # Memory bounds against hostile input: the framer holds one record at most this long
    # (the csv module's exact path needs up to 8 bytes per character of it: the bound must
    # stay small), and refuses headers wider than max_columns.
    max_record_bytes: int = 16 * 1024 * 1024
    max_columns: int = 100_000

    @property
    def utf8(self) -> bool:
        """UTF-8 input (with or without BOM) is read as is; anything else is transcoded first."""
        return codecs.lookup(self.encoding).name in ("utf-8", "utf-8-sig")


@dataclass(frozen=True)
class Layout:
    """Everything a frame converter needs; small and picklable (it travels to worker processes)."""

    keys: tuple[str, ...]
    delimiter: str
    typed: bool
    ragged: Ragged
    row_separator: bytes  # between two rows of one frame: b"\n" (ndjson) or b",\n" (json)
    max_fields: int = 100_000  # a record wider than this is refused before it is parsed

    def key_json(self, index: int) -> bytes:
        return json_string(self.keys[index]).encode("utf-8")


def header_keys(names: list[str]) -> tuple[str, ...]:
    """Unique keys from header names, deterministically.

    A name is kept as written (a UTF-8 BOM never reaches it: it is removed before parsing).
    An empty name becomes ``column_<position>`` (1-based); a repeated name gets ``_2``, ``_3``,
    ... The first candidate not already used and not written elsewhere in the header wins.
    """
    written = {name for name in names if name}
    used: set[str] = set()
    keys: list[str] = []
    for position, name in enumerate(names, start=1):
        if name and name not in used:
            key = name
        else:
            base = name or f"column_{position}"
            key = base if not name and base not in written and base not in used else ""
            suffix = 2
            while not key:
                candidate = f"{base}_{suffix}"
                if candidate not in written and candidate not in used:
                    key = candidate
                suffix += 1
        used.add(key)
        keys.append(key)
    return tuple(keys)


def sniff_delimiter(sample: str) -> str:
    """The candidate (, ; TAB |) that splits the sample's first records most consistently.

    Ties go to the earlier candidate; a sample no candidate splits in two reads as comma.
    """
    best: tuple[bool, float, int] | None = None
    choice = ","
    lines = sample.splitlines(keepends=True)
    if len(lines) > 1 and not sample.endswith(("\n", "\r")):
        lines = lines[:-1]  # the last line may be cut short
    text = "".join(lines[: SNIFF_RECORDS * 4])
    for candidate in SNIFF_CANDIDATES:
        reader = csv.reader(io.StringIO(text, newline=""), delimiter=candidate, strict=False)
        counts: list[int] = []
        try:
            for row in reader:
                if row:
                    counts.append(len(row))
                if len(counts) >= SNIFF_RECORDS:
                    break
        except csv.Error:
            continue
        if not counts or counts[0] < 2:
            continue
        consistency = counts.count(counts[0]) / len(counts)
        score = (consistency == 1.0, consistency, counts[0])
        if best is None or score > best:
            best, choice = score, candidate
    return choice
