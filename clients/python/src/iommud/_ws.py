"""Opening WebSockets with Debian's python3-websockets (10.x) or a newer one, refusals mapped to IommudError."""

from __future__ import annotations

import asyncio
from typing import Any

import websockets
import websockets.exceptions as wse

from .errors import IommudConnectionError, error_from

# A refused upgrade carries the HTTP status only (websockets 10 does not read the body): the code is the API's
# code for that status.
_STATUS_CODE = {400: "BAD_REQUEST", 401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 429: "LIMIT", 503: "UNAVAILABLE"}


def refused_status(e: BaseException) -> int:
    """The HTTP status of a refused upgrade, 0 when ``e`` is not one."""
    status = getattr(e, "status_code", None)
    if status is None:
        status = getattr(getattr(e, "response", None), "status_code", None)
    return int(status or 0)


async def connect(url: str, open_timeout: float = 10.0) -> Any:
    """The token travels as ``?token=`` (API.md allows it on WebSocket routes), so no header keyword differs
    between websockets versions."""
    try:
        return await websockets.connect(url, compression=None, max_size=None, open_timeout=open_timeout)  # type: ignore[attr-defined]
    except wse.InvalidHandshake as e:
        status = refused_status(e)
        if status:
            code = _STATUS_CODE.get(status, f"HTTP_{status}")
            raise error_from(status, code, f"WebSocket upgrade refused: HTTP {status}") from e
        raise IommudConnectionError(f"WebSocket handshake failed: {e}") from e
    except (OSError, asyncio.TimeoutError, wse.WebSocketException) as e:
        raise IommudConnectionError(f"cannot open {url.split('?')[0]}: {e}") from e
