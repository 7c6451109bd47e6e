"""The binary stream: frames byte for byte as docs/stream.md gives them, replies decoded, pipelining, refusals,
and a throughput figure (printed, not asserted)."""

import asyncio
import re
import struct
import time
from typing import List

import pytest
from iommud_test_support import REPO

from iommud import BadRequest, IommudConnectionError, Session, decode_reply, encode_request
from iommud import _ws
from iommud.stream import OP_TRANSLATE_READ

pytestmark = pytest.mark.iommud(profile="tiny")


def doc_example() -> bytes:
    """The request frame of docs/stream.md's example, read from the document itself."""
    doc = (REPO / "docs/stream.md").read_text()
    block = doc.split("## Example", 1)[1].split("```", 2)[1]
    return bytes.fromhex(re.sub(r"\s+", "", block))


def test_encoder_matches_the_documented_example():
    # Translate-read of 0x10000000 and 0xdeadb000, privileged, MID 5, request id 0x01020304.
    frame = encode_request(OP_TRANSLATE_READ, 0x01020304, [0x10000000, 0xDEADB000], priv=True, mid=5)
    assert frame == doc_example()
    assert frame.hex(" ") == "01 01 01 05 04 03 02 01 02 00 00 00 00 00 00 10 00 b0 ad de"


def test_documented_frame_on_the_wire_gets_the_documented_reply(iommud_session: Session, mapped):
    """The example frame, sent raw: the reply is version, opcode, reserved 0, the id, the count, then one 8-byte
    item per iova (status, TLB, flags, paddr), little-endian."""
    s = iommud_session

    async def main() -> bytes:
        ws = await _ws.connect(s._ws_url("/devices/dev0/stream"))
        try:
            await ws.send(doc_example())
            return await ws.recv()
        finally:
            await ws.close()

    reply = asyncio.run(main())
    assert reply.hex(" ") == " ".join(
        [
            "01 01 00 00",  # version 1, opcode 1 echoed, reserved
            "04 03 02 01",  # request id 0x01020304
            "02 00 00 00",  # count 2
            "00 01 00 00 00 00 00 80",  # ok, TLB miss, no flags, paddr 0x80000000
            "01 01 00 00 00 00 00 00",  # translation fault, TLB miss, paddr 0
        ]
    )
    rid, op, items, rest = decode_reply(reply)
    assert (rid, op, rest) == (0x01020304, 1, b"")
    assert items == [
        {"status": "ok", "tlb": "miss", "stale": False, "unbacked": False, "paddr": 0x80000000},
        {"status": "translation", "tlb": "miss", "stale": False, "unbacked": False, "paddr": 0},
    ]
    ctx = s.context("smmu0", "dev0")["registers"]
    assert ctx["FAR"] == 0xDEADB000


def record_frames(st) -> List[bytes]:
    """Keeps the frames the client sends on the stream's socket."""
    sent: List[bytes] = []
    send = st._ws.send

    async def recording(frame):
        sent.append(bytes(frame))
        await send(frame)

    st._ws.send = recording
    return sent


def test_client_frames_for_every_opcode(iommud_session: Session, mapped):
    s = iommud_session

    async def main():
        st = await s.stream("dev0")
        sent = record_frames(st)
        async with st:
            t = await st.translate("write", [0x10000000], priv=True, mid=7)
            w = await st.write([(0x10000010, b"abc"), {"iova": 0x30000000, "data": b"\x01"}])
            r = await st.read([(0x10000010, 3), {"iova": 0x30000000, "length": 2}])
            x = await st.translate("exec", [0x10000000])
            mr = await st.mmio_read([0x0, 0x10, 0x3])
            mw = await st.mmio_write([(0x20, 0xFFFFFFFF), {"offset": 0x3, "value": 1}])
        return sent, t, w, r, x, mr, mw

    sent, t, w, r, x, mr, mw = asyncio.run(main())
    assert [f.hex(" ") for f in sent] == [
        # translate-write, privileged, MID 7, id 1, one iova
        "01 02 01 07 01 00 00 00 01 00 00 00 00 00 00 10",
        # write, id 2: iovas, lengths, then the bytes concatenated
        "01 05 00 ff 02 00 00 00 02 00 00 00 10 00 00 10 00 00 00 30 03 00 00 00 01 00 00 00 61 62 63 01",
        # read, id 3: iovas, lengths
        "01 04 00 ff 03 00 00 00 02 00 00 00 10 00 00 10 00 00 00 30 03 00 00 00 02 00 00 00",
        # translate-exec, id 4
        "01 03 00 ff 04 00 00 00 01 00 00 00 00 00 00 10",
        # mmio-read, id 5: offsets
        "01 06 00 ff 05 00 00 00 03 00 00 00 00 00 00 00 10 00 00 00 03 00 00 00",
        # mmio-write, id 6: offsets, then values
        "01 07 00 ff 06 00 00 00 02 00 00 00 20 00 00 00 03 00 00 00 ff ff ff ff 01 00 00 00",
    ]
    assert t == [{"status": "ok", "tlb": "miss", "stale": False, "unbacked": False, "paddr": 0x80000000}]
    assert [(i["status"], i["paddr"]) for i in w] == [("ok", 0x80000010), ("translation", 0)]
    assert r[0] == {"status": "ok", "tlb": "hit", "stale": False, "unbacked": False, "paddr": 0x80000010, "data": b"abc"}
    assert r[1]["status"] == "translation" and "data" not in r[1]
    assert x[0]["status"] == "ok"  # no noexec on the mapping
    # MMIO items carry register values in paddr; an unaligned offset refuses that item only.
    assert [(i["status"], i["paddr"]) for i in mr] == [("ok", 0x7), ("ok", 0x83E00002), ("bad-offset", 0)]
    assert [i["status"] for i in mw] == ["ok", "bad-offset"]
    assert s.read_memory(0x80000010, 3) == b"abc"


def test_pipelined_replies_in_order_with_backpressure(iommud_session: Session, mapped):
    s = iommud_session
    seen_in_flight: List[int] = []

    async def main():
        async with s.stream("dev0", max_in_flight=4) as st:

            async def one(i):
                seen_in_flight.append(st.in_flight)
                return await st.translate("read", [0x10000000 + i * 0x1000, 0x40000000 + i * 0x1000])

            return await asyncio.gather(*(one(i) for i in range(64)))

    results = asyncio.run(main())
    assert [[it["paddr"] for it in r] for r in results] == [[0x80000000 + i * 0x1000, 0] for i in range(64)]
    assert max(seen_in_flight) <= 4


def test_refused_frame_fails_only_its_call(iommud_session: Session, mapped):
    s = iommud_session

    async def main():
        async with await s.stream("dev0") as st:
            bad = struct.pack("<BBBBII", 1, 1, 0, 0xFF, 0, 0)  # count 0
            with pytest.raises(BadRequest) as info:
                await st.request(bad)
            assert info.value.code == "BAD_REQUEST"
            with pytest.raises(BadRequest):
                await st.request(b"\x02" + bad[1:] + b"\0\0\0\0")  # protocol version 2
            return await st.translate("read", [0x10000000])

    assert asyncio.run(main())[0]["paddr"] == 0x80000000


def test_closed_stream_refuses_calls(iommud_session: Session, mapped):
    s = iommud_session

    async def main():
        st = await s.stream("dev0")
        pending = [asyncio.ensure_future(st.translate("read", [0x10000000])) for _ in range(8)]
        while st.in_flight < 8:
            await asyncio.sleep(0)
        await st.close()  # waits for the replies already asked for
        assert [p.result()[0]["status"] for p in pending] == ["ok"] * 8
        with pytest.raises(IommudConnectionError):
            await st.translate("read", [0x10000000])

    asyncio.run(main())


BATCH = 4096
BATCHES = 100
IN_FLIGHT = 8


async def measure_throughput(s: Session, device: str, iova: int, batch: int = BATCH, batches: int = BATCHES, in_flight: int = IN_FLIGHT) -> float:
    """Translations per second over one connection: ``batches`` frames of ``batch`` iovas (all inside one 1M
    mapping), ``in_flight`` frames outstanding at a time."""
    iovas = [iova + (i % 256) * 0x1000 for i in range(batch)]
    async with await s.stream(device, max_in_flight=in_flight) as st:
        await st.translate("read", iovas)  # warm the TLB and the connection
        t0 = time.perf_counter()
        results = await asyncio.gather(*(st.translate("read", iovas) for _ in range(batches)))
        elapsed = time.perf_counter() - t0
    assert all(r[-1]["status"] == "ok" for r in results)
    return batch * batches / elapsed


def test_stream_throughput_figure(iommud_session: Session, mapped, capsys, record_property):
    rate = asyncio.run(measure_throughput(iommud_session, "dev0", 0x10000000))
    record_property("python_stream_translations_per_s", round(rate))
    with capsys.disabled():
        print(f"\n[iommud] Python stream: {rate:,.0f} translations/s over one connection ({BATCHES} x {BATCH} iovas, {IN_FLIGHT} in flight)")
