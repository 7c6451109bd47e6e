"""Shared constants of the client's tests."""

from pathlib import Path

REPO = Path(__file__).resolve().parents[3]

# tiny: smmu0 at 0x01000000, dev0 (bank 0, MID 0), dev1 (bank 1, MID 1); RAM 0x80000000, 64 MiB; page-table
# pool its top 2 MiB, so the first domain's L1 table is at 0x83e00000.
TTBR0 = 0x83E00000
