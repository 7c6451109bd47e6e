/**
 * Typed events everything below the session emits (QEMU trace-style: stable names, stable fields). The session's
 * bus stamps `seq` and `time`; producers only describe what happened.
 */
export const EVENT_TYPES = [
  'fault',
  'stall',
  'resume',
  'stale-tlb-hit',
  'map',
  'unmap',
  'attach',
  'detach',
  'flush',
  'sync',
  'dma-debug',
  'session',
  'domain',
  'mmio',
  'context',
  'buffer',
  'memory',
  'dma',
  'coherency',
  'bounce',
  'cache',
] as const;
export type EventType = (typeof EVENT_TYPES)[number];

export interface EventBody {
  type: EventType;
  /** Device (context name) the event concerns, when there is one: the `device` filter matches it. */
  device?: string | null;
  /** Domain the event concerns: the `device` filter also matches events of a domain the device is attached to. */
  domain?: string | null;
  [field: string]: unknown;
}

export interface EventSink {
  emit(ev: EventBody): void;
}

export const NULL_SINK: EventSink = { emit() {} };
