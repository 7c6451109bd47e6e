"""A camera pipeline as a hardware-in-the-loop rig drives it, written with the Python client as a pytest test
(examples/camera-pipeline.ts is the TypeScript twin).

The VFE writes frames through its SMMU into buffers and the MDP reads them back through its own, both attached
to one domain with the deferred flush policy. The driver then recycles frame 0's IOVA onto a fresh buffer. A
driver that forgets iotlb_sync leaves the MDP's TLB translating to the old buffer: the rig catches it with the
stale-TLB detector, and this test fails for that driver in the way a rig's report would.

    python3 -m pytest examples/python                # a daemon is started for the run
    python3 -m pytest examples/python --iommud-url http://127.0.0.1:8080
"""

from typing import Any, Dict

import pytest

from iommud import Session

FRAME = 64 * 1024
IOVA = 0x20000000
FRAMES = 4


def recycle(s: Session, did: str, iova: int, paddr: int, *, iotlb_sync: bool) -> None:
    """The driver's buffer recycling: unmap, map the IOVA onto the new buffer, and (if it remembers) sync."""
    s.unmap(did, iova=iova, size=FRAME)
    s.map(did, iova=iova, paddr=paddr, size=FRAME, prot=["read", "write"])
    if iotlb_sync:
        s.sync(did)


async def run_pipeline(s: Session, *, iotlb_sync: bool) -> Dict[str, Any]:
    async with s.subscribe() as sub:
        dom = s.alloc_domain(flush_policy="deferred", label="camera")
        s.attach(dom["id"], "vfe_imgwr")
        s.attach(dom["id"], "mdp_vg1")
        matched = 0
        async with s.stream("vfe_imgwr") as vfe, s.stream("mdp_vg1") as mdp:
            for f in range(FRAMES):
                buf = s.alloc_buffer(size=FRAME, pools=["ebi1"])
                iova = IOVA + f * FRAME
                s.map(dom["id"], iova=iova, paddr=buf["paddr"], size=FRAME, prot=["read", "write"])
                pixels = bytes((i * 7 + f) & 0xFF for i in range(FRAME))
                (w,) = await vfe.write([(iova, pixels)])
                assert w["status"] == "ok", f"VFE write of frame {f} faulted: {w['status']}"
                (r,) = await mdp.read([(iova, FRAME)])
                matched += r["status"] == "ok" and r["data"] == pixels
            fresh = s.alloc_buffer(size=FRAME, pools=["ebi1"])
            recycle(s, dom["id"], IOVA, fresh["paddr"], iotlb_sync=iotlb_sync)
            (late,) = await mdp.translate("read", [IOVA])
            # Everything the session reported up to now, stale-TLB hits among it.
            events = await sub.collect(s.get()["lastSeq"])
            stale = [e for e in events if e["type"] == "stale-tlb-hit"]
            s.sync(dom["id"])
            (fixed,) = await mdp.translate("read", [IOVA])
    return {"matched": matched, "fresh": fresh["paddr"], "late": late, "fixed": fixed, "stale": stale}


@pytest.mark.iommud(profile="msm8x60")
async def test_driver_that_syncs_passes_the_rig(iommud_session: Session):
    r = await run_pipeline(iommud_session, iotlb_sync=True)
    assert r["matched"] == FRAMES
    assert (r["late"]["stale"], r["late"]["paddr"]) == (False, r["fresh"])
    assert r["stale"] == []


@pytest.mark.iommud(profile="msm8x60")
async def test_rig_catches_the_missing_iotlb_sync(iommud_session: Session):
    r = await run_pipeline(iommud_session, iotlb_sync=False)
    assert r["matched"] == FRAMES
    # The MDP still translates through the TLB entry of the old buffer (frame 0 at 0x40000000)...
    assert (r["late"]["status"], r["late"]["stale"], r["late"]["paddr"]) == ("ok", True, 0x40000000)
    # ...and the detector names the old and the current translation.
    (hit,) = r["stale"]
    assert (hit["type"], hit["device"], hit["iova"]) == ("stale-tlb-hit", "mdp_vg1", IOVA)
    assert (hit["stale"]["paddr"], hit["current"]["paddr"]) == (0x40000000, r["fresh"])
    # The sync the driver forgot makes the translation right again.
    assert (r["fixed"]["stale"], r["fixed"]["paddr"]) == (False, r["fresh"])


if __name__ == "__main__":
    raise SystemExit(pytest.main([__file__, *__import__("sys").argv[1:]]))
