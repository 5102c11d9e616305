"""Opaque cursors and page-size checks shared by every connection."""

from __future__ import annotations

import base64
import binascii
import json
import math
from typing import Any

from api.settings import MAX_PAGE
from core.errors import BadRequest, LimitExceeded


def check_first(first: int) -> int:
    if first < 0:
        raise BadRequest(f"first must be >= 0, got {first}")
    if first > MAX_PAGE:
        raise LimitExceeded(f"first must be <= {MAX_PAGE}, got {first}; page with `after`")
    return first


def encode_cursor(tag: str, *key: Any) -> str:
    raw = json.dumps([tag, *key], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, tag: str, arity: int) -> list[Any]:
    """The key values of a cursor made by :func:`encode_cursor` with the same `tag`."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        value = json.loads(base64.urlsafe_b64decode(padded.encode()))
    except (ValueError, binascii.Error, UnicodeDecodeError) as exc:
        raise BadRequest(f"malformed cursor {cursor!r}") from exc
    if not isinstance(value, list) or len(value) != arity + 1 or value[0] != tag:
        raise BadRequest(f"cursor {cursor!r} does not belong to this field and ordering")
    key = value[1:]
    if not all(_key_value(k) for k in key):
        raise BadRequest(f"malformed cursor {cursor!r}")
    return key


INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def _key_value(k: object) -> bool:
    """A number a cursor may hold: a 64-bit integer or a finite float (json reads NaN too)."""
    if isinstance(k, bool):
        return False
    if isinstance(k, int):
        return INT64_MIN <= k <= INT64_MAX
    return isinstance(k, float) and math.isfinite(k)


def decode_int_cursor(cursor: str, tag: str, arity: int = 1, *, low: int = INT64_MIN) -> list[int]:
    """The integer keys (nucleus IDs, offsets) of a cursor; BadRequest for a float or a key
    outside low..2**63-1."""
    key = decode_cursor(cursor, tag, arity)
    if not all(isinstance(k, int) and low <= k for k in key):
        raise BadRequest(f"malformed cursor {cursor!r}")
    return key


def parse_root_id(root_id: str) -> int:
    """A 64-bit root ID sent as a decimal string."""
    text = root_id.strip()
    if len(text) > 20 or not text.isdigit() or not text.isascii():  # 2**63 has 19 digits
        raise BadRequest(f"root ID must be a non-negative decimal integer string, got {root_id!r}")
    value = int(text)
    if value >= 2**63:
        raise BadRequest(f"root ID {root_id} does not fit in 64 bits")
    return value
