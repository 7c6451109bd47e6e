"""Error mapping: every refusal is an IommudError subclass chosen by HTTP status, with the API's code, status and
details (hex in details as int, like everywhere else)."""

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from iommud import (
    BadRequest,
    Client,
    Conflict,
    Forbidden,
    IommudConnectionError,
    IommudError,
    NoSpace,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Session,
    Unauthorized,
    Unavailable,
    UnsupportedMediaType,
)
from iommud.daemon import free_port

pytestmark = pytest.mark.iommud(profile="tiny")


def refused(exc_type, fn):
    with pytest.raises(exc_type) as info:
        fn()
    e = info.value
    assert isinstance(e, IommudError)
    return e.code, e.status, e.details


def test_400_bad_request(iommud_session: Session, mapped):
    s, did = iommud_session, mapped["id"]
    assert refused(BadRequest, lambda: s.map(did, iova=0x10000800, paddr=0x80000000, size=0x1000, prot=["read"])) == (
        "UNALIGNED",
        400,
        {"iova": 0x10000800, "paddr": 0x80000000, "size": 0x1000, "minPageSize": 0x1000},
    )
    assert refused(BadRequest, lambda: s.map(did, iova=0xFFFFF000, paddr=0x80000000, size=0x2000, prot=["read"])) == (
        "OUT_OF_RANGE",
        400,
        {"iova": 0xFFFFF000, "paddr": 0x80000000, "size": 0x2000},
    )
    # Unknown keyword arguments reach the daemon, which names them.
    code, status, details = refused(BadRequest, lambda: s.map(did, iova=0x20000000, paddr=0x80000000, size=0x1000, prot=["read"], bogus=1))
    assert (code, status) == ("BAD_REQUEST", 400)
    assert details["body"] == [{"path": "/", "message": 'Unrecognized key: "bogus"'}]


def test_401_403(iommud_client: Client, iommud_session: Session):
    s = iommud_session
    assert refused(Unauthorized, lambda: iommud_client.session(s.id, "not-a-token").get()) == ("UNAUTHORIZED", 401, {})
    # An unknown session is indistinguishable from a bad token (ids cannot be probed).
    assert refused(Unauthorized, lambda: iommud_client.session("s-0", s.token).get()) == ("UNAUTHORIZED", 401, {})
    observer = iommud_client.session(s.id, s.mint_token("observer")["token"])
    assert refused(Forbidden, lambda: observer.alloc_domain()) == ("FORBIDDEN", 403, {"role": "observer", "needed": "operator"})
    assert refused(Forbidden, lambda: observer.mint_token("owner"))[0] == "FORBIDDEN"


def test_404_409(iommud_session: Session, mapped):
    s, did = iommud_session, mapped["id"]
    assert refused(NotFound, lambda: s.iova_to_phys(did, 0x50000000)) == ("NOT_MAPPED", 404, {"iova": 0x50000000})
    assert refused(NotFound, lambda: s.domain("dom-99")) == ("NOT_FOUND", 404, {"domain": "dom-99"})
    assert refused(Conflict, lambda: s.map(did, iova=0x10000000, paddr=0x80000000, size=0x1000, prot=["read"])) == ("ALREADY_MAPPED", 409, {"iova": 0x10000000})
    assert refused(Conflict, lambda: s.free_domain(did)) == ("DOMAIN_ATTACHED", 409, {"attached": ["dev0"]})
    b = s.alloc_buffer(size=0x1000)
    m = s.dma_map("dev1", paddr=b["paddr"], size=0x1000, dir="to-device")
    assert refused(Conflict, lambda: s.dma_unmap("dev1", dma_addr=m["dmaAddr"], size=0x2000, dir="to-device")) == (
        "DMA_DEBUG",
        409,
        {"check": "size-mismatch", "dmaAddr": 0xFFFFF000, "mapped": 0x1000, "size": 0x2000},
    )


def test_413_415_507(iommud_session: Session):
    s = iommud_session
    assert refused(PayloadTooLarge, lambda: s.read_memory(0x80000000, 5 << 20)) == ("PAYLOAD_TOO_LARGE", 413, {"size": 5 << 20})
    assert refused(NoSpace, lambda: s.alloc_buffer(size=64 << 20)) == ("NO_SPACE", 507, {"size": 64 << 20, "align": 16 << 20})
    raw = lambda: s.client._http.request("POST", f"/v1/sessions/{s.id}/domains", s.token, raw=b"x")  # noqa: E731
    assert refused(UnsupportedMediaType, raw)[:2] == ("UNSUPPORTED_MEDIA_TYPE", 415)


def test_429_session_quota(iommud_daemon_factory):
    """A daemon of its own with --max-sessions 2: the third session is 429 LIMIT, naming the limit."""
    d = iommud_daemon_factory(args=["--max-sessions", "2"])
    d.start()
    c = Client(d.url)
    c.create_session(profile="tiny")
    c.create_session(profile="tiny")
    with pytest.raises(RateLimited) as info:
        c.create_session(profile="tiny")
    assert (info.value.code, info.value.status, info.value.details) == ("LIMIT", 429, {"limit": 2})


def test_429_subscriber_quota_on_the_upgrade(iommud_session: Session):
    async def main():
        subs = [await iommud_session.subscribe(since=0).ready() for _ in range(64)]
        try:
            with pytest.raises(RateLimited) as info:
                await iommud_session.subscribe(since=0).ready()
            assert (info.value.code, info.value.status) == ("LIMIT", 429)
        finally:
            for sub in subs:
                await sub.close()

    asyncio.run(main())


def test_503_and_retry_after_as_a_proxy_sends_them():
    """What a cluster's proxy answers for a node that is down (API.md): the client keeps code, details and
    Retry-After. (A real 503 from a daemon: test_events' data-dir test.)"""
    body = json.dumps({"error": {"code": "UNAVAILABLE", "message": "node n2 is down", "details": {"node": "n2"}}}).encode()

    class Down(BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(503)
            self.send_header("content-type", "application/json")
            self.send_header("retry-after", "2")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Down)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    try:
        with pytest.raises(Unavailable) as info:
            Client(f"http://127.0.0.1:{server.server_port}").session("n2-1f", "t").get()
    finally:
        server.shutdown()
    e = info.value
    assert (e.code, e.status, e.details, e.retry_after) == ("UNAVAILABLE", 503, {"node": "n2"}, 2.0)


def test_connection_errors():
    dead = Client(f"http://127.0.0.1:{free_port()}")
    with pytest.raises(IommudConnectionError):
        dead.health()

    async def open_stream():
        return await dead.session("s-1", "t").stream("dev0")

    with pytest.raises(IommudConnectionError):
        asyncio.run(open_stream())


def test_websocket_refusals(iommud_client: Client, iommud_session: Session):
    s = iommud_session
    observer = iommud_client.session(s.id, s.mint_token("observer")["token"])

    async def main():
        with pytest.raises(Forbidden) as forbidden:
            await observer.stream("dev0")  # the stream needs the operator role
        assert (forbidden.value.code, forbidden.value.status) == ("FORBIDDEN", 403)
        with pytest.raises(Unauthorized):
            await iommud_client.session(s.id, "nope").stream("dev0")
        with pytest.raises(BadRequest):
            await s.subscribe(types=["no-such-type"]).ready()
        with pytest.raises(Unauthorized):
            await iommud_client.session(s.id, "nope").subscribe().ready()

    asyncio.run(main())


def test_errors_are_exceptions_with_readable_text():
    e = Conflict("ALREADY_MAPPED", "iova 0x10000000 is already mapped", 409, {"iova": 0x10000000})
    assert str(e) == "ALREADY_MAPPED: iova 0x10000000 is already mapped"
    assert e.details == {"iova": 0x10000000}
    assert issubclass(IommudConnectionError, ConnectionError)
