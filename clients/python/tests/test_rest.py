"""Every REST method of Client and Session against the live daemon, with exact values (tiny profile)."""

import json
import re

import pytest
from iommud_test_support import REPO, TTBR0

from iommud import Client, EventSubscription, Session, TranslateStream

pytestmark = pytest.mark.iommud(profile="tiny")

PAGES0 = {"4K": 0, "64K": 0, "1M": 0, "16M": 0}


def test_client_routes(iommud_client: Client):
    assert iommud_client.health()["status"] == "ok"
    v = iommud_client.version()
    assert (v["name"], v["api"]) == ("iommud", "v1")
    assert "stream" in v["capabilities"]
    tiny = next(p for p in iommud_client.profiles() if p["name"] == "tiny")
    assert tiny["smmus"][0]["base"] == 0x01000000
    assert tiny["smmus"][0]["contexts"] == [{"index": 0, "name": "dev0", "mids": [0]}, {"index": 1, "name": "dev1", "mids": [1]}]
    assert tiny["memory"] == [{"name": "ram", "base": 0x80000000, "size": 64 << 20, "priority": 0}]
    assert tiny["pagetablePool"] == {"base": 0x83E00000, "size": 2 << 20}
    assert "iommud_sessions" in iommud_client.metrics()


def test_create_session_and_session_by_id(iommud_client: Client):
    s = iommud_client.create_session(profile="tiny", name="py", tlb_entries=4, tlb_policy="round-robin", stall_timeout_ms=1000)
    try:
        assert s.created is not None and s.created["id"] == s.id and s.created["name"] == "py" and s.created["profile"] == "tiny"
        info = s.get()
        assert (info["tlbEntries"], info["tlbPolicy"], info["revision"]) == (4, "round-robin", 0)
        # A second handle on the same session, by id and token.
        again = iommud_client.session(s.id, s.token)
        assert again.get()["id"] == s.id
        with pytest.raises(ValueError):
            iommud_client.session(s.id)
    finally:
        s.delete()


def test_inline_topology_keys_are_camel_cased(iommud_client: Client):
    topo = {
        "name": "mini",
        "smmus": [{"name": "m0", "base": 0x02000000, "banks": 1, "contexts": [{"index": 0, "name": "cam", "mids": [3]}]}],
        "memory": [{"name": "dram", "base": 0x40000000, "size": 0x01000000}],
        "pagetable_pool": {"base": 0x40F00000, "size": 0x100000},
    }
    s = iommud_client.create_session(profile=topo)
    try:
        assert s.get()["profile"] == "mini"
        assert s.smmus()[0]["base"] == 0x02000000
    finally:
        s.delete()


def test_session_get_delete_tokens_trace(iommud_client: Client):
    s = iommud_client.create_session(profile="tiny")
    t = s.mint_token("observer", "watcher")
    assert (t["role"], t["label"]) == ("observer", "watcher")
    assert s.mint_token("operator")["label"] is None
    obs = iommud_client.session(s.id, t["token"])
    assert obs.get()["revision"] == 0
    trace = s.trace()
    header = json.loads(trace.splitlines()[0])
    assert header["format"] == "iommud-trace"
    s.alloc_domain(label="replayed")
    replay = iommud_client.create_session(trace=s.trace())
    assert [d["label"] for d in replay.domains()] == ["replayed"]
    replay.delete()
    s.delete()
    from iommud import Unauthorized

    with pytest.raises(Unauthorized):
        s.get()


def test_hardware_view(iommud_session: Session, mapped):
    s = iommud_session
    smmus = s.smmus()
    assert [(x["name"], x["base"], x["banks"]) for x in smmus] == [("smmu0", 0x01000000, 2)]
    ctx = s.context("smmu0", 0)
    assert s.context("smmu0", "dev0") == ctx
    assert (ctx["device"], ctx["enabled"], ctx["domain"], ctx["faultMode"]) == ("dev0", True, mapped["id"], "terminate")
    # The context bank exactly as the driver programmed it: SCTLR M|TRE|AFE → 0x7, TTBR0 with its walk attributes.
    assert ctx["registers"]["SCTLR"] == 0x7
    assert ctx["registers"]["TTBR0"] == 0x83E00002
    assert ctx["registers"]["PRRR"] == 0x800B8204 and ctx["registers"]["NMRR"] == 0x40004000
    c = s.configure_context("smmu0", "dev0", fault_mode="stall", fault_interrupt=False)
    assert (c["faultMode"], c["faultInterrupt"]) == ("stall", False)


def test_faults_stall_resume_clear_inject(iommud_session: Session, mapped):
    s = iommud_session
    f = s.access("dev0", iova=0x30000000, access="read")
    assert f["outcome"] == "fault"
    assert {k: f["fault"][k] for k in ("kind", "fsr", "far", "fsynr0", "iova", "device")} == {"kind": "translation", "fsr": 0x2, "far": 0x30000000, "fsynr0": 0x0, "iova": 0x30000000, "device": "dev0"}
    c = s.clear_fault("smmu0", "dev0")
    assert c["registers"]["FSR"] == 0
    s.configure_context("smmu0", 0, fault_mode="stall")
    st = s.access("dev0", iova=0x30000000, access="read")
    assert (st["outcome"], st["stall"], st["fault"]["fsr"]) == ("stalled", "stall-1", 0x40000002)
    assert s.context("smmu0", 0)["stalls"] == [{"stall": "stall-1", "iova": 0x30000000, "access": "read"}]
    # Map the page, then retry: the retried transaction completes.
    s.map(mapped["id"], iova=0x30000000, paddr=0x80100000, size=0x1000, prot=["read"])
    r = s.resume("smmu0", 0, "stall-1", "retry")
    assert (r["outcome"], r["paddr"]) == ("ok", 0x80100000)
    s.clear_fault("smmu0", 0, 0x4000000F)
    assert s.context("smmu0", 0)["registers"]["FSR"] == 0
    s.inject_fault("smmu0", 0, "external")
    s.configure_context("smmu0", 0, fault_mode="terminate")
    e = s.access("dev0", iova=0x10000000, access="read")
    assert (e["outcome"], e["fault"]["kind"]) == ("fault", "external")


def test_mmio_and_master_access(iommud_session: Session, mapped):
    s = iommud_session
    assert s.mmio_read("smmu0", 0x0) == {"offset": 0x0, "register": "SCTLR", "value": 0x7}
    assert s.mmio_read("smmu0", "0x10") == {"offset": 0x10, "register": "TTBR0", "value": 0x83E00002}
    # V2PPR probe of context 0: PAR gets the physical page of the translation.
    assert s.mmio_write("smmu0", 0x810, 0x10000000)["register"] == "V2PPR"
    assert s.mmio_read("smmu0", 0x1C)["value"] & 0xFFFFF000 == 0x80000000
    r = s.mmio_batch("smmu0", [{"op": "read", "offset": 0x0}, {"op": "write", "offset": 0x20, "value": 0}, {"op": "read", "offset": 0x20}])
    assert [(x["register"], x["value"]) for x in r["results"]] == [("SCTLR", 0x7), ("FSR", 0), ("FSR", 0)]
    # MID 0 is routed to bank 0 (M2VCBR_N), so the master's transaction walks dev0's tables.
    m = s.master_access("smmu0", 0, iova=0x10000040, access="write")
    assert (m["outcome"], m["paddr"], m["tlb"]) == ("ok", 0x80000040, "miss")


def test_domains(iommud_session: Session):
    s = iommud_session
    d = s.alloc_domain(flush_policy="deferred", partial_unmap="split", label="cam", pgsizes=[4096, 65536, 1048576])
    assert {k: d[k] for k in ("type", "label", "ttbr0", "attached", "mappedBytes", "pages", "pendingSync", "pgsizes", "flushPolicy", "partialUnmap")} == {
        "type": "unmanaged",
        "label": "cam",
        "ttbr0": TTBR0,
        "attached": [],
        "mappedBytes": 0,
        "pages": PAGES0,
        "pendingSync": [],
        "pgsizes": [4096, 65536, 1048576],
        "flushPolicy": "deferred",
        "partialUnmap": "split",
    }
    did = d["id"]
    assert s.attach(did, "dev0")["attached"] == ["dev0"]
    assert s.map(did, iova=0x10000000, paddr=0x80000000, size=0x100000, prot=["read", "write"]) == {"iova": 0x10000000, "size": 0x100000, "pages": {**PAGES0, "1M": 1}}
    assert s.map(did, iova=0x20000000, paddr=0x80100000, size=0x11000, prot=["read"]) == {"iova": 0x20000000, "size": 0x11000, "pages": {**PAGES0, "64K": 1, "4K": 1}}
    assert s.mappings(did) == [
        {"iova": 0x10000000, "paddr": 0x80000000, "size": 0x100000, "pageSize": 0x100000, "prot": ["read", "write"]},
        {"iova": 0x20000000, "paddr": 0x80100000, "size": 0x11000, "pageSize": 0x10000, "prot": ["read"]},
    ]
    assert [m["iova"] for m in s.mappings(did, from_=0x20000000, limit=1)] == [0x20000000]
    assert s.mappings(did, to=0x1FFFFFFF) == s.mappings(did)[:1]
    # Pages: the Link header's cursor, followed by all_mappings.
    first = s.mappings_page(did, limit=1)
    assert (first["items"], first["next"]) == (s.mappings(did)[:1], {"from": 0x10100000, "limit": 1})
    assert s.mappings_page(did, from_=first["next"]["from"], limit=1)["next"] is None
    assert list(s.all_mappings(did, limit=1)) == s.mappings(did)
    assert s.iova_to_phys(did, 0x20010010) == {"iova": 0x20010010, "paddr": 0x80110010, "pageSize": 0x1000, "prot": ["read"]}
    pt = s.pagetable(did)
    assert pt["ttbr0"] == TTBR0
    # Bit-exact ARMv7 short descriptors: a section, and a pointer to the L2 table right after the 16 KiB L1.
    assert pt["l1"] == [{"index": 256, "desc": 0x80031C02}, {"index": 512, "desc": 0x83E04001}]
    assert pt["l2"][0]["base"] == 0x83E04000
    assert pt["l2"][0]["entries"][0] == {"index": 0, "desc": 0x80101E31}
    assert pt["l2"][0]["entries"][16] == {"index": 16, "desc": 0x80110E72}
    assert s.access("dev0", iova=0x20000000, access="read")["tlb"] == "miss"
    assert s.unmap(did, iova=0x20000000, size=0x1000) == {"unmapped": 0x1000}
    dom = s.domain(did)
    assert dom["pendingSync"] == [{"iova": 0x20000000, "size": 0x1000}]
    assert dom["pages"] == {**PAGES0, "1M": 1, "4K": 16}
    assert s.sync(did) == {"invalidated": 1, "ranges": [{"iova": 0x20000000, "size": 0x1000}]}
    assert s.flush(did, iova=0x10000000, size=0x1000) == {"contexts": 1, "invalidated": 0}
    assert s.flush(did) == {"contexts": 1, "invalidated": 0}
    b = s.batch(did, [{"op": "map", "iova": 0x40000000, "paddr": 0x80200000, "size": 0x1000, "prot": ["read"]}, {"op": "unmap", "iova": 0x40000000, "size": 0x1000}])
    assert b == {"results": [{"op": "map", "iova": 0x40000000, "size": 0x1000, "pages": {**PAGES0, "4K": 1}}, {"op": "unmap", "unmapped": 0x1000}]}
    # Switching dev0 to another domain on the fly takes replace=True (otherwise DEVICE_BUSY).
    other = s.alloc_domain()["id"]
    assert s.attach(other, "dev0", replace=True)["attached"] == ["dev0"]
    assert s.domain(did)["attached"] == []
    s.attach(did, "dev0", True)
    s.free_domain(other)
    assert [x["id"] for x in s.domains()] == [did]
    assert s.detach(did, "dev0")["attached"] == []
    assert s.free_domain(did) is None
    assert s.domains() == []


def test_devices_access(iommud_session: Session, mapped):
    s = iommud_session
    w = s.access("dev0", iova=0x10000000, access="write", data=b"hello")
    assert (w["outcome"], w["paddr"], w["tlb"]) == ("ok", 0x80000000, "miss")
    r = s.access("dev0", iova=0x10000000, access="read", size=5)
    assert (r["paddr"], r["tlb"], r["data"]) == (0x80000000, "hit", b"hello")
    b = s.access_batch("dev0", access="read", iovas=[0x10000000, 0x30000000], priv=True, mid=0)
    assert [x["outcome"] for x in b["results"]] == ["ok", "fault"]
    assert b["results"][1]["fault"]["far"] == 0x30000000


def test_memory_and_buffers(iommud_session: Session):
    s = iommud_session
    assert s.pools() == [{"name": "ram", "base": 0x80000000, "size": 62 << 20, "used": 0, "free": 62 << 20, "largestFree": 62 << 20, "priority": 0}]
    b = s.alloc_buffer(size=0x3000, pools=["ram"])
    assert b == {"paddr": 0x80000000, "size": 0x3000, "pool": "ram"}
    assert s.alloc_buffer(size=0x1000, align=0x10000)["paddr"] == 0x80010000
    assert [x["paddr"] for x in s.buffers()] == [0x80000000, 0x80010000]
    page = s.buffers_page(limit=1)
    assert ([x["paddr"] for x in page["items"]], page["next"]) == ([0x80000000], {"from": 0x80000001, "limit": 1})
    assert [x["paddr"] for x in s.buffers(from_=page["next"]["from"])] == [0x80010000]
    s.write_memory(0x80000001, b"\x01\x02\xff")
    assert s.read_memory(0x80000000, 5) == b"\x00\x01\x02\xff\x00"
    assert s.read_memory("0x80000002", 1) == b"\x02"
    s.free_buffer(0x80010000)
    s.free_buffer("0x80000000")
    assert s.buffers() == []


def test_dma_api(iommud_session: Session):
    s = iommud_session
    b = s.alloc_buffer(size=0x3000)
    st = s.dma_configure("dev1", flush_policy="strict", dma_limit=0xFFFFFFFF)
    assert (st["device"], st["flushPolicy"], st["dmaLimit"], st["mappings"]) == ("dev1", "strict", 0xFFFFFFFF, [])
    # The IOVA allocator works top-down from the DMA limit, size-aligned.
    m = s.dma_map("dev1", paddr=b["paddr"], size=0x1000, dir="to-device")
    assert m == {"dmaAddr": 0xFFFFF000, "size": 0x1000}
    assert s.dma_sync("dev1", dma_addr=m["dmaAddr"], size=0x100, for_="device") is None
    assert s.dma_sync("dev1", dma_addr=m["dmaAddr"] + 0x100, size=0x100, offset=0, for_="cpu", dir="to-device") is None
    sg = s.dma_map_sg("dev1", segments=[{"paddr": 0x80001000, "size": 0x1000}, {"paddr": 0x80002000, "size": 0x1000}], dir="from-device")
    assert sg == {"dmaAddr": 0xFFFFC000, "segments": [{"dmaAddr": 0xFFFFC000, "size": 0x1000}, {"dmaAddr": 0xFFFFD000, "size": 0x1000}]}
    state = s.dma_state("dev1")
    assert [(x["dmaAddr"], x["size"], x["dir"]) for x in state["mappings"]] == [(0xFFFFF000, 0x1000, "to-device"), (0xFFFFC000, 0x2000, "from-device")]
    assert state["mappings"][1]["segments"] == [
        {"paddr": 0x80001000, "size": 0x1000, "dmaAddr": 0xFFFFC000, "bounce": None},
        {"paddr": 0x80002000, "size": 0x1000, "dmaAddr": 0xFFFFD000, "bounce": None},
    ]
    assert s.dma_unmap("dev1", dma_addr=0xFFFFF000, size=0x1000, dir="to-device") is None
    s.dma_unmap("dev1", dma_addr=0xFFFFC000, size=0x2000, dir="from-device")
    assert s.dma_state("dev1")["mappings"] == []


def _snake(name: str) -> str:
    return re.sub(r"(?<=[a-z0-9])([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def _methods(src: str, cls: str) -> set:
    body = src.split(f"export class {cls}", 1)[1]
    body = re.split(r"\n}\n", body, maxsplit=1)[0]
    names = set(re.findall(r"^  (?:async \*?)?([a-z][A-Za-z0-9]*)\(", body, flags=re.M))
    return {n for n in names if n not in {"constructor", "call", "wsUrl"}}


def test_every_typescript_sdk_method_has_its_python_twin():
    """The TypeScript SDK is the reference: a method added there needs its snake_case twin here."""
    src = (REPO / "src/client/index.ts").read_text()
    for ts_cls, py_cls in (("IommudClient", Client), ("SessionClient", Session), ("EventSubscription", EventSubscription), ("TranslateStream", TranslateStream)):
        missing = sorted(_snake(n) for n in _methods(src, ts_cls) if not callable(getattr(py_cls, _snake(n), None)))
        assert missing == [], f"{py_cls.__name__} lacks {missing} (src/client/index.ts {ts_cls} has them)"


@pytest.mark.iommud(profile="tegra20")
def test_families_gart_domain_for_a_device(iommud_session: Session):
    """`for_` is the body's `for`: the domain gets the GART's format (4K pages inside the 32 MiB aperture)."""
    s = iommud_session
    d = s.alloc_domain(for_="gr2d")
    assert (d["family"], d["pgsizes"], d["ttbr0"]) == ("gart", [4096], 0x58000000)
    s.attach(d["id"], "gr2d")
    assert s.map(d["id"], iova=0x58000000, paddr=0x10000000, size=0x2000, prot=["read", "write"])["pages"] == {**PAGES0, "4K": 2}
    assert s.gart_entries(d["id"]) == {
        "family": "gart",
        "aperture": {"base": 0x58000000, "size": 0x02000000},
        # GART PTEs: bit 31 valid, the page's physical address below.
        "entries": [{"iova": 0x58000000, "pte": 0x90000000}, {"iova": 0x58001000, "pte": 0x90001000}],
    }
    r = s.access("gr2d", iova=0x58001010, access="read")
    assert (r["outcome"], r["paddr"]) == ("ok", 0x10001010)
    assert s.smmus()[0]["family"] == "gart"


@pytest.mark.iommud(profile="tiny", cpu_cache={"line_size": 32, "lines": 64, "coherent": ["dev1"]}, bounce={"paddr": 0x80400000, "size": 0x10000})
def test_cpu_cache_and_bounce(iommud_session: Session):
    """Nested keyword dicts are camel-cased (cpu_cache.line_size → cpuCache.lineSize), through the marker too."""
    s = iommud_session
    info = s.get()
    assert info["cpuCache"] == {"lineSize": 32, "lines": 64, "coherent": ["dev1"]}
    assert info["bounce"] == {"paddr": 0x80400000, "size": 0x10000, "slots": 32, "used": 0}
    b = s.alloc_buffer(size=0x1000)["paddr"]
    assert b == 0x80000000
    s.write_memory(b, b"\xaa" * 40)  # a CPU store: two dirty lines, RAM untouched
    assert (s.read_memory(b, 4), s.read_memory(b, 4, view="ram")) == (b"\xaa" * 4, b"\0" * 4)
    lines = [{"paddr": 0x80000000, "dirty": True}, {"paddr": 0x80000020, "dirty": True}]
    assert s.cache() == {"lineSize": 32, "lines": 64, "used": 2, "entries": lines}
    assert s.cache(b, 0x20)["entries"] == lines[:1]
    assert s.cache_clean(b, 64) == {"lines": 2}
    assert s.read_memory(b, 4, view="ram") == b"\xaa" * 4
    assert s.cache_invalidate(b, 64) == {"lines": 2}
    assert s.cache_flush(b, 64) == {"lines": 0}
    assert s.cache()["entries"] == []
    # Direct-mode DMA of a buffer above the device's mask is bounced through the pool's first slot.
    high = s.alloc_buffer(size=0x1000, align=0x1000000)["paddr"]
    assert high == 0x81000000
    assert s.dma_configure("dev0", mode="direct", dma_limit=0x80FFFFFF)["mode"] == "direct"
    assert s.dma_map("dev0", paddr=high, size=0x800, dir="to-device") == {"dmaAddr": 0x80400000, "size": 0x800}
    assert s.dma_state("dev0")["mappings"][0]["bounce"] == {"paddr": 0x80400000, "slots": 1}
