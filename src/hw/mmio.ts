/**
 * The SMMU's 1 MiB register window as a driver sees it: context bank c at c << 12, globals from 0xFF000, with
 * the hardware's side effects. One register model with the IOMMU-API path: attach writes the same fields.
 */
import { fail, hex } from '../errors.js';
import type { EventSink } from '../events/types.js';
import { ContextBank } from './context.js';
import * as R from './regs.js';
import type { Smmu } from './smmu.js';

const BANK_RW: Record<number, keyof ContextBank & R.ContextRegister> = {
  [R.SCTLR]: 'SCTLR',
  [R.ACTLR]: 'ACTLR',
  [R.CONTEXTIDR]: 'CONTEXTIDR',
  [R.TTBR0]: 'TTBR0',
  [R.TTBR1]: 'TTBR1',
  [R.TTBCR]: 'TTBCR',
  [R.PAR]: 'PAR',
  [R.FSRRESTORE]: 'FSRRESTORE',
  [R.FAR]: 'FAR',
  [R.FSYNR0]: 'FSYNR0',
  [R.FSYNR1]: 'FSYNR1',
  [R.PRRR]: 'PRRR',
  [R.NMRR]: 'NMRR',
  [R.TLBLCKR]: 'TLBLCKR',
  [R.TLBFLPTER]: 'TLBFLPTER',
  [R.TLBSLPTER]: 'TLBSLPTER',
  [R.BFBCR]: 'BFBCR',
};

const BANK_WO: Record<number, string> = {
  [R.CTX_TLBIALL]: 'CTX_TLBIALL',
  [R.TLBIASID]: 'TLBIASID',
  [R.TLBIVA]: 'TLBIVA',
  [R.TLBIVAA]: 'TLBIVAA',
  [R.V2PPR]: 'V2PPR',
  [R.V2PPW]: 'V2PPW',
  [R.V2PUR]: 'V2PUR',
  [R.V2PUW]: 'V2PUW',
  [R.RESUME]: 'RESUME',
};
/** The write-only registers by name: they read as 0 and their events report the value written. */
const WRITE_ONLY = new Set([...Object.values(BANK_WO), 'GLOBAL_TLBIALL', 'TLBIVMID']);

/** Registers whose writes change how transactions translate: those writes go on the event stream. */
const TRANSLATION_REGS = new Set(['SCTLR', 'ACTLR', 'CONTEXTIDR', 'TTBR0', 'TTBCR', 'CTX_TLBIALL', 'TLBIASID', 'TLBIVA', 'TLBIVAA', 'M2VCBR_N', 'GLOBAL_TLBIALL', 'TLBIVMID']);

/** Global offset → name (M2VCBR_N and CBACR_N are tables, decoded apart). */
const GLOBAL_NAMES = new Map<number, keyof typeof R.GLOBAL_REGISTERS>(Object.entries(R.GLOBAL_REGISTERS).map(([n, o]) => [o, n as keyof typeof R.GLOBAL_REGISTERS]));
const GLOBAL_STATE = new Set<string>(R.GLOBAL_STATE_REGISTERS);

export interface RegisterAccess {
  offset: number;
  name: string;
  bank: number | null;
  value: number;
}


/** Decodes an offset into (bank, register name), refusing unaligned, reserved and unknown ones. */
export function decodeOffset(smmu: Smmu, offset: number): { bank: ContextBank | null; name: string; index?: number } {
  if (!Number.isInteger(offset) || offset < 0 || offset >= 0x100000) fail('offsetOutsideWindow', { offset, window: '1 MiB' });
  if (offset & 3) fail('offsetUnaligned', { offset });
  if (offset < R.GLOBAL_BASE) {
    const bank = smmu.banks[offset >>> 12];
    if (!bank) fail('offsetNoBank', { offset, banks: smmu.banks.length });
    const r = offset & 0xfff;
    const name = BANK_RW[r] ?? BANK_WO[r] ?? (r === R.FSR ? 'FSR' : r === R.V2PSR ? 'V2PSR' : null);
    if (!name) fail('offsetUnknown', { offset });
    return { bank, name };
  }
  if (offset >= R.M2VCBR_N && offset < R.M2VCBR_N + 4 * R.NUM_MIDS) return { bank: null, name: 'M2VCBR_N', index: (offset - R.M2VCBR_N) >>> 2 };
  if (offset >= R.CBACR_N && offset < R.CBACR_N + 4 * smmu.banks.length) return { bank: null, name: 'CBACR_N', index: (offset - R.CBACR_N) >>> 2 };
  const g = GLOBAL_NAMES.get(offset);
  if (!g) fail('offsetUnknown', { offset });
  return { bank: null, name: g };
}

export function idrValue(smmu: Smmu): number {
  const tlbsize = smmu.tlb.capacity > 0 ? Math.min(15, Math.floor(Math.log2(smmu.tlb.capacity))) : 0;
  return (((smmu.banks.length - 1) << 16) | (tlbsize << 12) | R.IDR_HTW | (R.NUM_MIDS - 1)) >>> 0;
}

export function readRegister(smmu: Smmu, offset: number): number {
  const { bank, name, index } = decodeOffset(smmu, offset);
  if (bank) {
    if (WRITE_ONLY.has(name)) return 0;
    return (bank as unknown as Record<string, number>)[name]! >>> 0;
  }
  switch (name) {
    case 'M2VCBR_N':
      return smmu.m2vcbr[index!]!;
    case 'CBACR_N':
      return smmu.banks[index!]!.CBACR >>> 0;
    case 'REV':
      return R.REV_VALUE;
    case 'IDR':
      return idrValue(smmu);
    default:
      return GLOBAL_STATE.has(name) ? smmu[name as R.GlobalStateRegister] >>> 0 : 0; // GLOBAL_TLBIALL, TLBIVMID: write-only
  }
}

/**
 * Writes one register with its side effects. Returns the access as performed; the result of a V2P probe is in
 * PAR, and a RESUME's retried (or terminated) transaction is reported by the `resume` event the SMMU emits.
 */
export function writeRegister(smmu: Smmu, offset: number, value: number, sink: EventSink): { name: string; old: number; value: number } {
  const v = value >>> 0;
  const { bank, name, index } = decodeOffset(smmu, offset);
  const old = readRegister(smmu, offset);
  if (bank) writeBankRegister(smmu, bank, name, v);
  else {
    switch (name) {
      case 'M2VCBR_N':
        smmu.setM2vcbr(index!, v);
        break;
      case 'CBACR_N':
        smmu.banks[index!]!.CBACR = v;
        break;
      case 'GLOBAL_TLBIALL':
        smmu.tlb.invalidateAll();
        break;
      case 'TLBIVMID':
        // Every bank whose CBACR_N.CBVMID is the VMID written (the driver leaves them all at VMID 0).
        for (const b of smmu.banks) if (((b.CBACR >>> R.CBACR_CBVMID_SHIFT) & R.CBACR_CBVMID_MASK) === (v & R.CBACR_CBVMID_MASK)) smmu.tlb.invalidateAll(b.index);
        break;
      case 'ESR':
        smmu.ESR = (smmu.ESR & ~v) >>> 0; // write-1-to-clear, as the error syndrome is
        break;
      case 'ESRRESTORE':
        // As FSRRESTORE does for FSR: stored, and ESR takes the value.
        smmu.ESRRESTORE = v;
        smmu.ESR = v;
        break;
      default:
        if (GLOBAL_STATE.has(name)) smmu[name as R.GlobalStateRegister] = v;
        break; // REV and IDR are read-only: writes are ignored
    }
  }
  if (TRANSLATION_REGS.has(name)) {
    sink.emit({
      type: 'mmio',
      smmu: smmu.name,
      context: bank ? bank.index : null,
      device: bank ? bank.name : null,
      domain: bank ? bank.domain : null,
      register: name,
      ...(index !== undefined ? { index } : {}),
      offset: hex(offset),
      old: hex(old),
      new: hex(WRITE_ONLY.has(name) ? v : readRegister(smmu, offset)),
    });
  }
  return { name, old, value: v };
}

function writeBankRegister(smmu: Smmu, bank: ContextBank, name: string, v: number): void {
  switch (name) {
    case 'FSR':
      // Write-1-to-clear. SS stands for the pending stalls: clearing it terminates them (the msm driver's handler
      // writes 0x4000000F and never RESUME), and it clears with the last of them.
      bank.FSR = (bank.FSR & ~(v & R.FSR_WRITABLE & ~R.FSR_SS)) >>> 0;
      if (v & R.FSR_SS) {
        smmu.terminateStalls(bank);
        bank.FSR = (bank.FSR & ~R.FSR_SS) >>> 0;
      }
      return;
    case 'FSRRESTORE':
      // Every bit but SS, which only the stalls themselves set and clear.
      bank.FSRRESTORE = v;
      bank.FSR = ((v & ~R.FSR_SS) | (bank.stalls.length ? R.FSR_SS : 0)) >>> 0;
      return;
    case 'V2PSR':
      return; // read-only
    case 'CTX_TLBIALL':
      smmu.tlb.invalidateAll(bank.index);
      return;
    case 'TLBIASID':
      smmu.tlb.invalidateAsid(bank.index, v & 0xff);
      return;
    case 'TLBIVA':
      smmu.tlb.invalidateVa(bank.index, v & 0xff, (v & 0xfffff000) >>> 0);
      return;
    case 'TLBIVAA':
      smmu.tlb.invalidateVa(bank.index, null, (v & 0xfffff000) >>> 0);
      return;
    case 'V2PPR':
    case 'V2PPW':
    case 'V2PUR':
    case 'V2PUW':
      smmu.probe(bank, v, name[3] === 'P', name[4] === 'W');
      return;
    case 'RESUME': {
      const stall = bank.stalls[0];
      if (stall) smmu.resume(bank, stall.id, v & 1 ? 'terminate' : 'retry');
      return;
    }
    default:
      (bank as unknown as Record<string, number>)[name] = v;
  }
}
