import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { client, type Client } from '../support/server.js';

/** Small refusals a hostile tester found outside the contract (issue 11, item 24), and hex addresses in details. */
describe('refusals in the contract shape', () => {
  let c: Client;
  let did: string;
  beforeAll(async () => {
    c = await client('tiny');
    did = (await c.call('POST', '/domains', {})).body.id;
    await c.call('POST', `/domains/${did}/attach`, { device: 'dev0' });
    await c.call('POST', `/domains/${did}/map`, { iova: '0x100000', paddr: '0x80000000', size: '0x100000', prot: ['read'] });
  });
  afterAll(() => c.app.close());

  it('request headers over the limit: 431 with {"error":{code,message}}', async () => {
    const url = new URL(await c.app.listen({ port: 0, host: '127.0.0.1' }));
    const answer = await new Promise<string>((resolve) => {
      const sock = connect(Number(url.port), url.hostname);
      let got = '';
      sock.on('data', (b) => (got += b.toString('latin1')));
      sock.on('close', () => resolve(got));
      sock.on('error', () => resolve(got));
      sock.write(`GET /health HTTP/1.1\r\nhost: ${url.host}\r\nx-big: ${'a'.repeat(20_000)}\r\n\r\n`);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    expect(JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4))).toEqual({ error: { code: 'PAYLOAD_TOO_LARGE', message: 'request headers are over the limit (16 KiB)' } });
  });

  it('HEAD is a read: an observer token may do it', async () => {
    const obs = (await c.call('POST', '/tokens', { role: 'observer' })).body.token;
    const r = await c.app.inject({ method: 'HEAD', url: `/v1/sessions/${c.sid}/domains`, headers: { authorization: `Bearer ${obs}` } });
    expect(r.statusCode).toBe(200);
  });

  it('clear-fault and MMIO values are 32-bit: 2^32 is refused and changes nothing', async () => {
    const rev = (await c.call('GET', '/')).body.revision;
    for (const value of [2 ** 32, '0x100000000']) {
      const r = await c.call('POST', '/smmus/smmu0/contexts/dev0/clear-fault', { value });
      expect([r.status, r.body.error]).toEqual([400, { code: 'OUT_OF_RANGE', message: 'a register value is 32 bits', details: { value: '0x100000000' } }]);
      expect((await c.call('PUT', '/smmus/smmu0/mmio/0x10', { value })).body.error).toMatchObject({ code: 'OUT_OF_RANGE', details: { value: '0x100000000' } });
    }
    expect((await c.call('POST', '/smmus/smmu0/contexts/dev0/clear-fault', { value: '0xffffffff' })).status).toBe(200);
    expect((await c.call('GET', '/')).body.revision).toBe(rev + 1);
  });

  it('an over-long hex string is refused by name, with no null in the details', async () => {
    const r = await c.call('POST', `/domains/${did}/map`, { iova: '0x' + '1'.repeat(300), paddr: '0x80000000', size: 4096, prot: ['read'] });
    expect([r.status, r.body.error.code]).toEqual([400, 'BAD_REQUEST']);
    expect(r.body.error.message).toContain('/iova');
    expect(r.body.error.message).toContain('at most 13 significant digits');
    expect(JSON.stringify(r.body)).not.toContain('null');
    // Leading zeros do not count; 2^32 itself is a range error of the operation.
    expect((await c.call('POST', `/domains/${did}/map`, { iova: '0x00000000000000000100000000', paddr: '0x80000000', size: 4096, prot: ['read'] })).body.error).toMatchObject({
      code: 'OUT_OF_RANGE',
      details: { iova: '0x100000000', paddr: '0x80000000', size: 4096 },
    });
  });

  it('JSON in a charset other than UTF-8 is 415; UTF-8 (any spelling) is fine', async () => {
    const send = (ct: string) => c.app.inject({ method: 'POST', url: `/v1/sessions/${c.sid}/domains`, headers: { authorization: `Bearer ${c.token}`, 'content-type': ct }, payload: '{}' });
    for (const ct of ['application/json; charset=utf-16', 'application/json;charset="latin1"', 'application/json; charset=']) {
      const r = await send(ct);
      expect([r.statusCode, r.json().error.code], ct).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    }
    for (const ct of ['application/json; charset=utf-8', 'application/json; charset=UTF8', 'application/json']) expect((await send(ct)).statusCode, ct).toBe(201);
  });

  it('error details give addresses as lower-case hex strings', async () => {
    expect((await c.call('POST', `/domains/${did}/map`, { iova: '0x180000', paddr: '0x80000000', size: 4096, prot: ['read'] })).body.error.details).toEqual({ iova: '0x180000' });
    expect((await c.call('POST', `/domains/${did}/unmap`, { iova: '0x10000000', size: 4096 })).body.error.details).toEqual({ iova: '0x10000000', size: 4096 });
    expect((await c.call('GET', `/domains/${did}/iova-to-phys/0x100000000`)).body.error.details).toEqual({ iova: '0x100000000' });
    expect((await c.call('GET', '/smmus/smmu0/mmio/0x46')).body.error.details).toEqual({ offset: '0x46' });
    expect((await c.call('DELETE', '/buffers/0x80400000')).body.error.details).toMatchObject({ paddr: '0x80400000' });
  });
});
