"""Errors: one class per HTTP status of the API's error table, each carrying the API's ``code``, ``status``
and ``details``."""

from __future__ import annotations

from typing import Any, Dict, Optional, Type

from ._wire import from_api

# The daemon's table (src/errors.ts): needed where a refusal arrives without an HTTP status (stream and
# event-socket messages).
CODE_STATUS: Dict[str, int] = {
    "BAD_REQUEST": 400,
    "UNSUPPORTED_MEDIA_TYPE": 415,
    "UNALIGNED": 400,
    "OUT_OF_RANGE": 400,
    "UNAUTHORIZED": 401,
    "FORBIDDEN": 403,
    "NOT_FOUND": 404,
    "NOT_MAPPED": 404,
    "ALREADY_MAPPED": 409,
    "DEVICE_BUSY": 409,
    "DOMAIN_ATTACHED": 409,
    "NOT_ATTACHED": 409,
    "PARTIAL_UNMAP": 409,
    "DOMAIN_TYPE": 409,
    "DMA_DEBUG": 409,
    "NO_SPACE": 507,
    "PAYLOAD_TOO_LARGE": 413,
    "LIMIT": 429,
    "UNAVAILABLE": 503,
}


class IommudError(Exception):
    """A refusal from the daemon: ``code`` is API.md's (``ALREADY_MAPPED``, ``DMA_DEBUG``, ...), ``status`` the
    HTTP status, ``details`` the error's details object (empty when it has none)."""

    def __init__(self, code: str, message: str, status: int, details: Optional[Dict[str, Any]] = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.status = status
        self.details: Dict[str, Any] = details or {}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, status={self.status}, message={self.message!r}, details={self.details!r})"


class BadRequest(IommudError):
    """400: BAD_REQUEST, UNALIGNED, OUT_OF_RANGE."""


class Unauthorized(IommudError):
    """401: missing or unknown token for this session (also: unknown session)."""


class Forbidden(IommudError):
    """403: the token's role may not do this."""


class NotFound(IommudError):
    """404: NOT_FOUND, NOT_MAPPED."""


class Conflict(IommudError):
    """409: ALREADY_MAPPED, DEVICE_BUSY, DOMAIN_ATTACHED, NOT_ATTACHED, PARTIAL_UNMAP, DOMAIN_TYPE, DMA_DEBUG."""


class PayloadTooLarge(IommudError):
    """413: body or batch over the configured limit."""


class UnsupportedMediaType(IommudError):
    """415: a body that is not JSON."""


class RateLimited(IommudError):
    """429 LIMIT: a quota or the rate limit; ``retry_after`` (seconds) when the daemon sent Retry-After."""

    retry_after: Optional[float] = None


class Unavailable(IommudError):
    """503 UNAVAILABLE: persistence failed, or (through a cluster's proxy) the session's node is down."""

    retry_after: Optional[float] = None


class NoSpace(IommudError):
    """507 NO_SPACE: IOVA allocator, physical pool or bounce pool exhausted."""


class IommudConnectionError(ConnectionError):
    """The daemon could not be reached, or a stream's connection broke (requests without a reply are unknown)."""


STATUS_CLASS: Dict[int, Type[IommudError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    415: UnsupportedMediaType,
    429: RateLimited,
    503: Unavailable,
    507: NoSpace,
}


def error_from(status: int, code: str, message: str, details: Optional[Dict[str, Any]] = None, retry_after: Optional[float] = None) -> IommudError:
    """The subclass for ``status`` (IommudError itself for a status the API does not use); hex in details as int."""
    err = STATUS_CLASS.get(status, IommudError)(code, message, status, from_api(details) if details else None)
    if retry_after is not None and isinstance(err, (RateLimited, Unavailable)):
        err.retry_after = retry_after
    return err


def error_from_code(code: str, message: str, details: Optional[Dict[str, Any]] = None) -> IommudError:
    """For refusals that arrive as socket messages: the status comes from the code."""
    return error_from(CODE_STATUS.get(code, 400), code, message, details)
