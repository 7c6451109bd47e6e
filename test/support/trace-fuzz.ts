/**
 * Exported traces of sessions that use every kind of state (domains, maps, faults, stalls, DMA, a CPU cache and a
 * bounce pool, a snapshot record), and fast-check arbitraries that damage them: truncated, lines dropped,
 * duplicated or swapped, a value anywhere replaced by a hostile one, junk lines. Used by the trace fuzz test and
 * by the process-wide --unhandled-rejections=strict test.
 */
import fc from 'fast-check';

/** An HTTP request (inject or fetch): a Buffer body goes as application/octet-stream, anything else as JSON. */
export type Call = (method: string, url: string, body?: unknown, headers?: Record<string, string>) => Promise<{ status: number; body: string }>;

/** A session with a CPU cache (dev1 coherent) and a bounce pool, on the tiny profile. */
export const RICH_SESSION = { profile: 'tiny', name: 'rich', cpuCache: { lineSize: 32, lines: 16, coherent: ['dev1'] }, bounce: { paddr: '0x80100000', size: 0x4000 } };

/** A session that touches every layer, made through `call` (HTTP of any kind); returns its exported trace. */
export async function richTrace(call: Call, create: unknown): Promise<string> {
  const s = JSON.parse((await call('POST', '/v1/sessions', create)).body) as { id: string; token: string };
  const h = { authorization: `Bearer ${s.token}` };
  const at = (method: string, url: string, body?: unknown) => call(method, `/v1/sessions/${s.id}${url}`, body, h);
  await at('POST', '/domains', {});
  await at('POST', '/domains/dom-1/attach', { device: 'dev0' });
  await at('POST', '/domains/dom-1/map', { iova: 0, paddr: '0x80000000', size: 0x10000, prot: ['read', 'write'] });
  await at('POST', '/domains/dom-1/batch', { ops: [{ op: 'map', iova: '0x100000', paddr: '0x80200000', size: 0x100000, prot: ['read'] }, { op: 'unmap', iova: '0x1000', size: 0x1000 }] });
  await at('POST', '/devices/dev0/access', { iova: '0x10', access: 'write', data: Buffer.from('iommud').toString('base64') });
  await at('POST', '/devices/dev0/access', { iova: '0x1000', access: 'read' }); // a translation fault
  await at('PATCH', '/smmus/smmu0/contexts/dev0', { faultMode: 'stall' });
  await at('POST', '/devices/dev0/access', { iova: '0x2000000', access: 'read' }); // a stall
  await at('POST', '/buffers', { size: 0x2000 });
  await at('PUT', '/memory?paddr=0x80400000', Buffer.from('CPU data through the cache'));
  await at('POST', '/devices/dev1/dma/map', { paddr: '0x80410000', size: 0x100, dir: 'to-device' });
  // dev0 direct, with a DMA mask below the buffer: the mapping is bounced.
  await at('PATCH', '/devices/dev0/dma', { mode: 'direct', dmaLimit: '0x80ffffff' });
  await at('POST', '/devices/dev0/dma/map', { paddr: '0x81000010', size: 0x40, dir: 'bidirectional' });
  await at('POST', '/devices/dev0/dma/sync', { dmaAddr: '0x80100000', size: 0x20, for: 'cpu' });
  await at('POST', '/devices/dev1/dma/map', { paddr: '0x80420010', size: 0x40, dir: 'bidirectional' });
  await at('POST', '/devices/dev1/dma/unmap', { dmaAddr: '0xdead0000', size: 0x40, dir: 'to-device' }); // DMA-debug
  await at('POST', '/cache/clean', { paddr: '0x80400000', size: 0x40 });
  return (await at('GET', '/trace')).body;
}

/** A hostile value for any field. */
const hostile = fc.oneof(
  fc.constantFrom<unknown>(2 ** 40, -1, 2 ** 32, 1e308, -0.5, Number.MAX_SAFE_INTEGER, '', 'x'.repeat(5000), null, true, [], {}, '__proto__', { __proto__: { polluted: 1 } }, '0xffffffff', 'AAAA', [1, 2, 3]),
  fc.jsonValue({ maxDepth: 3 }),
);

/** Every [container, key] of a JSON value (objects and arrays), depth first. */
function slots(v: unknown, out: Array<[Record<string | number, unknown>, string | number]> = [], depth = 0): Array<[Record<string | number, unknown>, string | number]> {
  if (depth > 12 || typeof v !== 'object' || v === null) return out;
  for (const k of Object.keys(v)) {
    out.push([v as Record<string, unknown>, Array.isArray(v) ? Number(k) : k]);
    slots((v as Record<string, unknown>)[k], out, depth + 1);
  }
  return out;
}

/** One damage to a list of trace lines. */
export const damage = fc.oneof(
  fc.record({ kind: fc.constant('truncate' as const), at: fc.nat(), bytes: fc.nat() }),
  fc.record({ kind: fc.constant('drop' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('duplicate' as const), at: fc.nat() }),
  fc.record({ kind: fc.constant('swap' as const), at: fc.nat(), with: fc.nat() }),
  fc.record({ kind: fc.constant('replace' as const), at: fc.nat(), slot: fc.nat(), value: hostile }),
  fc.record({ kind: fc.constant('remove-field' as const), at: fc.nat(), slot: fc.nat() }),
  fc.record({ kind: fc.constant('junk' as const), at: fc.nat(), text: fc.oneof(fc.string(), fc.constantFrom('{', '[]', 'null', '{"cmd":{}}', '{"snapshot":{}}', '{"unrecorded":{"seq":-1}}', '{"unrecorded":{"revision":9007199254740991}}')) }),
);
export type Damage = typeof damage extends fc.Arbitrary<infer T> ? T : never;

/** The trace (JSON lines) with the damages applied in order. */
export function applyDamage(trace: string, damages: readonly Damage[]): string {
  let lines = trace.trim().split('\n');
  for (const d of damages) {
    if (lines.length === 0) break;
    const i = d.at % lines.length;
    switch (d.kind) {
      case 'truncate':
        lines = lines.slice(0, i + 1);
        lines[i] = lines[i]!.slice(0, d.bytes % (lines[i]!.length + 1));
        break;
      case 'drop':
        lines.splice(i, 1);
        break;
      case 'duplicate':
        lines.splice(i, 0, lines[i]!);
        break;
      case 'swap': {
        const j = d.with % lines.length;
        [lines[i], lines[j]] = [lines[j]!, lines[i]!];
        break;
      }
      case 'replace':
      case 'remove-field': {
        let v: unknown;
        try {
          v = JSON.parse(lines[i]!);
        } catch {
          break;
        }
        const all = slots(v);
        if (all.length === 0) break;
        const [obj, key] = all[d.slot % all.length]!;
        if (d.kind === 'replace') obj[key] = structuredClone(d.value);
        else if (Array.isArray(obj)) obj.splice(key as number, 1);
        else delete obj[key];
        lines[i] = JSON.stringify(v);
        break;
      }
      case 'junk':
        lines.splice(i, 0, d.text);
        break;
    }
  }
  return lines.join('\n') + '\n';
}
