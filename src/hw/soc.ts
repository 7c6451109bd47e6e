import { IommuError } from '../errors.js';
import type { EventSink } from '../events/types.js';
import { PhysMemory } from '../memory/phys.js';
import { PageTablePool } from '../memory/ptpool.js';
import type { ContextBank } from './context.js';
import type { Profile } from './profile.js';
import { Smmu, type HwEnv, type SmmuSnapshot } from './smmu.js';
import type { TlbPolicy } from './tlb.js';

export interface SocOptions {
  tlbEntries?: number;
  tlbPolicy?: TlbPolicy;
  maxStallsPerContext?: number;
}

/** A device: a named context bank (API.md), the unit the IOMMU API attaches. */
export interface DeviceRef {
  name: string;
  smmu: Smmu;
  bank: ContextBank;
}

/** One simulated SoC's hardware: RAM, the page-table pool and the SMMUs of a profile. */
export class Soc {
  readonly mem: PhysMemory;
  readonly ptPool: PageTablePool;
  readonly smmus: Smmu[];
  readonly devices = new Map<string, DeviceRef>();
  readonly env: HwEnv;
  private stallSeq = 0;

  constructor(
    readonly profile: Profile,
    sink: EventSink,
    opts: SocOptions = {},
  ) {
    this.mem = new PhysMemory(profile.memory);
    this.ptPool = new PageTablePool(this.mem, profile.pagetablePool.base, profile.pagetablePool.size);
    this.env = {
      mem: this.mem,
      sink,
      nextStallId: () => `stall-${++this.stallSeq}`,
      maxStallsPerContext: opts.maxStallsPerContext ?? 64,
      faultHook: null,
    };
    this.smmus = profile.smmus.map((s) => new Smmu(s, opts.tlbEntries ?? 128, opts.tlbPolicy ?? 'lru', this.env));
    for (const smmu of this.smmus) {
      for (const bank of smmu.banks) if (bank.name) this.devices.set(bank.name, { name: bank.name, smmu, bank });
    }
  }

  snapshot(): { stallSeq: number; mem: Record<number, string>; ptPool: { used: string }; smmus: SmmuSnapshot[] } {
    return { stallSeq: this.stallSeq, mem: this.mem.snapshot(), ptPool: this.ptPool.snapshot(), smmus: this.smmus.map((s) => s.snapshot()) };
  }

  restore(s: ReturnType<Soc['snapshot']>): void {
    this.stallSeq = s.stallSeq;
    this.mem.restore(s.mem);
    this.ptPool.restore(s.ptPool);
    s.smmus.forEach((x, i) => this.smmus[i]!.restore(x));
  }

  smmu(name: string): Smmu {
    const s = this.smmus.find((x) => x.name === name);
    if (!s) throw new IommuError('NOT_FOUND', `no SMMU named ${name}`, { smmu: name });
    return s;
  }

  device(name: string): DeviceRef {
    const d = this.devices.get(name);
    if (!d) throw new IommuError('NOT_FOUND', `no device named ${name}`, { device: name });
    return d;
  }

  /** A context by bank index or name. */
  context(smmu: Smmu, ctx: string): ContextBank {
    const bank = /^[0-9]+$/.test(ctx) ? smmu.banks[Number(ctx)] : smmu.banks.find((b) => b.name === ctx);
    if (!bank) throw new IommuError('NOT_FOUND', `SMMU ${smmu.name} has no context ${ctx}`, { context: ctx });
    return bank;
  }
}
