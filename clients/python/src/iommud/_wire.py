"""Between Python and the API's JSON: snake_case keywords → camelCase keys, bytes → base64 on the way out;
"0x…" strings → int on the way back."""

from __future__ import annotations

import base64
import re
from typing import Any, Dict, FrozenSet
from urllib.parse import quote

_HEX = re.compile(r"0x[0-9a-fA-F]+")

# Keys whose values are free text or opaque ids: a label spelled "0x10" stays a string.
TEXT_KEYS: FrozenSet[str] = frozenset({"id", "name", "label", "description", "message", "token", "time", "createdAt", "stall", "node"})


def camel(key: str) -> str:
    """``line_size`` → ``lineSize``; a trailing underscore (``for_``, ``from_``) only avoids a Python keyword."""
    key = key.rstrip("_")
    head, *rest = key.split("_")
    return head + "".join(p[:1].upper() + p[1:] for p in rest)


def to_api(value: Any) -> Any:
    """A request body: keys camelCased at every depth, bytes as base64 (the API's ``data`` fields)."""
    if isinstance(value, dict):
        return {camel(k) if isinstance(k, str) else k: to_api(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_api(v) for v in value]
    if isinstance(value, (bytes, bytearray, memoryview)):
        return base64.b64encode(bytes(value)).decode("ascii")
    return value


def body(**fields: Any) -> Dict[str, Any]:
    """Keyword arguments → a body, leaving out the ones not given (None)."""
    return to_api({k: v for k, v in fields.items() if v is not None})


def from_api(value: Any, key: str = "") -> Any:
    """A response: every hex string (addresses, registers, descriptors) → int, at every depth."""
    if isinstance(value, str):
        if key not in TEXT_KEYS and _HEX.fullmatch(value):
            return int(value, 16)
        return value
    if isinstance(value, dict):
        return {k: from_api(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [from_api(v, key) for v in value]
    return value


def decode_data(result: Any) -> Any:
    """Device-access results carry transferred bytes as base64 ``data``: give them as bytes."""
    if isinstance(result, dict):
        if isinstance(result.get("data"), str):
            result["data"] = base64.b64decode(result["data"])
        for v in result.values():
            if isinstance(v, (dict, list)):
                decode_data(v)
    elif isinstance(result, list):
        for v in result:
            decode_data(v)
    return result


def seg(value: Any) -> str:
    """A path segment naming something (a device, a context by index or name): percent-encoded text."""
    return quote(str(value), safe="")


def addr(value: Any) -> str:
    """An address or offset in a path or query: ints as hex (the API takes hex or decimal there)."""
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return hex(value)
    return quote(str(value), safe="")
