"""The event subscription: an async iterator over a session's events that reconnects and resumes with
``since``, so a rig never misses an event: it gets it, or a gap notice that names it."""

from __future__ import annotations

import asyncio
import json
import random
import threading
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple, Union

from . import _wire as w
from ._ws import connect
from .errors import IommudConnectionError, IommudError, error_from_code

if TYPE_CHECKING:
    from .client import Session

Event = Dict[str, Any]

__all__ = ["EventSubscription", "Event"]

_CLOSED = object()


class EventSubscription:
    """``async with s.subscribe(types=["fault"]) as sub: async for ev in sub: ...``

    Items are events (the API's dicts, hex strings as ints) and, where the daemon could no longer give some
    events, ``{"type": "gap", "from": first, "to": last}`` in their place (also collected in ``gaps``).
    ``last_seq`` is the last seq delivered or covered by a gap: where a reconnect resumes. Without ``since`` the
    subscription starts at the session's current ``lastSeq`` (nothing older is replayed, nothing newer is lost,
    even across a reconnect before the first event)."""

    def __init__(
        self,
        session: "Session",
        *,
        types: Optional[Sequence[str]] = None,
        device: Optional[str] = None,
        since: Optional[int] = None,
        reconnect: Tuple[float, float] = (0.05, 2.0),
        connect_attempts: int = 5,
        batch: bool = True,
    ) -> None:
        self.connect_attempts = connect_attempts
        self.batch = batch
        #: Whether the current connection carries batched messages (asked for when the daemon offers them).
        self.batched = False
        self.session = session
        self.types = list(types) if types else None
        self.device = device
        self.last_seq: int = -1 if since is None else int(since)
        self._since_given = since is not None
        self.gaps: List[Tuple[int, int]] = []
        self.reconnects = 0
        self._delay_bounds = reconnect
        self._queue: "asyncio.Queue[Union[Event, BaseException, object]]" = asyncio.Queue()
        self._ws: Any = None
        self._task: Optional["asyncio.Task[None]"] = None
        self._opened: Optional["asyncio.Future[None]"] = None
        self._ended: Optional["asyncio.Future[None]"] = None
        self._closed = False

    # ---- lifecycle ----
    async def ready(self) -> "EventSubscription":
        """Starts the subscription; returns once the first connection is open (raises the refusal otherwise)."""
        if self._task is None:
            if not self._since_given:
                self.last_seq = int((await asyncio.get_running_loop().run_in_executor(None, self.session.get))["lastSeq"])
            self._opened = asyncio.get_running_loop().create_future()
            self._ended = asyncio.get_running_loop().create_future()
            self._task = asyncio.ensure_future(self._run())
        assert self._opened is not None
        await asyncio.shield(self._opened)
        return self

    async def done(self) -> None:
        """Returns when close() is called; raises the refusal that ended the subscription (or the failed first
        connect)."""
        await self.ready()
        assert self._ended is not None
        await asyncio.shield(self._ended)

    async def close(self) -> None:
        if self._ended is not None and not self._ended.done():
            self._ended.set_result(None)
        self._closed = True
        if self._ws is not None:
            await self._ws.close()
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except (asyncio.CancelledError, Exception):
                pass
        self._queue.put_nowait(_CLOSED)

    async def __aenter__(self) -> "EventSubscription":
        return await self.ready()

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()

    async def drop_connection(self) -> None:
        """Breaks the socket as a network failure would (for tests of the resume path)."""
        if self._ws is not None:
            transport = getattr(self._ws, "transport", None)
            if transport is not None:
                transport.abort()
            else:
                await self._ws.close()

    # ---- consuming ----
    def __aiter__(self) -> "EventSubscription":
        return self

    async def __anext__(self) -> Event:
        item = await self._queue.get()
        if item is _CLOSED:
            self._queue.put_nowait(_CLOSED)
            raise StopAsyncIteration
        if isinstance(item, BaseException):
            raise item
        return item  # type: ignore[return-value]

    async def next(self, timeout: Optional[float] = None) -> Event:
        """The next event or gap; ``asyncio.TimeoutError`` after ``timeout`` seconds."""
        await self.ready()
        return await asyncio.wait_for(self.__anext__(), timeout)

    async def collect(self, until_seq: int, timeout: float = 10.0) -> List[Event]:
        """Events and gaps until ``last_seq`` reaches ``until_seq`` (a session's ``lastSeq``, say)."""
        out: List[Event] = []
        loop = asyncio.get_running_loop()
        end = loop.time() + timeout
        reached = -1
        while reached < until_seq:
            item = await self.next(max(0.0, end - loop.time()))
            out.append(item)
            reached = item["to"] if item["type"] == "gap" else item["seq"]
        return out

    async def resume(self, stall: str, action: str) -> None:
        """Answers a stall on this socket (needs an operator token); a refusal arrives as an IommudError from
        the iterator."""
        if self._ws is None:
            raise IommudConnectionError("the subscription is not connected")
        await self._ws.send(json.dumps({"type": "resume", "stall": stall, "action": action}))

    # ---- the connection loop ----
    def _url(self) -> str:
        q = ["batch=1"] if self.batched else []
        if self.types:
            q.append("types=" + ",".join(self.types))
        if self.device:
            q.append("device=" + w.seg(self.device))
        if self.last_seq >= 0:
            q.append(f"since={self.last_seq}")
        return self.session._ws_url("/events", "&".join(q))

    async def _run(self) -> None:
        lo, hi = self._delay_bounds
        delay = lo
        attempts = 0
        assert self._opened is not None
        while not self._closed:
            # Checked at every connection: a daemon restarted at another version may not offer batches.
            self.batched = self.batch and await self._offers_batches()
            try:
                ws = await connect(self._url())
            except IommudError as e:
                # A refusal (bad token, unknown session, bad filter, quota) is final; a 5xx once the subscription
                # has been open is a daemon restarting or a proxy whose node is down: retry.
                if not self._opened.done() or e.status < 500:
                    self._fail(e)
                    return
                ws = None
            except IommudConnectionError as e:
                attempts += 1
                if not self._opened.done() and attempts >= self.connect_attempts:
                    self._fail(e)  # no daemon there: say so rather than wait forever
                    return
                ws = None  # it may be restarting: keep trying (a live subscription, forever)
            if ws is None:
                await asyncio.sleep(delay * (0.75 + random.random() / 2))
                delay = min(delay * 2, hi)
                continue
            self._ws = ws
            delay = lo
            attempts = 0
            if not self._opened.done():
                self._opened.set_result(None)
            else:
                self.reconnects += 1
            try:
                async for raw in ws:
                    m = json.loads(raw)
                    # Batched: an array of events; gaps and errors stay single objects.
                    if isinstance(m, list):
                        for ev in m:
                            self._deliver(ev)
                    else:
                        self._deliver(m)
            except Exception:
                pass  # a dropped connection: reconnect and resume with since
            finally:
                self._ws = None

    async def _offers_batches(self) -> bool:
        """The daemon lists ``event-batches`` in ``GET /v1/version`` (an unreachable daemon: ask without)."""
        try:
            v = await asyncio.get_running_loop().run_in_executor(None, self.session.client.version)
        except Exception:
            return False
        return "event-batches" in (v.get("capabilities") or [])

    def _deliver(self, m: Dict[str, Any]) -> None:
        t = m.get("type")
        if t == "gap":
            frm, to = int(m["from"]), int(m["to"])
            self.gaps.append((frm, to))
            if to > self.last_seq:
                self.last_seq = to
            self._queue.put_nowait({"type": "gap", "from": frm, "to": to})
        elif t == "error":
            e = m.get("error") or {}
            self._queue.put_nowait(error_from_code(e.get("code", "BAD_REQUEST"), e.get("message", ""), e.get("details")))
        elif isinstance(m.get("seq"), int) and m["seq"] > self.last_seq:
            # A replay after a reconnect never repeats what was already delivered.
            self.last_seq = m["seq"]
            self._queue.put_nowait(w.from_api(m))

    def _fail(self, e: BaseException) -> None:
        assert self._opened is not None and self._ended is not None
        self._closed = True
        if not self._opened.done():
            self._opened.set_exception(e)
            self._opened.exception()  # whoever awaits only done() must not leave this one unretrieved
        else:
            self._queue.put_nowait(e)
            self._queue.put_nowait(_CLOSED)
        if not self._ended.done():
            self._ended.set_exception(e)
            self._ended.exception()


def recent_events(session: "Session", limit: int = 50, timeout: float = 5.0) -> List[str]:
    """The session's last ``limit`` retained events as the daemon's own JSON lines (hex kept as hex), fetched
    synchronously (in a thread of its own, so it works with or without a running event loop). For reports."""
    last = int(session.get()["lastSeq"])
    if last <= 0:
        return []
    url = session._ws_url("/events", f"since={max(0, last - limit)}")

    async def fetch() -> List[str]:
        out: List[str] = []
        ws = await connect(url)
        try:
            while True:
                raw = await asyncio.wait_for(ws.recv(), timeout)
                out.append(raw)
                m = json.loads(raw)
                if m.get("seq", m.get("to", 0)) >= last:
                    return out
        finally:
            await ws.close()

    result: List[str] = []
    error: List[BaseException] = []

    def run() -> None:
        try:
            result.extend(asyncio.run(fetch()))
        except BaseException as e:  # handed to the caller's thread
            error.append(e)

    t = threading.Thread(target=run, name="iommud-recent-events")
    t.start()
    t.join(timeout + 5)
    if error:
        raise error[0]
    return result
