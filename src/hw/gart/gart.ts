/**
 * The Tegra 20 GART (tegra-gart.c, memory/tegra/tegra20.c): 8192 entries as registers of the memory controller
 * behind a 32 MiB aperture, no TLB, no isolation (every client translates through the same entries), one active
 * domain at a time, faults in the MC's INTSTATUS / GART_ERROR_REQ / GART_ERROR_ADDR.
 */
import { fail, hex } from '../../errors.js';
import { GART_ENTRY_VALID, GART_PAGE_MASK, GartTable } from '../../pgtable/gart.js';
import type { PgTable } from '../../pgtable/format.js';
import type { SmmuSpec } from '../profile.js';
import {
  ACCESS_NAMES,
  ClientContext,
  OUTCOME_FAULT,
  OUTCOME_OK,
  TLB_BYPASS,
  TLB_MISS,
  transferPages,
  type FaultBase,
  type FamilyEnv,
  type HwAccessResult,
  type HwContext,
  type IommuInstance,
  type TlbView,
  type TransferRequest,
  type Txn,
} from '../family.js';
import { RegisterWindow } from '../window.js';

export const MC_INTSTATUS = 0x00;
export const MC_INTMASK = 0x04;
export const GART_CONFIG = 0x24;
export const GART_ENTRY_ADDR = 0x28;
export const GART_ENTRY_DATA = 0x2c;
export const MC_GART_ERROR_REQ = 0x30;
export const MC_GART_ERROR_ADDR = 0x34;
export const GART_WINDOW = 0x400;
export const MC_INT_INVALID_GART_PAGE = 1 << 7;
/** What the drivers' probe leaves in MC_INTMASK (iommud's reset value). */
export const MC_INTMASK_RESET = 0x1c0;
export const GART_CONFIG_ENABLE = 1;

/** Memory-controller client names of Tegra 20 (tegra20_mc_clients), for fault reports. */
export const TEGRA20_CLIENTS: Readonly<Record<number, string>> = {
  0x00: 'display0a',
  0x10: 'fdcdrd',
  0x11: 'g2dr',
  0x12: 'host1xdmar',
  0x28: 'g2dw',
  0x2a: 'fdcdwr',
  0x2b: 'host1xw',
};

const REGISTERS: Record<number, string> = {
  [MC_INTSTATUS]: 'MC_INTSTATUS',
  [MC_INTMASK]: 'MC_INTMASK',
  [GART_CONFIG]: 'GART_CONFIG',
  [GART_ENTRY_ADDR]: 'GART_ENTRY_ADDR',
  [GART_ENTRY_DATA]: 'GART_ENTRY_DATA',
  [MC_GART_ERROR_REQ]: 'MC_GART_ERROR_REQ',
  [MC_GART_ERROR_ADDR]: 'MC_GART_ERROR_ADDR',
};
const WINDOW = new RegisterWindow(GART_WINDOW, REGISTERS, new Set(['GART_CONFIG', 'GART_ENTRY_DATA']));

export interface GartFault extends FaultBase {
  family: 'gart';
  intstatus: string;
  errorReq: string;
  errorAddr: string;
  client: { id: number; name: string };
}

class GartTxn implements Txn {
  outcome = OUTCOME_OK;
  paddr = 0;
  tlb = TLB_MISS;
  stale = false;
  pageSize = 0x1000;
  fault: GartFault | null = null;
  stall: string | null = null;
}

export interface GartSnapshot {
  regs: Record<string, number>;
  /** The entries while no domain is active (an active domain's are its own table's). */
  idle: string;
  contexts: Array<{ domain: string | null; faults: number }>;
}

export class Gart implements IommuInstance {
  readonly family = 'gart' as const;
  readonly windowSize = GART_WINDOW;
  readonly name: string;
  readonly base: number;
  readonly aperture: { base: number; size: number };
  readonly banks: readonly ClientContext[];
  INTSTATUS = 0;
  INTMASK = MC_INTMASK_RESET;
  CONFIG = GART_CONFIG_ENABLE;
  ENTRY_ADDR = 0;
  ERROR_REQ = 0;
  ERROR_ADDR = 0;
  /** The active domain's table: its entries are the GART's entries. */
  active: GartTable | null = null;
  private readonly idle: Uint32Array;
  private readonly res = new GartTxn();

  constructor(
    spec: SmmuSpec,
    private readonly env: FamilyEnv,
  ) {
    this.name = spec.name;
    this.base = spec.base;
    this.aperture = { base: spec.aperture!.base, size: spec.aperture!.size };
    this.idle = new Uint32Array(this.aperture.size / 0x1000);
    this.banks = spec.contexts.map((c) => new ClientContext(0, c.name, c.mids));
  }

  get sink() {
    return this.env.sink;
  }

  /** The entry registers as the hardware holds them now. */
  get entries(): Uint32Array {
    return this.active ? this.active.entries : this.idle;
  }

  newTable(): GartTable {
    return new GartTable(this.env.mem, this.aperture);
  }

  /** Reads use the device's read client, writes its write client (tegra20_mc_clients). */
  defaultMid(ctx: HwContext, access: number): number {
    return (access === 1 ? ctx.mids[1] : ctx.mids[0]) ?? ctx.mids[0] ?? 0;
  }

  tableRegister(): number {
    return this.aperture.base;
  }

  faultSettings(): { faultMode: 'terminate'; faultInterrupt: boolean } {
    return { faultMode: 'terminate', faultInterrupt: (this.INTMASK & MC_INT_INVALID_GART_PAGE) !== 0 };
  }

  enabled(): boolean {
    return (this.CONFIG & GART_CONFIG_ENABLE) !== 0;
  }

  private inAperture(iova: number): boolean {
    return iova >= this.aperture.base && iova - this.aperture.base < this.aperture.size;
  }

  translate(ctx: HwContext, iova: number, access: number, priv: boolean, mid: number): Txn {
    const r = this.res;
    if (!this.inAperture(iova)) {
      ctx.bypasses++;
      r.outcome = OUTCOME_OK;
      r.paddr = iova >>> 0;
      r.tlb = TLB_BYPASS;
      return r;
    }
    ctx.tlbMisses++;
    r.tlb = TLB_MISS;
    const e = this.entries[(iova - this.aperture.base) >>> 12]!;
    if (this.CONFIG & GART_CONFIG_ENABLE && e & GART_ENTRY_VALID) {
      r.outcome = OUTCOME_OK;
      r.paddr = ((e & GART_PAGE_MASK) | (iova & 0xfff)) >>> 0;
      return r;
    }
    return this.fault(ctx, iova, access, priv, mid);
  }

  transfer(ctx: HwContext, req: TransferRequest): HwAccessResult {
    return transferPages(this, this.env.mem, ctx, req, this.env.cache);
  }

  notifyFault(ctx: HwContext, fault: FaultBase): void {
    if (this.INTMASK & MC_INT_INVALID_GART_PAGE) this.env.report(ctx, fault);
  }

  /** INVALID_GART_PAGE in MC_INTSTATUS; MC_GART_ERROR_REQ/ADDR latch the latest request. */
  private fault(ctx: HwContext, iova: number, access: number, priv: boolean, mid: number): Txn {
    const write = access === 1;
    ctx.faults++;
    this.INTSTATUS = (this.INTSTATUS | MC_INT_INVALID_GART_PAGE) >>> 0;
    this.ERROR_REQ = (((mid & 0x3f) << 1) | (write ? 1 : 0)) >>> 0;
    this.ERROR_ADDR = iova >>> 0;
    const fault: GartFault = {
      smmu: this.name,
      context: 0,
      device: ctx.name,
      domain: ctx.domain,
      iova: hex(iova),
      access: ACCESS_NAMES[access]!,
      priv,
      flags: write ? 1 : 0,
      kind: 'translation',
      family: 'gart',
      intstatus: hex(this.INTSTATUS),
      errorReq: hex(this.ERROR_REQ),
      errorAddr: hex(this.ERROR_ADDR),
      client: { id: mid & 0x3f, name: TEGRA20_CLIENTS[mid & 0x3f] ?? `client-${mid & 0x3f}` },
    };
    if (this.INTMASK & MC_INT_INVALID_GART_PAGE) this.env.sink.emit({ type: 'fault', ...fault });
    const r = this.res;
    r.outcome = OUTCOME_FAULT;
    r.fault = fault;
    return r;
  }

  // ---- the register window --------------------------------------------------------------------------------

  registerName(offset: number): string {
    return WINDOW.name(offset);
  }

  /** Index of the entry GART_ENTRY_ADDR selects, or -1 outside the aperture. */
  private selected(): number {
    return this.inAperture(this.ENTRY_ADDR) ? (this.ENTRY_ADDR - this.aperture.base) >>> 12 : -1;
  }

  readRegister(offset: number): number {
    switch (this.registerName(offset)) {
      case 'MC_INTSTATUS':
        return this.INTSTATUS;
      case 'MC_INTMASK':
        return this.INTMASK;
      case 'GART_CONFIG':
        return this.CONFIG;
      case 'GART_ENTRY_ADDR':
        return this.ENTRY_ADDR;
      case 'GART_ENTRY_DATA': {
        const i = this.selected();
        return i < 0 ? 0 : this.entries[i]!;
      }
      case 'MC_GART_ERROR_REQ':
        return this.ERROR_REQ;
      default:
        return this.ERROR_ADDR;
    }
  }

  writeRegister(offset: number, value: number): { name: string; old: number; value: number } {
    const v = value >>> 0;
    const name = this.registerName(offset);
    const old = this.readRegister(offset);
    switch (name) {
      case 'MC_INTSTATUS':
        this.INTSTATUS = (this.INTSTATUS & ~v) >>> 0;
        break;
      case 'MC_INTMASK':
        this.INTMASK = v;
        break;
      case 'GART_CONFIG':
        this.CONFIG = v & GART_CONFIG_ENABLE;
        break;
      case 'GART_ENTRY_ADDR':
        this.ENTRY_ADDR = v;
        break;
      case 'GART_ENTRY_DATA': {
        // Posted writes applied at once; the entry keeps VALID and PA 30:12 (the active domain's mapping changes).
        const i = this.selected();
        if (i >= 0) this.entries[i] = (v & (GART_ENTRY_VALID | GART_PAGE_MASK)) >>> 0;
        break;
      }
      default:
        break; // MC_GART_ERROR_REQ / ADDR are read-only
    }
    const at = () => ({ smmu: this.name, context: null, device: null, domain: this.banks.find((b) => b.domain)?.domain ?? null });
    WINDOW.traceWrite(this.env.sink, at, this, { name, offset, old, value: v, ...(name === 'GART_ENTRY_DATA' ? { extra: { iova: hex(this.ENTRY_ADDR) } } : {}) });
    return { name, old, value: v };
  }

  registers(): Record<string, number> {
    return WINDOW.values(this);
  }

  clearFault(_ctx: HwContext, value?: number): { register: string; old: number; value: number } {
    return WINDOW.clearStatus(this, MC_INTSTATUS, value);
  }

  tlbView(ctx?: HwContext): TlbView {
    const misses = ctx ? ctx.tlbMisses : this.banks.reduce((n, b) => n + b.tlbMisses, 0);
    return { entries: 0, capacity: 0, hits: 0, misses, evictions: 0, invalidations: 0 };
  }

  details(): Record<string, unknown> {
    let valid = 0;
    for (const e of this.entries) if (e & GART_ENTRY_VALID) valid++;
    const active = this.banks.find((b) => b.domain)?.domain ?? null;
    return { aperture: { base: hex(this.aperture.base), size: this.aperture.size }, entries: this.entries.length, validEntries: valid, activeDomain: active };
  }

  // ---- what the IOMMU API programs ------------------------------------------------------------------------

  private checkTable(table: PgTable): GartTable {
    if (!(table instanceof GartTable) || table.aperture.base !== this.aperture.base || table.aperture.size !== this.aperture.size) {
      fail('gartAperture', { smmu: this.name });
    }
    return table;
  }

  /** One active domain per GART: another domain's attach is busy until its last device leaves. */
  checkAttach(ctx: HwContext, table: PgTable, replace: boolean): void {
    const t = this.checkTable(table);
    if (this.active === null || this.active === t) return;
    const others = this.banks.filter((b) => b.domain !== null && !(replace && b === ctx));
    if (others.length > 0) {
      fail('gartBusy', { smmu: this.name, device: ctx.name, domain: others[0]!.domain });
    }
  }

  attachContext(ctx: HwContext, table: PgTable, domain: string): void {
    this.checkAttach(ctx, table, false);
    this.active = table as GartTable;
    ctx.domain = domain;
  }

  switchContext(ctx: HwContext, table: PgTable, domain: string): void {
    this.checkAttach(ctx, table, true);
    this.active = table as GartTable;
    ctx.domain = domain;
  }

  /** The last device leaving clears the entries (the API's promise; the domain keeps its mappings). */
  detachContext(ctx: HwContext): void {
    ctx.domain = null;
    if (this.banks.every((b) => b.domain === null)) {
      this.active = null;
      this.idle.fill(0);
    }
  }

  flushContext(): number {
    return 0;
  }

  /** After a restore: the domain whose devices are attached is active again. */
  adoptTable(domain: string, table: PgTable): void {
    if (this.banks.some((b) => b.domain === domain)) this.active = this.checkTable(table);
  }

  /** No TLB: only the miss counters (every translation reads the entry registers) start again. */
  resetTlb(): void {
    for (const b of this.banks) b.tlbMisses = 0;
  }

  snapshot(): GartSnapshot {
    return {
      regs: { INTSTATUS: this.INTSTATUS, INTMASK: this.INTMASK, CONFIG: this.CONFIG, ENTRY_ADDR: this.ENTRY_ADDR, ERROR_REQ: this.ERROR_REQ, ERROR_ADDR: this.ERROR_ADDR },
      idle: Buffer.from(this.idle.buffer, this.idle.byteOffset, this.idle.byteLength).toString('base64'),
      contexts: this.banks.map((b) => ({ domain: b.domain, faults: b.faults })),
    };
  }

  restore(s: unknown): void {
    const x = s as GartSnapshot;
    Object.assign(this, x.regs);
    new Uint8Array(this.idle.buffer, this.idle.byteOffset, this.idle.byteLength).set(Buffer.from(x.idle, 'base64'));
    x.contexts.forEach((c, i) => {
      this.banks[i]!.domain = c.domain;
      this.banks[i]!.faults = c.faults;
    });
    this.active = null;
  }
}
