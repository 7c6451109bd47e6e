/**
 * The register window of a family whose registers are one flat table of offsets (the OMAP MMU, the GART's
 * memory-controller registers): the offset checks of readl/writel, the hardware view by name, the `mmio` event of
 * a write that changes translation, and the write-1-to-clear fault status. The family keeps the registers and
 * their side effects; this is only the plumbing around them.
 */
import { fail, hex } from '../errors.js';
import type { EventSink } from '../events/types.js';

/** A family's own register access, as IommuInstance has it. */
interface Registers {
  readRegister(offset: number): number;
  writeRegister(offset: number, value: number): { name: string; old: number; value: number };
}

export class RegisterWindow {
  constructor(
    /** Bytes of the window. */
    readonly size: number,
    private readonly names: Readonly<Record<number, string>>,
    /** Registers whose writes change how transactions translate: they go on the event stream. */
    private readonly traced: ReadonlySet<string>,
    /** Command registers (write-only triggers): left out of the hardware view, traced with the value written. */
    private readonly commands: ReadonlySet<string> = new Set(),
  ) {}

  /** The register at an offset; BAD_REQUEST for one outside the window, unaligned, reserved or unknown. */
  name(offset: number): string {
    if (!Number.isInteger(offset) || offset < 0 || offset >= this.size) {
      fail('offsetOutsideWindow', { offset, window: `${hex(this.size)}-byte` });
    }
    if (offset & 3) fail('offsetUnaligned', { offset });
    const name = this.names[offset];
    if (!name) fail('offsetUnknown', { offset });
    return name;
  }

  /** Every register but the commands, by name, as the family reads it (the hardware view). */
  values(regs: Registers): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [off, name] of Object.entries(this.names)) if (!this.commands.has(name)) out[name] = regs.readRegister(Number(off));
    return out;
  }

  /** After a write: a traced register's change goes on the event stream (old and new value; a command's value written). */
  traceWrite(
    sink: EventSink,
    at: () => { smmu: string; context: number | null; device: string | null; domain: string | null },
    regs: Registers,
    write: { name: string; offset: number; old: number; value: number; extra?: { iova?: string } },
  ): void {
    if (!this.traced.has(write.name)) return;
    sink.emit({
      type: 'mmio',
      ...at(),
      register: write.name,
      ...write.extra,
      offset: hex(write.offset),
      old: hex(write.old),
      new: hex(this.commands.has(write.name) ? write.value : regs.readRegister(write.offset)),
    });
  }

  /** Writes the fault status register (write-1-to-clear); the value defaults to its current one (clear all). */
  clearStatus(regs: Registers, offset: number, value?: number): { register: string; old: number; value: number } {
    const old = regs.readRegister(offset);
    regs.writeRegister(offset, value ?? old);
    return { register: this.name(offset), old, value: regs.readRegister(offset) };
  }
}
