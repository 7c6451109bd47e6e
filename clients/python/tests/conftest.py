from typing import Any, Dict

import pytest

from iommud import Session


@pytest.fixture
def mapped(iommud_session: Session) -> Dict[str, Any]:
    """A domain on dev0 with iova 0x10000000 → 0x80000000 (one 1M section, read+write)."""
    s = iommud_session
    d = s.alloc_domain()
    s.attach(d["id"], "dev0")
    s.map(d["id"], iova=0x10000000, paddr=0x80000000, size=0x100000, prot=["read", "write"])
    return d
