"""The lossless inference rules of the README ("CSV to JSON"), and JSON string encoding."""

from __future__ import annotations

import re
from json.encoder import encode_basestring  # the C encoder when available

# Canonical integers (no leading zero, no '+', no '_'; "-0" stays a string because a JSON
# reader would return plain 0) and plain decimals ("3.5", "-0.25"; no exponent, no bare dot).
_NUMBER = re.compile(r"(?:0|-?[1-9][0-9]*)|-?(?:0|[1-9][0-9]*)\.[0-9]+", re.ASCII)


def json_string(value: str) -> str:
    """The value as a JSON string, exactly as json.dumps(..., ensure_ascii=False) writes it."""
    encoded: str = encode_basestring(value)
    return encoded


def inferred(value: str) -> str:
    """The JSON text of one CSV value under CSV_INFER_TYPES=true."""
    if value == "":
        return "null"
    if _NUMBER.fullmatch(value):
        return value
    lowered = value.lower()
    if lowered == "true" or lowered == "false":
        return lowered
    return json_string(value)
