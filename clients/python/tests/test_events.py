"""The event subscription: filters, since, gaps, resume over the socket, and resuming with since after a dropped
connection and after a daemon restart with --data-dir."""

import asyncio
import shutil

import pytest

from iommud import Client, NotFound, Session, Unauthorized, Unavailable

pytestmark = pytest.mark.iommud(profile="tiny")


async def test_events_are_dicts_with_int_addresses(iommud_session: Session, mapped):
    s = iommud_session
    async with s.subscribe(types=["fault", "unmap"]) as sub:
        s.access("dev0", iova=0x30000000, access="write")
        s.unmap(mapped["id"], iova=0x10000000, size=0x100000)
        fault = await sub.next(10)
        unmap = await sub.next(10)
    assert {k: fault[k] for k in ("type", "device", "iova", "access", "kind", "fsr", "far")} == {
        "type": "fault",
        "device": "dev0",
        "iova": 0x30000000,
        "access": "write",
        "kind": "translation",
        "fsr": 0x2,
        "far": 0x30000000,
    }
    assert fault["by"] == {"role": "owner", "label": "owner"}
    assert (unmap["type"], unmap["iova"], unmap["seq"]) == ("unmap", 0x10000000, fault["seq"] + 1)
    assert sub.last_seq == unmap["seq"]


async def test_device_filter_and_since_replay(iommud_session: Session, mapped):
    s = iommud_session
    s.access("dev0", iova=0x30000000, access="read")
    s.access("dev1", iova=0x30000000, access="read")  # dev1 is in bypass: no fault
    last = s.get()["lastSeq"]
    async with s.subscribe(since=0) as everything:
        replay = await everything.collect(last)
    assert [e["seq"] for e in replay] == list(range(1, last + 1))
    assert replay[0] == {**replay[0], "type": "session", "action": "create"}
    async with s.subscribe(since=0, device="dev0", types=["fault"]) as dev0:
        f = await dev0.next(10)
    assert (f["type"], f["device"], f["iova"]) == ("fault", "dev0", 0x30000000)


async def test_resume_after_a_dropped_connection_loses_and_repeats_nothing(iommud_session: Session, mapped):
    s = iommud_session
    async with s.subscribe(types=["fault"]) as sub:
        s.access("dev0", iova=0x30000000, access="read")
        first = await sub.next(10)
        await sub.drop_connection()
        # These happen while the subscriber is away (or reconnecting): since brings them back.
        for i in range(1, 6):
            s.access("dev0", iova=0x30000000 + i * 0x1000, access="read")
        rest = [await sub.next(10) for _ in range(5)]
        assert sub.reconnects >= 1
    assert [e["iova"] for e in [first, *rest]] == [0x30000000 + i * 0x1000 for i in range(6)]
    assert sub.gaps == []


async def test_gap_is_surfaced_in_order(iommud_session: Session, mapped):
    """More events than the daemon retains (10,000): a late subscriber gets one gap naming what it cannot have,
    then the rest."""
    s = iommud_session
    async with await s.stream("dev0") as st:
        items = await st.translate("read", [0x40000000 + i * 0x1000 for i in range(10050)])
    assert items[-1]["status"] == "translation"
    last = s.get()["lastSeq"]
    async with s.subscribe(since=0) as sub:
        got = await sub.collect(last, timeout=30)
    first_kept = last - 10000 + 1
    assert got[0] == {"type": "gap", "from": 1, "to": first_kept - 1}
    # The replay is one burst: past the socket's high-water mark the daemon may announce more gaps. Every seq
    # is accounted for exactly once, in order, as an event or inside a gap.
    covered = []
    for e in got:
        covered += list(range(e["from"], e["to"] + 1)) if e["type"] == "gap" else [e["seq"]]
    assert covered == list(range(1, last + 1))
    assert sub.gaps[0] == (1, first_kept - 1)
    assert sub.gaps == [(e["from"], e["to"]) for e in got if e["type"] == "gap"]


async def test_resume_a_stall_on_the_socket(iommud_session: Session, mapped):
    s = iommud_session
    s.configure_context("smmu0", "dev0", fault_mode="stall")
    async with s.subscribe(types=["stall", "resume"]) as sub:
        r = s.access("dev0", iova=0x30000000, access="read")
        stall = await sub.next(10)
        assert (stall["type"], stall["stall"]) == ("stall", r["stall"])
        await sub.resume(stall["stall"], "terminate")
        resumed = await sub.next(10)
        assert (resumed["type"], resumed["stall"], resumed["action"]) == ("resume", stall["stall"], "terminate")
        await sub.resume("stall-99", "retry")
        with pytest.raises(NotFound) as info:
            await sub.next(10)
        assert info.value.details == {"stall": "stall-99"}


def test_daemon_with_a_data_dir_restart_and_loss(iommud_daemon_factory, tmp_path):
    """A subscription resumes with since across a daemon restart; a data dir that vanishes makes session
    creation 503 UNAVAILABLE (the journal cannot be created)."""
    data = tmp_path / "data"
    daemon = iommud_daemon_factory(data_dir=data)
    daemon.start()
    s = Client(daemon.url).create_session(profile="tiny")
    d = s.alloc_domain()

    async def main():
        async with s.subscribe(types=["map"], reconnect=(0.05, 0.5)) as sub:
            s.map(d["id"], iova=0x10000000, paddr=0x80000000, size=0x1000, prot=["read"])
            before = await sub.next(10)
            await asyncio.get_running_loop().run_in_executor(None, daemon.restart)
            # The session came back from its journal; the subscriber reconnects and resumes with since.
            s.map(d["id"], iova=0x10001000, paddr=0x80001000, size=0x1000, prot=["read"])
            after = await sub.next(30)
            return before, after, sub

    before, after, sub = asyncio.run(main())
    assert (before["iova"], after["iova"]) == (0x10000000, 0x10001000)
    assert after["seq"] == before["seq"] + 1  # seq continues across the restart: nothing lost, nothing repeated
    assert sub.reconnects >= 1 and sub.gaps == []
    assert [m["iova"] for m in s.mappings(d["id"])] == [0x10000000]  # one extent: both pages, contiguous
    shutil.rmtree(data)
    data.write_text("not a directory")
    with pytest.raises(Unavailable) as info:
        Client(daemon.url).create_session(profile="tiny")
    assert (info.value.code, info.value.status) == ("UNAVAILABLE", 503)


async def test_a_refusal_on_reconnect_ends_the_subscription(iommud_client: Client):
    s = iommud_client.create_session(profile="tiny")
    async with s.subscribe() as sub:
        s.delete()
        await sub.drop_connection()  # the reconnect is refused: the session is gone
        with pytest.raises(Unauthorized) as info:
            await asyncio.wait_for(sub.done(), 10)
        assert info.value.code == "UNAUTHORIZED"
        with pytest.raises(Unauthorized):
            async for _ in sub:
                pass


async def test_batched_messages_when_offered_give_the_same_events(iommud_session: Session, mapped):
    s = iommud_session
    assert "event-batches" in s.client.version()["capabilities"]
    iovas = [0x30000000 + i * 0x1000 for i in range(40)]
    async with s.subscribe(types=["fault"]) as batched, s.subscribe(types=["fault"], batch=False) as plain:
        assert (batched.batched, plain.batched) == (True, False)
        s.access_batch("dev0", access="read", iovas=iovas)
        got = [[await sub.next(10) for _ in iovas] for sub in (batched, plain)]
    assert got[0] == got[1]
    assert [ev["iova"] for ev in got[0]] == iovas
    assert [ev["seq"] for ev in got[0]] == list(range(got[0][0]["seq"], got[0][0]["seq"] + 40))
