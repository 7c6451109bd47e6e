import { describe, expect, it } from 'vitest';
import {
  IOMMU_CACHE, IOMMU_MMIO, IOMMU_NOEXEC, IOMMU_PRIV, IOMMU_READ, IOMMU_WRITE,
  encodeLarge, encodeSection, encodeSmall, encodeSupersection, encodeTable, largePerm, permToProt, sectionPerm, smallPerm,
} from '../../src/pgtable/desc.js';

const RW = IOMMU_READ | IOMMU_WRITE;

// Expected values computed by hand from HARDWARE.md's bit positions.
// Section: nG b17 0x20000, S b16 0x10000, AP2 b15 0x8000, TEX0 b12 0x1000, AP1 b11 0x800, AP0 b10 0x400, XN b4, C b3, B b2, type 0b10.
describe('L1 section and supersection descriptors', () => {
  it.each([
    ['read+write', RW, 0x40031c02],
    ['read-only', IOMMU_READ, 0x40039c02],
    ['noexec', RW | IOMMU_NOEXEC, 0x40031c12],
    ['cache', RW | IOMMU_CACHE, 0x40031c0e],
    ['mmio', RW | IOMMU_MMIO, 0x40030c06],
    ['mmio wins over cache', RW | IOMMU_MMIO | IOMMU_CACHE, 0x40030c06],
    ['priv', RW | IOMMU_PRIV, 0x40031402],
    ['write-only stored as read+write', IOMMU_WRITE, 0x40031c02],
  ])('section %s', (_n, prot, want) => {
    expect(encodeSection(0x40000000, prot)).toBe(want);
  });

  it('supersection sets bit 18 and keeps PA 31:24', () => {
    expect(encodeSupersection(0x41000000, RW)).toBe(0x41071c02);
    expect(encodeSupersection(0x41000000, IOMMU_READ | IOMMU_NOEXEC)).toBe(0x41079c12);
  });

  it('table descriptor', () => {
    expect(encodeTable(0x5f004400)).toBe(0x5f004401);
  });
});

// Small page: nG b11 0x800, S b10 0x400, AP2 b9 0x200, TEX0 b6 0x40, AP1 b5 0x20, AP0 b4 0x10, C b3, B b2, b1 = 1, XN b0.
// Large page: TEX at 14:12 (TEX0 0x1000), XN b15 0x8000, bits 1:0 = 01.
describe('L2 small and large page descriptors', () => {
  it.each([
    ['read+write', RW, 0x40001c72, 0x40011c31],
    ['read-only', IOMMU_READ, 0x40001e72, 0x40011e31],
    ['noexec', RW | IOMMU_NOEXEC, 0x40001c73, 0x40019c31],
    ['cache', RW | IOMMU_CACHE, 0x40001c7e, 0x40011c3d],
    ['mmio', RW | IOMMU_MMIO, 0x40001c36, 0x40010c35],
    ['priv', RW | IOMMU_PRIV, 0x40001c52, 0x40011c11],
  ])('%s', (_n, prot, small, large) => {
    expect(encodeSmall(0x40001000, prot)).toBe(small);
    expect(encodeLarge(0x40010000, prot)).toBe(large);
  });
});

describe('prot round trip (reverse mapping)', () => {
  const all = [IOMMU_READ, RW, RW | IOMMU_NOEXEC, RW | IOMMU_CACHE, RW | IOMMU_MMIO, IOMMU_READ | IOMMU_PRIV | IOMMU_NOEXEC, RW | IOMMU_PRIV | IOMMU_CACHE];
  it.each(all)('prot %i survives every level', (prot) => {
    expect(permToProt(sectionPerm(encodeSection(0, prot)))).toBe(prot);
    expect(permToProt(smallPerm(encodeSmall(0, prot)))).toBe(prot);
    expect(permToProt(largePerm(encodeLarge(0, prot)))).toBe(prot);
  });
  it('write-only reads back as read+write', () => {
    expect(permToProt(smallPerm(encodeSmall(0, IOMMU_WRITE)))).toBe(RW);
  });
});
