import { fail } from '../errors.js';
import type { EventSink } from '../events/types.js';
import { PhysMemory } from '../memory/phys.js';
import { PageTablePool } from '../memory/ptpool.js';
import type { FaultBase, FamilyEnv, HwContext, IommuInstance } from './family.js';
import { FAMILIES } from './families.js';
import type { Profile } from './profile.js';
import type { HwEnv } from './smmu.js';
import type { TlbPolicy } from './tlb.js';

export interface SocOptions {
  tlbEntries?: number;
  tlbPolicy?: TlbPolicy;
  maxStallsPerContext?: number;
}

/** A device: a named context (API.md), the unit the IOMMU API attaches, on an IOMMU of some family. */
export interface DeviceRef {
  name: string;
  smmu: IommuInstance;
  bank: HwContext;
}

/** The IOMMU layer's report_iommu_fault, whatever the family: may answer an MSM stall with retry or terminate. */
export type FaultReport = (ctx: HwContext, fault: FaultBase) => 'retry' | 'terminate' | void;

/** One simulated SoC's hardware: RAM, the page-table pool and the IOMMUs of a profile, each of its family. */
export class Soc {
  readonly mem: PhysMemory;
  readonly ptPool: PageTablePool;
  readonly env: HwEnv;
  /** Set by the IOMMU layer. */
  faultReport: FaultReport | null = null;
  private stallSeq = 0;
  /** The IOMMU instances and their devices, built on first use: a session nobody drives holds none. */
  private hw: { smmus: IommuInstance[]; devices: Map<string, DeviceRef> } | null = null;
  private readonly tlb: { tlbEntries: number; tlbPolicy: TlbPolicy };

  constructor(
    readonly profile: Profile,
    private readonly sink: EventSink,
    opts: SocOptions = {},
  ) {
    this.mem = new PhysMemory(profile.memory);
    this.ptPool = new PageTablePool(this.mem, profile.pagetablePool.base, profile.pagetablePool.size);
    this.env = {
      mem: this.mem,
      sink,
      nextStallId: () => `stall-${++this.stallSeq}`,
      maxStallsPerContext: opts.maxStallsPerContext ?? 64,
      faultHook: (bank, fault) => this.faultReport?.(bank, fault),
      cache: null,
    };
    this.tlb = { tlbEntries: opts.tlbEntries ?? 128, tlbPolicy: opts.tlbPolicy ?? 'lru' };
  }

  /** The profile's IOMMUs, each of its family, in profile order. */
  get smmus(): IommuInstance[] {
    return (this.hw ??= this.build()).smmus;
  }

  /** Devices (named contexts) by name. */
  get devices(): Map<string, DeviceRef> {
    return (this.hw ??= this.build()).devices;
  }

  /** Whether any IOMMU was built yet (before that, every register, TLB and stall is as after reset). */
  get built(): boolean {
    return this.hw !== null;
  }

  private build(): { smmus: IommuInstance[]; devices: Map<string, DeviceRef> } {
    const hw = this.env;
    const env: FamilyEnv = {
      mem: this.mem,
      sink: this.sink,
      report: (ctx, fault) => void this.faultReport?.(ctx, fault),
      get cache() {
        return hw.cache;
      },
    };
    const o = { ...this.tlb, hwEnv: this.env, env };
    const smmus = this.profile.smmus.map((s) => FAMILIES[s.family ?? 'msm'].createInstance(s, o));
    const devices = new Map<string, DeviceRef>();
    for (const smmu of smmus) {
      for (const bank of smmu.banks) if (bank.name) devices.set(bank.name, { name: bank.name, smmu, bank });
    }
    return { smmus, devices };
  }

  /** The families present, in profile order, each once. */
  get families(): string[] {
    return [...new Set(this.smmus.map((s) => s.family))];
  }

  snapshot(): { stallSeq: number; mem: Record<number, string>; ptPool: { used: string }; smmus: unknown[] } {
    return { stallSeq: this.stallSeq, mem: this.mem.snapshot(), ptPool: this.ptPool.snapshot(), smmus: this.smmus.map((s) => s.snapshot()) };
  }

  restore(s: ReturnType<Soc['snapshot']>): void {
    this.stallSeq = s.stallSeq;
    this.mem.restore(s.mem);
    this.ptPool.restore(s.ptPool);
    s.smmus.forEach((x, i) => this.smmus[i]!.restore(x));
  }

  smmu(name: string): IommuInstance {
    const s = this.smmus.find((x) => x.name === name);
    if (!s) fail('noSmmu', { smmu: name });
    return s;
  }

  device(name: string): DeviceRef {
    const d = this.devices.get(name);
    if (!d) fail('noDevice', { device: name });
    return d;
  }

  /** A context by bank index or name (a GART's contexts all have index 0: the index names the first). */
  context(smmu: IommuInstance, ctx: string): HwContext {
    const bank = /^[0-9]+$/.test(ctx) ? smmu.banks.find((b) => b.index === Number(ctx)) : smmu.banks.find((b) => b.name === ctx);
    if (!bank) fail('noContext', { smmu: smmu.name, context: ctx });
    return bank;
  }
}
