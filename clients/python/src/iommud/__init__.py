"""iommud: the Python client of the iommud IOMMU emulator, and its pytest plugin (``iommud.pytest_plugin``).

REST methods are synchronous; the event subscription and the binary stream are asyncio::

    from iommud import Client
    s = Client("http://127.0.0.1:8080").create_session(profile="tiny")
    d = s.alloc_domain()
    s.attach(d["id"], "dev0")
    s.map(d["id"], iova=0x10000000, paddr=0x80000000, size=0x100000, prot=["read", "write"])
    async with s.stream("dev0") as st:
        items = await st.translate("read", [0x10000000])   # [{"status": "ok", "paddr": 0x80000000, ...}]
"""

from .client import Client, Session
from .errors import (
    BadRequest,
    Conflict,
    Forbidden,
    IommudConnectionError,
    IommudError,
    NoSpace,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from .events import EventSubscription, recent_events
from .stream import TranslateStream, decode_reply, encode_request

__version__ = "0.1.0"

__all__ = [
    "Client",
    "Session",
    "EventSubscription",
    "TranslateStream",
    "encode_request",
    "decode_reply",
    "recent_events",
    "IommudError",
    "IommudConnectionError",
    "BadRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "PayloadTooLarge",
    "UnsupportedMediaType",
    "RateLimited",
    "Unavailable",
    "NoSpace",
]
