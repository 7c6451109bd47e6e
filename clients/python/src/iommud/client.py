"""The REST client: ``Client`` for the daemon, ``Session`` with one method per route of API.md, named as the
TypeScript SDK's methods in snake_case. REST calls are synchronous (plain pytest tests need no event loop); the
event subscription and the binary stream are asyncio (``await s.stream(device)``, ``async for ev in sub``)."""

from __future__ import annotations

import http.client
import json
import re
from typing import Any, Dict, Generator, Iterator, List, Literal, Optional, Sequence, Union
from urllib.parse import parse_qs, urlsplit

from . import _wire as w
from .errors import IommudConnectionError, error_from
from .events import EventSubscription
from .stream import TranslateStream

Addr = Union[int, str]
Role = Literal["observer", "operator", "owner"]
Access = Literal["read", "write", "exec"]
Direction = Literal["to-device", "from-device", "bidirectional"]
Result = Dict[str, Any]

__all__ = ["Client", "Session"]


class _Http:
    """One request per connection (http.client): simple, thread-safe, and a refused request is never re-sent."""

    def __init__(self, url: str, timeout: float) -> None:
        u = urlsplit(url)
        if u.scheme not in ("http", "https") or not u.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        self.url = url.rstrip("/")
        self.scheme = u.scheme
        self.host = u.hostname
        self.port = u.port or (443 if u.scheme == "https" else 80)
        self.prefix = u.path.rstrip("/")
        self.timeout = timeout

    def request(self, method: str, path: str, token: Optional[str] = None, body: Any = None, raw: Optional[bytes] = None, headers_out: Optional[Dict[str, str]] = None) -> Any:
        headers = {"accept": "application/json"}
        if token:
            headers["authorization"] = f"Bearer {token}"
        payload: Optional[bytes] = None
        if raw is not None:
            headers["content-type"] = "application/octet-stream"
            payload = bytes(raw)
        elif body is not None:
            headers["content-type"] = "application/json"
            payload = json.dumps(body).encode()
        cls = http.client.HTTPSConnection if self.scheme == "https" else http.client.HTTPConnection
        conn = cls(self.host, self.port, timeout=self.timeout)
        try:
            conn.request(method, self.prefix + path, body=payload, headers=headers)
            res = conn.getresponse()
            data = res.read()
        except (OSError, http.client.HTTPException) as e:
            raise IommudConnectionError(f"cannot reach {self.url}: {e}") from e
        finally:
            conn.close()
        if headers_out is not None:
            headers_out.update({k.lower(): v for k, v in res.getheaders()})
        ctype = res.getheader("content-type", "") or ""
        if res.status >= 400:
            err: Dict[str, Any] = {}
            if "application/json" in ctype:
                try:
                    err = json.loads(data).get("error") or {}
                except ValueError:
                    pass
            retry = res.getheader("retry-after")
            raise error_from(
                res.status,
                err.get("code", f"HTTP_{res.status}"),
                err.get("message", res.reason),
                err.get("details"),
                float(retry) if retry and retry.replace(".", "", 1).isdigit() else None,
            )
        if res.status == 204:
            return None
        if "application/octet-stream" in ctype:
            return data
        if "application/json" in ctype:
            return json.loads(data)
        return data.decode()


class Client:
    """The daemon at ``url`` (``IOMMUD_URL``); ``token`` is the default for ``session(id)``."""

    def __init__(self, url: str, token: Optional[str] = None, *, timeout: float = 30.0) -> None:
        self._http = _Http(url, timeout)
        self.url = self._http.url
        self.token = token
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"Client({self.url!r})"

    def health(self) -> Result:
        return w.from_api(self._http.request("GET", "/health"))

    def version(self) -> Result:
        return w.from_api(self._http.request("GET", "/v1/version"))

    def profiles(self) -> List[Result]:
        return w.from_api(self._http.request("GET", "/v1/profiles"))

    def metrics(self) -> str:
        return self._http.request("GET", "/metrics")

    def create_session(
        self,
        *,
        name: Optional[str] = None,
        profile: Union[str, Dict[str, Any], None] = None,
        tlb_entries: Optional[int] = None,
        tlb_policy: Optional[Literal["lru", "round-robin", "flush-all"]] = None,
        stall_timeout_ms: Optional[int] = None,
        persist: Optional[bool] = None,
        trace: Union[str, List[Dict[str, Any]], None] = None,
        **fields: Any,
    ) -> "Session":
        """``POST /v1/sessions``; the returned Session carries the owner token and the reply as ``created``.
        Further body fields (``cpu_cache={"line_size": 32}``, ``bounce=...``) pass through in camelCase."""
        b = w.body(name=name, profile=profile, tlb_entries=tlb_entries, tlb_policy=tlb_policy, stall_timeout_ms=stall_timeout_ms, persist=persist, **fields)
        if trace is not None:
            b["trace"] = trace  # records replay verbatim: their keys are the daemon's own
        created = self._http.request("POST", "/v1/sessions", body=b)
        s = Session(self, created["id"], created["token"])
        s.created = w.from_api(created)
        return s

    def session(self, id: str, token: Optional[str] = None) -> "Session":
        """An existing session (the client's token unless one is given)."""
        token = token or self.token
        if not token:
            raise ValueError("a session needs a token")
        return Session(self, id, token)


class Session:
    """One session: a method per route, named as the TypeScript SDK's in snake_case. Parameters the SDK takes
    positionally are positional here; body fields are keyword arguments in snake_case. Results are the API's
    dicts with every hex string as an int."""

    created: Optional[Result] = None

    def __init__(self, client: Client, id: str, token: str) -> None:
        self.client = client
        self.id = id
        self.token = token

    def __repr__(self) -> str:
        return f"Session({self.id!r})"

    @property
    def url(self) -> str:
        return self.client.url

    def _call(self, method: str, path: str, body: Any = None) -> Any:
        return w.from_api(self.client._http.request(method, f"/v1/sessions/{self.id}{path}", self.token, body))

    def _page(self, path: str, **q: Any) -> Result:
        headers: Dict[str, str] = {}
        items = w.from_api(self.client._http.request("GET", f"/v1/sessions/{self.id}{path}{_query(**q)}", self.token, headers_out=headers))
        m = re.search(r'<([^>]*)>;\s*rel="next"', headers.get("link", ""))
        nxt = None
        if m:
            params = parse_qs(urlsplit(m.group(1)).query)
            nxt = {"from": w.from_api(params.get("from", ["0x0"])[0]), "limit": int(params.get("limit", ["1000"])[0])}
        return {"items": items, "next": nxt}

    # ---- session ----
    def get(self) -> Result:
        return self._call("GET", "/")

    def delete(self) -> None:
        self._call("DELETE", "/")

    def mint_token(self, role: Role, label: Optional[str] = None) -> Result:
        return self._call("POST", "/tokens", w.body(role=role, label=label))

    def trace(self) -> str:
        """The session's commands as JSON lines (replay with ``client.create_session(trace=...)``)."""
        return self.client._http.request("GET", f"/v1/sessions/{self.id}/trace", self.token)

    # ---- hardware ----
    def smmus(self) -> List[Result]:
        return self._call("GET", "/smmus")

    def context(self, smmu: str, ctx: Union[str, int]) -> Result:
        return self._call("GET", f"/smmus/{w.seg(smmu)}/contexts/{w.seg(ctx)}")

    def configure_context(self, smmu: str, ctx: Union[str, int], *, fault_mode: Optional[Literal["terminate", "stall"]] = None, fault_interrupt: Optional[bool] = None, **fields: Any) -> Result:
        return self._call("PATCH", f"/smmus/{w.seg(smmu)}/contexts/{w.seg(ctx)}", w.body(fault_mode=fault_mode, fault_interrupt=fault_interrupt, **fields))

    def clear_fault(self, smmu: str, ctx: Union[str, int], value: Optional[Addr] = None) -> Result:
        return self._call("POST", f"/smmus/{w.seg(smmu)}/contexts/{w.seg(ctx)}/clear-fault", w.body(value=value))

    def resume(self, smmu: str, ctx: Union[str, int], stall: str, action: Literal["retry", "terminate"]) -> Result:
        return w.decode_data(self._call("POST", f"/smmus/{w.seg(smmu)}/contexts/{w.seg(ctx)}/resume", {"stall": stall, "action": action}))

    def inject_fault(self, smmu: str, ctx: Union[str, int], kind: Literal["external", "multi-hit", "tlb-miss"]) -> Result:
        return self._call("POST", f"/smmus/{w.seg(smmu)}/contexts/{w.seg(ctx)}/inject-fault", {"kind": kind})

    def mmio_read(self, smmu: str, offset: Addr) -> Result:
        return self._call("GET", f"/smmus/{w.seg(smmu)}/mmio/{w.addr(offset)}")

    def mmio_write(self, smmu: str, offset: Addr, value: Addr) -> Result:
        return self._call("PUT", f"/smmus/{w.seg(smmu)}/mmio/{w.addr(offset)}", {"value": value})

    def mmio_batch(self, smmu: str, ops: Sequence[Dict[str, Any]]) -> Result:
        return self._call("POST", f"/smmus/{w.seg(smmu)}/mmio", {"ops": w.to_api(list(ops))})

    def master_access(self, smmu: str, mid: int, *, iova: Addr, access: Access, priv: Optional[bool] = None, size: Optional[int] = None, data: Optional[bytes] = None, **fields: Any) -> Result:
        b = w.body(iova=iova, access=access, priv=priv, size=size, data=data, **fields)
        return w.decode_data(self._call("POST", f"/smmus/{w.seg(smmu)}/masters/{int(mid)}/access", b))

    # ---- domains (IOMMU API) ----
    def alloc_domain(
        self,
        *,
        pgsizes: Optional[Sequence[int]] = None,
        flush_policy: Optional[Literal["strict", "deferred"]] = None,
        partial_unmap: Optional[Literal["split", "refuse"]] = None,
        label: Optional[str] = None,
        **fields: Any,
    ) -> Result:
        """``iommu_domain_alloc``; further fields (``for_="vfe_imgwr"``) pass through."""
        return self._call("POST", "/domains", w.body(pgsizes=pgsizes, flush_policy=flush_policy, partial_unmap=partial_unmap, label=label, **fields))

    def domains(self) -> List[Result]:
        return self._call("GET", "/domains")

    def domain(self, did: str) -> Result:
        return self._call("GET", f"/domains/{w.seg(did)}")

    def free_domain(self, did: str) -> None:
        self._call("DELETE", f"/domains/{w.seg(did)}")

    def attach(self, did: str, device: str, replace: Optional[bool] = None) -> Result:
        return self._call("POST", f"/domains/{w.seg(did)}/attach", w.body(device=device, replace=replace))

    def detach(self, did: str, device: str) -> Result:
        return self._call("POST", f"/domains/{w.seg(did)}/detach", {"device": device})

    def map(self, did: str, *, iova: Addr, paddr: Addr, size: Addr, prot: Sequence[str], **fields: Any) -> Result:
        return self._call("POST", f"/domains/{w.seg(did)}/map", w.body(iova=iova, paddr=paddr, size=size, prot=list(prot), **fields))

    def unmap(self, did: str, *, iova: Addr, size: Addr, **fields: Any) -> Result:
        return self._call("POST", f"/domains/{w.seg(did)}/unmap", w.body(iova=iova, size=size, **fields))

    def batch(self, did: str, ops: Sequence[Dict[str, Any]]) -> Result:
        """Map and unmap ops in order, all or nothing: ``[{"op": "map", "iova": ..., ...}, {"op": "unmap", ...}]``."""
        return self._call("POST", f"/domains/{w.seg(did)}/batch", {"ops": w.to_api(list(ops))})

    def mappings(self, did: str, *, from_: Optional[Addr] = None, to: Optional[Addr] = None, limit: Optional[int] = None) -> List[Result]:
        """One page of extents (default 1000); ``mappings_page`` gives the cursor, ``all_mappings`` follows it."""
        return self._call("GET", f"/domains/{w.seg(did)}/mappings" + _query(from_=from_, to=to, limit=limit))

    def mappings_page(self, did: str, *, from_: Optional[Addr] = None, to: Optional[Addr] = None, limit: Optional[int] = None) -> Result:
        """``{"items": [...], "next": {"from", "limit"} | None}``: ``next`` from the Link rel="next" header."""
        return self._page(f"/domains/{w.seg(did)}/mappings", from_=from_, to=to, limit=limit)

    def all_mappings(self, did: str, *, from_: Optional[Addr] = None, to: Optional[Addr] = None, limit: Optional[int] = None) -> Iterator[Result]:
        """Every extent in the range, page after page."""
        page = self.mappings_page(did, from_=from_, to=to, limit=limit)
        while True:
            yield from page["items"]
            if not page["next"]:
                return
            page = self.mappings_page(did, from_=page["next"]["from"], to=to, limit=page["next"]["limit"])

    def iova_to_phys(self, did: str, iova: Addr) -> Result:
        return self._call("GET", f"/domains/{w.seg(did)}/iova-to-phys/{w.addr(iova)}")

    def pagetable(self, did: str) -> Result:
        """The raw two-level table of an msm or omap domain."""
        return self._call("GET", f"/domains/{w.seg(did)}/pagetable")

    def gart_entries(self, did: str) -> Result:
        """The entries of a gart domain (the same route, the GART's shape)."""
        return self._call("GET", f"/domains/{w.seg(did)}/pagetable")

    def flush(self, did: str, *, iova: Optional[Addr] = None, size: Optional[Addr] = None) -> Result:
        return self._call("POST", f"/domains/{w.seg(did)}/flush", w.body(iova=iova, size=size))

    def sync(self, did: str) -> Result:
        """``iotlb_sync``: applies the invalidations gathered under the deferred policy."""
        return self._call("POST", f"/domains/{w.seg(did)}/sync")

    # ---- devices ----
    def access(self, device: str, *, iova: Addr, access: Access, priv: Optional[bool] = None, mid: Optional[int] = None, size: Optional[int] = None, data: Optional[bytes] = None, **fields: Any) -> Result:
        """One transaction (or, with ``size``/``data``, a transfer) through the device's context; ``data`` is
        bytes both ways."""
        b = w.body(iova=iova, access=access, priv=priv, mid=mid, size=size, data=data, **fields)
        return w.decode_data(self._call("POST", f"/devices/{w.seg(device)}/access", b))

    def access_batch(self, device: str, *, access: Access, iovas: Sequence[Addr], priv: Optional[bool] = None, mid: Optional[int] = None, **fields: Any) -> Result:
        b = w.body(access=access, iovas=list(iovas), priv=priv, mid=mid, **fields)
        return w.decode_data(self._call("POST", f"/devices/{w.seg(device)}/access-batch", b))

    # ---- memory and buffers ----
    def pools(self) -> List[Result]:
        return self._call("GET", "/pools")

    def buffers(self, *, from_: Optional[Addr] = None, limit: Optional[int] = None) -> List[Result]:
        return self._call("GET", "/buffers" + _query(from_=from_, limit=limit))

    def buffers_page(self, *, from_: Optional[Addr] = None, limit: Optional[int] = None) -> Result:
        """``{"items": [...], "next": {"from", "limit"} | None}``."""
        return self._page("/buffers", from_=from_, limit=limit)

    def alloc_buffer(self, *, size: Addr, pools: Optional[Sequence[str]] = None, align: Optional[Addr] = None, **fields: Any) -> Result:
        return self._call("POST", "/buffers", w.body(size=size, pools=list(pools) if pools is not None else None, align=align, **fields))

    def free_buffer(self, paddr: Addr) -> None:
        self._call("DELETE", f"/buffers/{w.addr(paddr)}")

    def read_memory(self, paddr: Addr, size: int, view: Optional[Literal["cpu", "ram"]] = None) -> bytes:
        """CPU-side read of physical memory (through the CPU cache when the session models one); ``view="ram"``
        reads RAM as devices see it."""
        q = f"?paddr={w.addr(paddr)}&size={int(size)}" + (f"&view={view}" if view else "")
        return self.client._http.request("GET", f"/v1/sessions/{self.id}/memory{q}", self.token)

    def write_memory(self, paddr: Addr, data: bytes) -> None:
        """CPU-side write of physical memory."""
        self.client._http.request("PUT", f"/v1/sessions/{self.id}/memory?paddr={w.addr(paddr)}", self.token, raw=bytes(data))

    # ---- CPU cache (sessions created with cpu_cache=...) ----
    def cache(self, paddr: Optional[Addr] = None, size: Optional[int] = None) -> Result:
        """``{lineSize, lines, used, entries: [{paddr, dirty}]}`` for the cached lines in a range (all without)."""
        return self._call("GET", "/cache" + (_query(paddr=paddr, size=size) if paddr is not None else ""))

    def cache_clean(self, paddr: Addr, size: Addr) -> Result:
        """Writes the dirty lines of a range back to RAM."""
        return self._call("POST", "/cache/clean", {"paddr": paddr, "size": size})

    def cache_invalidate(self, paddr: Addr, size: Addr) -> Result:
        """Drops the lines of a range (dirty data is lost)."""
        return self._call("POST", "/cache/invalidate", {"paddr": paddr, "size": size})

    def cache_flush(self, paddr: Addr, size: Addr) -> Result:
        """Clean, then invalidate."""
        return self._call("POST", "/cache/flush", {"paddr": paddr, "size": size})

    # ---- DMA API ----
    def dma_state(self, device: str) -> Result:
        return self._call("GET", f"/devices/{w.seg(device)}/dma")

    def dma_configure(self, device: str, *, flush_policy: Optional[Literal["strict", "deferred"]] = None, dma_limit: Optional[Addr] = None, **fields: Any) -> Result:
        return self._call("PATCH", f"/devices/{w.seg(device)}/dma", w.body(flush_policy=flush_policy, dma_limit=dma_limit, **fields))

    def dma_map(self, device: str, *, paddr: Addr, size: Addr, dir: Direction, **fields: Any) -> Result:
        return self._call("POST", f"/devices/{w.seg(device)}/dma/map", w.body(paddr=paddr, size=size, dir=dir, **fields))

    def dma_map_sg(self, device: str, *, segments: Sequence[Dict[str, Any]], dir: Direction, **fields: Any) -> Result:
        return self._call("POST", f"/devices/{w.seg(device)}/dma/map-sg", w.body(segments=list(segments), dir=dir, **fields))

    def dma_unmap(self, device: str, *, dma_addr: Addr, size: Addr, dir: Direction, **fields: Any) -> None:
        self._call("POST", f"/devices/{w.seg(device)}/dma/unmap", w.body(dma_addr=dma_addr, size=size, dir=dir, **fields))

    def dma_sync(self, device: str, *, dma_addr: Addr, size: Addr, for_: Literal["cpu", "device"], offset: Optional[Addr] = None, dir: Optional[Direction] = None, **fields: Any) -> None:
        self._call("POST", f"/devices/{w.seg(device)}/dma/sync", w.body(dma_addr=dma_addr, size=size, for_=for_, offset=offset, dir=dir, **fields))

    # ---- streams (asyncio) ----
    def subscribe(
        self,
        *,
        types: Optional[Sequence[str]] = None,
        device: Optional[str] = None,
        since: Optional[int] = None,
        reconnect: "tuple[float, float]" = (0.05, 2.0),
        connect_attempts: int = 5,
        batch: bool = True,
    ) -> EventSubscription:
        """The event stream, as an async iterator of events (dicts, hex as int) and ``{"type": "gap", "from",
        "to"}`` notices; it reconnects and resumes with ``since`` until closed (a refusal is final; an absent
        daemon fails ``ready()`` after ``connect_attempts``). Use ``async with``. With ``batch`` (the default) the
        socket carries batched messages when the daemon offers them (capability ``event-batches``,
        docs/events.md); the events handed out are the same either way."""
        return EventSubscription(self, types=types, device=device, since=since, reconnect=reconnect, connect_attempts=connect_attempts, batch=batch)

    def stream(self, device: str, *, max_in_flight: int = 64) -> "_OpenStream":
        """Opens the binary translate stream of a device (docs/stream.md): ``st = await s.stream(device)``, or
        ``async with s.stream(device) as st`` (closed on exit)."""
        return _OpenStream(self._ws_url(f"/devices/{w.seg(device)}/stream"), max_in_flight)

    def _ws_url(self, path: str, query: str = "") -> str:
        base = "ws" + self.client.url[len("http") :]
        q = f"token={w.seg(self.token)}" + (f"&{query}" if query else "")
        return f"{base}/v1/sessions/{self.id}{path}?{q}"


def _query(**q: Any) -> str:
    """Query parameters: addresses as hex, counts as decimal, ``from_`` as ``from``; None left out."""
    parts = [f"{k.rstrip('_')}={int(v) if k == 'limit' else w.addr(v)}" for k, v in q.items() if v is not None]
    return "?" + "&".join(parts) if parts else ""


class _OpenStream:
    """Awaitable (gives the stream) and an async context manager (closes it), as ``websockets.connect`` is."""

    def __init__(self, url: str, max_in_flight: int) -> None:
        self._url = url
        self._max = max_in_flight
        self._stream: Optional[TranslateStream] = None

    def __await__(self) -> Generator[Any, None, TranslateStream]:
        return TranslateStream.open(self._url, max_in_flight=self._max).__await__()

    async def __aenter__(self) -> TranslateStream:
        self._stream = await TranslateStream.open(self._url, max_in_flight=self._max)
        return self._stream

    async def __aexit__(self, *exc: Any) -> None:
        if self._stream is not None:
            await self._stream.close()
