"""The binary translate stream, protocol version 1 (docs/stream.md): frames built and parsed with struct,
requests pipelined on one WebSocket, replies matched in request order."""

from __future__ import annotations

import array
import asyncio
import json
import struct
import sys
from collections import deque
from typing import Any, Deque, Dict, Iterable, List, Optional, Sequence, Tuple, Union

from ._ws import connect
from .errors import IommudConnectionError, IommudError, error_from_code

__all__ = [
    "TranslateStream",
    "encode_request",
    "decode_reply",
    "STREAM_VERSION",
    "OP_TRANSLATE_READ",
    "OP_TRANSLATE_WRITE",
    "OP_TRANSLATE_EXEC",
    "OP_READ",
    "OP_WRITE",
    "OP_MMIO_READ",
    "OP_MMIO_WRITE",
    "STATUS_NAMES",
    "TLB_NAMES",
]

STREAM_VERSION = 1
OP_TRANSLATE_READ = 1
OP_TRANSLATE_WRITE = 2
OP_TRANSLATE_EXEC = 3
OP_READ = 4
OP_WRITE = 5
OP_MMIO_READ = 6
OP_MMIO_WRITE = 7
FLAG_PRIV = 1
MID_DEFAULT = 0xFF  # the context's first MID
MAX_ITEMS = 65536

STATUS_NAMES = ("ok", "translation", "permission", "access-flag", "external", "multi-hit", "tlb-miss", "stalled", "bad-offset")
TLB_NAMES = ("hit", "miss", "bypass")
ITEM_FLAG_STALE = 1
ITEM_FLAG_UNBACKED = 2

_HEADER = struct.Struct("<BBBBII")
_REPLY_HEADER = struct.Struct("<BBHII")
_ITEM = struct.Struct("<BBHI")
_ACCESS_OP = {"read": OP_TRANSLATE_READ, "write": OP_TRANSLATE_WRITE, "exec": OP_TRANSLATE_EXEC}

Item = Dict[str, Any]


def encode_request(op: int, id: int, iovas: Sequence[int], *, priv: bool = False, mid: int = MID_DEFAULT, second: Optional[Sequence[int]] = None, data: bytes = b"") -> bytes:
    """A request frame: header, the u32 iovas (or offsets), for read/write the u32 lengths (for mmio-write the
    u32 values), for write the bytes."""
    n = len(iovas)
    if not 1 <= n <= MAX_ITEMS:
        raise ValueError(f"a frame carries 1..{MAX_ITEMS} items, not {n}")
    words = list(iovas) if second is None else [*iovas, *second]
    return _HEADER.pack(STREAM_VERSION, op, FLAG_PRIV if priv else 0, mid, id & 0xFFFFFFFF, n) + struct.pack(f"<{len(words)}I", *words) + bytes(data)


def decode_reply(frame: bytes) -> Tuple[int, int, List[Item], bytes]:
    """A reply frame → (request id, opcode, items, trailing bytes). Each item is ``{"status", "tlb", "stale",
    "unbacked", "paddr"}`` with ``status`` and ``tlb`` by name, as the TypeScript SDK gives them."""
    version, op, _reserved, rid, n = _REPLY_HEADER.unpack_from(frame, 0)
    if version != STREAM_VERSION:
        raise IommudError("BAD_REPLY", f"not a version-{STREAM_VERSION} reply frame", 0)
    end = _REPLY_HEADER.size + _ITEM.size * n
    # Items as pairs of u32 (status | tlb << 8 | flags << 16, paddr); the first word's meaning is looked up once
    # per distinct value: a batch has few, and building the dicts is the cost that remains.
    words = array.array("I")
    words.frombytes(frame[_REPLY_HEADER.size : end])
    if sys.byteorder == "big":
        words.byteswap()
    meta = _META.get
    items = [
        {"status": m[0], "tlb": m[1], "stale": m[2], "unbacked": m[3], "paddr": pa}
        for m, pa in zip([meta(k) or _meta(k) for k in words[0::2]], words[1::2])
    ]
    return rid, op, items, bytes(frame[end:])


_META: Dict[int, Tuple[str, str, bool, bool]] = {}


def _meta(word: int) -> Tuple[str, str, bool, bool]:
    st, tlb, flags = word & 0xFF, (word >> 8) & 0xFF, word >> 16
    status = STATUS_NAMES[st] if st < len(STATUS_NAMES) else f"status-{st}"  # a newer daemon's status stays visible
    tlb_name = TLB_NAMES[tlb] if tlb < len(TLB_NAMES) else f"tlb-{tlb}"
    m = _META[word] = (status, tlb_name, bool(flags & ITEM_FLAG_STALE), bool(flags & ITEM_FLAG_UNBACKED))
    return m


def _pairs(items: Iterable[Any], a: str, b: str) -> Tuple[List[Any], List[Any]]:
    xs: List[Any] = []
    ys: List[Any] = []
    for it in items:
        if isinstance(it, dict):
            xs.append(it[a])
            ys.append(it[b])
        else:
            x, y = it
            xs.append(x)
            ys.append(y)
    return xs, ys


class TranslateStream:
    """``async with await s.stream("vfe_imgwr") as st: items = await st.translate("read", [0x10000000])``

    Any number of calls may be in flight at once (``asyncio.gather``, tasks): frames leave in call order, replies
    come back in that order, and at most ``max_in_flight`` await their reply (further calls wait for a slot:
    backpressure instead of an unbounded send buffer). A broken connection fails every call without a reply with
    IommudConnectionError: their outcome is unknown (docs/stream.md, reconnects)."""

    def __init__(self, ws: Any, max_in_flight: int = 64) -> None:
        self._ws = ws
        self._next_id = 1
        self._pending: Deque[Tuple[int, "asyncio.Future[Tuple[List[Item], bytes]]"]] = deque()
        self._slots = asyncio.Semaphore(max_in_flight)
        self._send_lock = asyncio.Lock()
        self._closed: Optional[BaseException] = None
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def open(cls, url: str, *, max_in_flight: int = 64) -> "TranslateStream":
        return cls(await connect(url), max_in_flight)

    @property
    def in_flight(self) -> int:
        return len(self._pending)

    async def translate(self, access: str, iovas: Sequence[int], *, priv: bool = False, mid: int = MID_DEFAULT) -> List[Item]:
        """One transaction per iova (TLB lookup, walk on a miss, permission check), no data moved; one result per
        iova, in order."""
        return (await self._send(encode_request(_ACCESS_OP[access], 0, iovas, priv=priv, mid=mid)))[0]

    async def read(self, items: Sequence[Union[Tuple[int, int], Dict[str, int]]], *, priv: bool = False, mid: int = MID_DEFAULT) -> List[Item]:
        """Reads ``length`` bytes at each ``iova`` (pairs or ``{"iova", "length"}``) through the SMMU; an ok item
        carries its bytes as ``data``."""
        iovas, lengths = _pairs(items, "iova", "length")
        res, data = await self._send(encode_request(OP_READ, 0, iovas, priv=priv, mid=mid, second=lengths))
        o = 0
        for it, n in zip(res, lengths):
            if it["status"] == "ok":
                it["data"] = data[o : o + n]
            o += n
        return res

    async def write(self, items: Sequence[Union[Tuple[int, bytes], Dict[str, Any]]], *, priv: bool = False, mid: int = MID_DEFAULT) -> List[Item]:
        """Writes bytes at each ``iova`` (pairs or ``{"iova", "data"}``) through the SMMU."""
        iovas, chunks = _pairs(items, "iova", "data")
        chunks = [bytes(c) for c in chunks]
        frame = encode_request(OP_WRITE, 0, iovas, priv=priv, mid=mid, second=[len(c) for c in chunks], data=b"".join(chunks))
        return (await self._send(frame))[0]

    async def mmio_read(self, offsets: Sequence[int]) -> List[Item]:
        """Reads registers of the device's SMMU window (byte offsets); each item's ``paddr`` holds the value."""
        return (await self._send(encode_request(OP_MMIO_READ, 0, offsets)))[0]

    async def mmio_write(self, items: Sequence[Union[Tuple[int, int], Dict[str, int]]]) -> List[Item]:
        """Writes registers in order, with their side effects (pairs or ``{"offset", "value"}``); each item's
        ``paddr`` holds the value written."""
        offsets, values = _pairs(items, "offset", "value")
        return (await self._send(encode_request(OP_MMIO_WRITE, 0, offsets, second=[v & 0xFFFFFFFF for v in values])))[0]

    async def request(self, frame: bytes) -> Tuple[List[Item], bytes]:
        """Sends a request frame built by the caller (its id is replaced by the stream's own): the escape hatch
        for opcodes and flags this class has no method for."""
        return await self._send(frame)

    async def close(self, timeout: float = 10.0) -> None:
        """Waits (up to ``timeout`` s) for the replies already asked for, then closes the socket; calls that
        still wait fail with IommudConnectionError."""
        if self._closed is None:
            self._closed = IommudConnectionError("stream closed")
            waiting = [f for _, f in self._pending]
            if waiting:
                await asyncio.wait(waiting, timeout=timeout)
        await self._ws.close()
        try:
            await self._reader
        except Exception:
            pass

    async def __aenter__(self) -> "TranslateStream":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def _send(self, frame: bytes) -> Tuple[List[Item], bytes]:
        await self._slots.acquire()
        loop = asyncio.get_running_loop()
        fut: "asyncio.Future[Tuple[List[Item], bytes]]" = loop.create_future()
        try:
            # The lock keeps "queued as pending" and "written to the socket" in one order.
            async with self._send_lock:
                if self._closed is not None:
                    raise self._closed
                rid = self._next_id
                self._next_id = (self._next_id + 1) & 0xFFFFFFFF
                self._pending.append((rid, fut))
                try:
                    await self._ws.send(frame[:4] + struct.pack("<I", rid) + frame[8:])
                except Exception as e:
                    raise IommudConnectionError(f"stream send failed: {e}") from e
            return await fut
        finally:
            self._slots.release()

    async def _read(self) -> None:
        err: BaseException = IommudConnectionError("stream closed by the daemon")
        try:
            async for msg in self._ws:
                if isinstance(msg, str):
                    self._refused(json.loads(msg))
                    continue
                rid, _op, items, data = decode_reply(msg)
                if not self._pending:
                    continue
                want, fut = self._pending.popleft()
                if fut.done():
                    continue
                if rid != want:
                    fut.set_exception(IommudConnectionError(f"stream reply {rid} out of order (expected {want})"))
                else:
                    fut.set_result((items, data))
        except Exception as e:
            err = IommudConnectionError(f"stream connection lost: {e}")
        finally:
            if self._closed is None:
                self._closed = err
            while self._pending:
                _, fut = self._pending.popleft()
                if not fut.done():
                    fut.set_exception(self._closed)

    def _refused(self, m: Dict[str, Any]) -> None:
        e = m.get("error") or {}
        err = error_from_code(e.get("code", "BAD_REQUEST"), e.get("message", ""), e.get("details"))
        rid = m.get("id")
        for i, (want, fut) in enumerate(self._pending):
            if rid is None or want == rid:
                del self._pending[i]
                if not fut.done():
                    fut.set_exception(err)
                return
