/**
 * execute() is the one gate (issue 11, items 4, 11, 19): HTTP, the binary stream, journal restore and trace replay
 * refuse the same commands with the same codes, and a refusal creates nothing.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { FastifyInstance } from 'fastify';
import { IommuError } from '../../src/errors.js';
import { MSM8X60, TINY } from '../../src/hw/profile.js';
import { Session } from '../../src/session/session.js';
import { client, type Client } from '../support/server.js';

/** A trace: the header of a fresh tiny session's export, then one record per command. */
async function traceOf(c: Client, cmds: unknown[]): Promise<string> {
  const fresh = await c.app.inject({ method: 'POST', url: '/v1/sessions', payload: { profile: 'tiny' } });
  const { id, token } = fresh.json();
  const lines = (await c.app.inject({ method: 'GET', url: `/v1/sessions/${id}/trace`, headers: { authorization: `Bearer ${token}` } })).body.trim().split('\n');
  await c.app.inject({ method: 'DELETE', url: `/v1/sessions/${id}`, headers: { authorization: `Bearer ${token}` } });
  const header = lines[0]!;
  return [header, ...cmds.map((cmd, i) => JSON.stringify({ seq: i + 1, time: '2026-01-01T00:00:00.000Z', by: null, cmd }))].join('\n') + '\n';
}

async function replay(app: FastifyInstance, trace: string) {
  const r = await app.inject({ method: 'POST', url: '/v1/sessions', payload: { trace } });
  return { status: r.statusCode, body: r.json() };
}

const sessions = async (app: FastifyInstance) => (await app.inject({ method: 'GET', url: '/health' })).json().sessions as number;

describe('one gate: a trace refuses what HTTP refuses (items 4, 11)', () => {
  let c: Client;
  beforeAll(async () => {
    c = await client('tiny', { limits: { maxBatchOps: 16 } });
  });
  afterAll(() => c.app.close());

  // [name, HTTP request, the command a trace would carry, the code both must give]
  const cases: Array<[string, [string, string, unknown] | null, unknown, string]> = [
    ['memory-write outside RAM', ['PUT', '/memory?paddr=0x1000', null], { op: 'memory-write', paddr: 0x1000, data: 'AAAA' }, 'OUT_OF_RANGE'],
    ['memory-write past 2^32', ['PUT', '/memory?paddr=0xfffffffe', null], { op: 'memory-write', paddr: 0xfffffffe, data: 'AAAAAA==' }, 'OUT_OF_RANGE'],
    ['memory-write at 2^40 (used to loop forever)', ['PUT', `/memory?paddr=${2 ** 40}`, null], { op: 'memory-write', paddr: 2 ** 40, data: 'AAAA' }, 'OUT_OF_RANGE'],
    ['memory-write over 4 MiB', null, { op: 'memory-write', paddr: 0x80000000, data: Buffer.alloc(4 * 1024 * 1024 + 4).toString('base64') }, 'PAYLOAD_TOO_LARGE'],
    ['access-batch over the batch limit', ['POST', '/devices/dev0/access-batch', { access: 'read', iovas: Array(17).fill(0) }], { op: 'access-batch', device: 'dev0', access: 'read', iovas: Array(17).fill(0) }, 'PAYLOAD_TOO_LARGE'],
    ['map batch over the batch limit', ['POST', '/domains/dom-1/batch', { ops: Array(17).fill({ op: 'unmap', iova: 0, size: 4096 }) }], { op: 'batch', did: 'dom-1', ops: Array(17).fill({ op: 'unmap', iova: 0, size: 4096 }) }, 'PAYLOAD_TOO_LARGE'],
    ['mmio sequence over the batch limit', ['POST', '/smmus/smmu0/mmio', { ops: Array(17).fill({ op: 'read', offset: 0 }) }], { op: 'mmio', smmu: 'smmu0', ops: Array(17).fill({ op: 'read', offset: 0 }) }, 'PAYLOAD_TOO_LARGE'],
    ['negative iova', ['POST', '/devices/dev0/access', { iova: -4096, access: 'read' }], { op: 'access', device: 'dev0', iova: -4096, access: 'read' }, 'BAD_REQUEST'],
    ['fractional paddr', ['POST', '/domains/dom-1/map', { iova: 0, paddr: 1.5, size: 4096, prot: ['read'] }], { op: 'map', did: 'dom-1', iova: 0, paddr: 1.5, size: 4096, prot: ['read'] }, 'BAD_REQUEST'],
    ['bogus access kind', ['POST', '/devices/dev0/access', { iova: 0, access: 'fly' }], { op: 'access', device: 'dev0', iova: 0, access: 'fly' }, 'BAD_REQUEST'],
    ['bogus prot flag', ['POST', '/domains/dom-1/map', { iova: 0, paddr: 0x80000000, size: 4096, prot: ['rwx'] }], { op: 'map', did: 'dom-1', iova: 0, paddr: 0x80000000, size: 4096, prot: ['rwx'] }, 'BAD_REQUEST'],
    ['bogus fault mode', ['PATCH', '/smmus/smmu0/contexts/0', { faultMode: 'maybe' }], { op: 'context-config', smmu: 'smmu0', ctx: '0', faultMode: 'maybe' }, 'BAD_REQUEST'],
    ['bogus DMA direction', ['POST', '/devices/dev1/dma/map', { paddr: 0x80000000, size: 4096, dir: 'sideways' }], { op: 'dma-map', device: 'dev1', paddr: 0x80000000, size: 4096, dir: 'sideways' }, 'BAD_REQUEST'],
    ['a 2^30-byte access', ['POST', '/devices/dev0/access', { iova: 0, access: 'read', size: 2 ** 30 }], { op: 'access', device: 'dev0', iova: 0, access: 'read', size: 2 ** 30 }, 'BAD_REQUEST'],
    ['an unknown field', ['POST', '/domains/dom-1/unmap', { iova: 0, size: 4096, force: true }], { op: 'unmap', did: 'dom-1', iova: 0, size: 4096, force: true }, 'BAD_REQUEST'],
    ['an unknown op', null, { op: 'format-disk' }, 'BAD_REQUEST'],
    ['not an object', null, 'map', 'BAD_REQUEST'],
    ['dmaLimit past 32 bits', ['PATCH', '/devices/dev1/dma', { dmaLimit: 2 ** 32 }], { op: 'dma-config', device: 'dev1', dmaLimit: 2 ** 32 }, 'OUT_OF_RANGE'],
    ['stream: item count disagrees with lengths', null, { op: 'stream', device: 'dev0', sop: 4, priv: false, mid: 0, iovas: 'AAAAAAAAAAA=', lengths: 'BAAAAA==' }, 'BAD_REQUEST'],
    ['stream: write data shorter than its lengths', null, { op: 'stream', device: 'dev0', sop: 5, priv: false, mid: 0, iovas: 'AAAAAA==', lengths: 'CAAAAA==', data: 'AAAA' }, 'BAD_REQUEST'],
    ['stream: no items', null, { op: 'stream', device: 'dev0', sop: 1, priv: false, mid: 0, iovas: '' }, 'BAD_REQUEST'],
    ['stream: bogus opcode', null, { op: 'stream', device: 'dev0', sop: 99, priv: false, mid: 0, iovas: 'AAAAAA==' }, 'BAD_REQUEST'],
  ];

  for (const [name, http, cmd, code] of cases) {
    it(`${name}: ${code} from the trace${http ? ' and from HTTP' : ''}, no session made`, async () => {
      const n = await sessions(c.app);
      // dom-1 exists in the replayed session and in the HTTP one: the refusal must come from the command itself.
      const trace = await traceOf(c, [{ op: 'domain-alloc' }, cmd]);
      const r = await replay(c.app, trace);
      expect(r.status, JSON.stringify(r.body)).toBe(code === 'PAYLOAD_TOO_LARGE' ? 413 : 400);
      expect(r.body.error.code).toBe(code);
      expect(r.body.error.details.record).toBe(2);
      expect(await sessions(c.app)).toBe(n);
      if (http) {
        if ((await c.call('GET', '/domains')).body.length === 0) await c.call('POST', '/domains', {});
        const before = (await c.call('GET', '/')).body.revision;
        const [method, url, body] = http;
        const res = body === null
          ? await c.app.inject({ method: 'PUT', url: `/v1/sessions/${c.sid}${url}`, headers: { authorization: `Bearer ${c.token}`, 'content-type': 'application/octet-stream' }, payload: Buffer.from((cmd as { data: string }).data, 'base64') })
          : await c.app.inject({ method: method as 'POST', url: `/v1/sessions/${c.sid}${url}`, headers: { authorization: `Bearer ${c.token}` }, payload: body as object });
        expect(res.json().error.code, `${method} ${url}`).toBe(code);
        expect((await c.call('GET', '/')).body.revision).toBe(before);
      }
    });
  }

  it('a refused dma-config creates no DMA domain (item 19: jpegd_src, dmaLimit 2^32)', async () => {
    const m = await client('msm8x60');
    const r = await m.call('PATCH', '/devices/jpegd_src/dma', { dmaLimit: 4294967296 });
    expect(r.status).toBe(400);
    expect(r.body.error.code).toBe('OUT_OF_RANGE');
    expect((await m.call('GET', '/domains')).body).toEqual([]);
    expect((await m.call('GET', '/devices/jpegd_src/dma')).body.domain).toBe(null);
    expect((await m.call('GET', '/smmus/jpegd/contexts/jpegd_src')).body.domain).toBe(null);
    expect((await m.call('GET', '/')).body.revision).toBe(0);
    await m.app.close();
  });
});

describe('one gate: the library entry point', () => {
  it('Session.run refuses a malformed command before touching anything, whoever calls it', () => {
    const s = new Session({ id: 'g', name: 'g', profile: TINY, limits: { maxBatchOps: 4 } });
    const before = JSON.stringify(s.snapshot());
    const bad: unknown[] = [
      { op: 'memory-write', paddr: 2 ** 40, data: 'AAAA' },
      { op: 'memory-write', paddr: 0x80000000, data: '' },
      { op: 'access-batch', device: 'dev0', access: 'read', iovas: [0, 0, 0, 0, 0] },
      { op: 'map', did: 'dom-1', iova: '0x1000', paddr: 0, size: 4096, prot: ['read'] },
      { op: 'stream', device: 'dev0', sop: 6, priv: false, mid: 0, iovas: 'AAA=' },
      { op: 'resume', smmu: 'smmu0', ctx: '0', stall: 'stall-1', action: 'explode' },
    ];
    for (const cmd of bad) {
      expect(() => s.run(null, cmd as never), JSON.stringify(cmd)).toThrow(IommuError);
    }
    expect(JSON.stringify(s.snapshot())).toBe(before);
    expect(s.revision).toBe(0);
    s.close();
  });

  it('a journal record that fails the gate stops that restore; valid records replay as before', () => {
    const s = new Session({ id: 'g', name: 'g', profile: MSM8X60 });
    s.replay([{ seq: 1, time: 't', by: null, cmd: { op: 'memory-write', paddr: 0x40000000, data: 'aGk=' } }]);
    expect(Buffer.from(s.soc.mem.readBytes(0x40000000, 2)).toString()).toBe('hi');
    expect(() => s.replay([{ seq: 2, time: 't', by: null, cmd: { op: 'memory-write', paddr: 2 ** 40, data: 'aGk=' } }])).toThrow(/not RAM/);
    s.close();
  });
});
