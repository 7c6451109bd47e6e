import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ERROR_STATUS, ERRORS, IommuError, fail, refusal, type ErrorName, type ErrorParams } from '../../src/errors.js';

const repo = join(import.meta.dirname, '..', '..');
/** The contract this build implements, kept in the repository so a clean clone (CI) checks against it too. */
const contract = readFileSync(join(repo, 'docs', 'API.md'), 'utf8');

/** `| CODE | status | when |` rows of the contract's error table, and the codes its later sections give with a status. */
function contractCodes(md: string): Map<string, number> {
  const codes = new Map<string, number>();
  for (const m of md.matchAll(/^\| `([A-Z_]+)` \| (\d{3}) \|/gm)) codes.set(m[1]!, Number(m[2]));
  for (const m of md.matchAll(/(\d{3}) \{"error": \{"code": "([A-Z_]+)"/g)) codes.set(m[2]!, Number(m[1]));
  return codes;
}

describe('the error table (src/errors.ts) is the contract’s', () => {
  it('the same codes with the same statuses as API.md', () => {
    const table = contractCodes(contract);
    expect(table.size).toBeGreaterThanOrEqual(18);
    expect(Object.fromEntries([...table].sort())).toEqual(Object.fromEntries(Object.entries(ERROR_STATUS).sort()));
  });

  it.each(['API.md', 'HARDWARE.md'])('docs/%s is the shared document, unchanged (where the shared copy exists)', (name) => {
    const shared = join(repo, '..', '..', 'shared', name);
    const alt = join(repo, '..', 'shared', name);
    const path = existsSync(shared) ? shared : existsSync(alt) ? alt : null;
    const ours = readFileSync(join(repo, 'docs', name), 'utf8');
    if (path) expect(ours).toBe(readFileSync(path, 'utf8'));
    else expect(ours.length).toBeGreaterThan(0);
  });
});

/** Parameters for every template: a template added without one is a compile error here. */
const SAMPLES: { [K in ErrorName]: ErrorParams<K> } = {
  missingToken: {},
  unknownToken: {},
  roleTooLow: { role: 'observer', needed: 'operator' },
  rateLimited: { perSecond: 10, retryAfterMs: 100 },
  invalidInput: { what: 'body', issues: [{ path: '/iova', message: 'Required' }], under: 'body' },
  contentTypeRefused: { contentType: 'text/xml' },
  charsetRefused: { charset: 'utf-16' },
  bodyTooLarge: {},
  headersTooLarge: {},
  requestTimeout: {},
  malformedHttp: {},
  noRoute: { method: 'GET', path: '/v2' },
  unknownProfile: { profile: 'msm9999', known: ['msm8x60', 'tiny'] },
  persistNeedsDataDir: {},
  memoryBodyNotBinary: {},
  tooManySubscribers: { limit: 64 },
  socketNotJson: {},
  badSocketMessage: {},
  resumeForbidden: {},
  resumeFailed: {},
  streamNotBinary: {},
  badFrame: { reason: 'frame shorter than its header' },
  batchNotDurable: {},
  batchTooLarge: { limit: 16, got: 17 },
  memoryIoTooLarge: { limit: 4194304, size: 4194305 },
  notRam: { paddr: 0x10000000, size: 16 },
  iovaRange: { iova: 0xfffff000, size: 0x2000, sizeMin: true },
  paddrRange: { paddr: 0xfffff000, size: 0x2000 },
  registerValue32: { value: 2 ** 32, op: 1 },
  notWords: { what: 'an item list' },
  valuePerOffset: {},
  lengthPerIova: {},
  emptyItem: {},
  streamItems: { count: 0, max: 65536 },
  streamTooLarge: { limit: 4194304, got: 4194305 },
  writeLength: { total: 8, dataLength: 4 },
  dataNotWrite: { access: 'read' },
  sizeNotData: { size: 8, dataLength: 4 },
  emptyData: {},
  emptyMemoryWrite: {},
  msmOnly: { what: 'inject-fault', smmu: 'mmu_dsp', family: 'omap' },
  unknownCommand: { op: 'bogus' },
  noSmmu: { smmu: 'vfe9' },
  noDevice: { device: 'nope' },
  noContext: { smmu: 'vfe', context: '7' },
  noMidRoute: { mid: 200 },
  offsetOutsideWindow: { offset: 0x100, window: '0x100-byte' },
  offsetUnaligned: { offset: 0x46 },
  offsetUnknown: { offset: 0x50 },
  offsetNoBank: { offset: 0x5000, banks: 2 },
  noStall: { stall: 'stall-9', here: true },
  stallRoom: { context: 'dev0', limit: 64, stalled: 60, items: 5 },
  stallsFull: { context: 3, limit: 64, stalled: 64 },
  ramBudgetSession: { limit: 1024, held: 512, bytes: 4096 },
  ramBudgetDaemon: { limit: 1024, held: 512, bytes: 4096 },
  iovaPast32: { iova: 2 ** 32 },
  notGart: { smmu: 'vfe' },
  gartAperture: { smmu: 'gart' },
  gartBusy: { smmu: 'gart', device: 'gr2d', domain: 'dom-2' },
  noDomain: { domain: 'dom-9' },
  tooManyDomains: { limit: 1024 },
  pgsizeUnknown: { size: 8192, pgsizes: [8192] },
  pgsizeUnsupported: { size: 65536, pgsizes: [65536], family: 'gart' },
  pgsizesEmpty: { pgsizes: [] },
  domainAttached: { domain: 'dom-1', attached: ['dev0'] },
  familyMismatch: { domain: 'dom-1', device: 'dsp', domainFamily: 'msm', deviceFamily: 'omap' },
  deviceBusy: { device: 'dev0', domain: 'dom-1' },
  dmaDomainTaken: { domain: 'dom-2' },
  oneDevicePerDomain: { family: 'omap', device: 'dsp2', domain: 'dom-1', attached: 'dsp' },
  notAttached: { device: 'dev1', domain: 'dom-1' },
  dmaManaged: { domain: 'dom-2' },
  tooManyPages: { limit: 4194304 },
  notMapped: { iova: 0x20000000 },
  dmaUnmanaged: { device: 'dev0', domain: 'dom-1' },
  directUnmanaged: { device: 'dev0', domain: 'dom-1' },
  dmaLimitRange: { dmaLimit: 0x100 },
  dmaModeBusy: { device: 'dev0', mappings: 2 },
  noSegments: {},
  dmaUnknownHandle: { report: { check: 'unknown-handle', dmaAddr: '0xfffff000' } },
  dmaSizeMismatch: { report: { check: 'size-mismatch', dmaAddr: '0xfffff000', mapped: 4096, size: 8192 } },
  dmaDirectionMismatch: { report: { check: 'direction-mismatch', dmaAddr: '0xfffff000', mapped: 'to-device', dir: 'from-device' } },
  dmaSyncDirection: { report: { check: 'direction-mismatch', dmaAddr: '0xfffff000', mapped: 'to-device', dir: 'from-device' }, for: 'cpu' },
  dmaSyncOutside: { report: { check: 'sync-outside-mapping', dmaAddr: '0xfffff000', offset: 0x10, size: 0x2000 }, start: 0xfffff010 },
  dmaOverlap: {
    report: { check: 'overlapping-mapping', paddr: '0x80000000', other: { device: 'dev1', dmaAddr: '0xffffe000', paddr: '0x80000000', size: 4096, dir: 'from-device' } },
    paddr: 0x80000000,
    size: 0x1000,
    other: { device: 'dev1', dmaAddr: 0xffffe000, dir: 'from-device' },
  },
  dmaDirectTaken: { report: { check: 'overlapping-mapping', paddr: '0x80000000', dmaAddr: '0x80000000' }, device: 'dev0' },
  noBouncePool: { device: 'dev0', paddr: 0x82000000, size: 0x1800, dmaLimit: 0x80ffffff },
  bounceFull: { slots: 3, dmaLimit: 0x80ffffff },
  iovaExhausted: { pages: 16, limit: 0xffffffff },
  noIovaRange: { iova: 0xfff00000 },
  bufferSize: { size: 0 },
  bufferAlign: { align: 0x3000 },
  noPool: { pool: 'ebi9' },
  poolsFull: { size: 0x100000, align: 0x100000 },
  noBuffer: { paddr: 0x80001000 },
  pageUnaligned: { iova: 0x1001, paddr: 0x80000000, size: 0x1000, minPageSize: 0x1000 },
  mapRange: { iova: 0xfffff000, paddr: 0x80000000, size: 0x2000 },
  protNoAccess: { prot: 8 },
  alreadyMapped: { iova: 0x180000 },
  nothingMapped: { iova: 0x10000000, size: 0x1000 },
  partialUnmap: { iova: 0x100000, pageSize: 0x100000 },
  gartOutsideAperture: { iova: 0x1000, size: 0x1000, aperture: { base: 0x58000000, size: 0x2000000 } },
  gartPaLimit: { paddr: 0x80000000, size: 0x1000 },
  pagetablePoolFull: { what: 'L2', pool: { base: 0x83e00000, size: 0x200000, used: 0x200000 } },
  badCpuCache: { field: 'coherent', coherent: ['gpu'] },
  bounceUnaligned: { paddr: 0x80100400, size: 0x800, slot: 2048 },
  bounceNotRam: { paddr: 0x10000000, size: 0x800, max: 67108864 },
  bounceOverPagetables: { base: 0x83e00000, size: 0x200000 },
  tooManySessions: { limit: 4096 },
  profileNoSmmu: {},
  profileSmmuTwice: { smmu: 'jpegd' },
  profileContextDigit: { context: '0dev' },
  profileContextTwice: { context: 'dev0' },
  profileApertureNotGart: { smmu: 'smmu0' },
  profileBusErrorNotOmap: { smmu: 'smmu0' },
  profileNoRam: {},
  profileRegion: { region: 'ram' },
  profileRegionsOverlap: { a: 'smi', b: 'ebi1' },
  profilePagetablePool: {},
  profileBanksRequired: { smmu: 'smmu0' },
  profileMsmBase: { smmu: 'smmu0' },
  profileMsmBanks: { smmu: 'smmu0' },
  profileBankRange: { context: 'dev0', index: 3 },
  profileBankTwice: { smmu: 'smmu0', bank: 1 },
  profileMsmMid: { context: 'dev0', mid: 256 },
  profileMidTwice: { smmu: 'smmu0', mid: 4 },
  profileOneBank: { smmu: 'mmu_ipu', family: 'omap' },
  profileWindowBase: { smmu: 'gart', window: 0x400 },
  profileContextIndex0: { context: 'ipu', family: 'omap' },
  profileMid: { context: 'host1x', mid: 0x40 },
  profileOmapContexts: { smmu: 'mmu_dsp' },
  profileGartMids: { context: 'host1x' },
  profileGartNoAperture: { smmu: 'gart' },
  profileGartAperture: { smmu: 'gart' },
  traceLineNotJson: { line: 3 },
  traceNoHeader: { format: 'iommud-trace' },
  traceTooNew: { version: 2, supported: 1 },
  traceRecordNotObject: {},
  traceRecordUnknown: {},
  traceRecordMalformed: { record: 7 },
  traceNotStorable: { reason: 'Maximum call stack size exceeded' },
  traceMemoryFull: { limit: 1024 },
  revisionFalls: { revision: 3, current: 5 },
  seqFalls: { seq: 3, current: 5 },
  snapshotMismatch: { field: '/soc/smmus' },
  notDurable: { reason: 'ENOSPC: no space left on device' },
  persistenceFailed: { reason: 'ENOENT: no such file or directory' },
  journalCreate: { reason: 'EACCES: permission denied' },
  journalWrite: { reason: 'ENOSPC: no space left on device' },
  journalRemove: { reason: 'EROFS: read-only file system' },
};

describe('message templates (ERRORS in src/errors.ts): every refusal message comes from one table', () => {
  it.each(Object.keys(ERRORS) as ErrorName[])('%s yields its code, the table\'s status and a whole message', (name) => {
    const e = (refusal as (n: ErrorName, p: object) => IommuError)(name, SAMPLES[name]);
    expect(e).toBeInstanceOf(IommuError);
    expect(e.code).toBe(ERRORS[name].code);
    expect(e.status).toBe(ERROR_STATUS[ERRORS[name].code]);
    expect(e.message.length).toBeGreaterThan(0);
    expect(e.message).not.toMatch(/undefined|NaN|\[object Object\]/);
    // Addresses leave as lower-case hex strings (API.md), in the message and in details.
    expect(JSON.stringify(e.toJSON())).not.toMatch(/"(iova|paddr|dmaAddr|dmaLimit)":\d/);
  });

  it('messages clients see are unchanged (exact values), details carry the parameters', () => {
    expect(refusal('notMapped', { iova: 0x20000000 }).toJSON()).toEqual({ error: { code: 'NOT_MAPPED', message: 'iova 0x20000000 is not mapped', details: { iova: '0x20000000' } } });
    expect(refusal('missingToken').toJSON()).toEqual({ error: { code: 'UNAUTHORIZED', message: 'missing bearer token' } });
    expect(refusal('offsetUnknown', { offset: 0x50 }).toJSON()).toEqual({ error: { code: 'BAD_REQUEST', message: 'offset 0x50: reserved or unknown register', details: { offset: '0x50' } } });
    expect(refusal('stallRoom', { context: 'dev0', limit: 64, stalled: 60, items: 5 }).message).toBe('context dev0 is in stall mode with room for 4 more stalled transactions; the request has 5');
    expect(refusal('dmaSizeMismatch', SAMPLES.dmaSizeMismatch).toJSON()).toEqual({
      error: { code: 'DMA_DEBUG', message: 'mapping at 0xfffff000 is 4096 bytes, unmap says 8192', details: { check: 'size-mismatch', dmaAddr: '0xfffff000', mapped: 4096, size: 8192 } },
    });
    expect(refusal('noBouncePool', SAMPLES.noBouncePool).details).toEqual({ reason: 'bounce', paddr: '0x82000000', size: 0x1800, dmaLimit: '0x80ffffff' });
    expect(() => fail('noDomain', { domain: 'dom-9' })).toThrow('no domain dom-9');
    // Profile and trace messages moved into the table word for word, with the details they had.
    expect(refusal('profileWindowBase', SAMPLES.profileWindowBase).toJSON()).toEqual({ error: { code: 'BAD_REQUEST', message: 'SMMU gart: base must be 0x400 aligned in 32-bit space', details: { smmu: 'gart' } } });
    expect(refusal('profileMsmMid', SAMPLES.profileMsmMid).toJSON()).toEqual({ error: { code: 'BAD_REQUEST', message: 'context dev0: MID 256 out of range 0..255' } });
    expect(refusal('traceNoHeader', SAMPLES.traceNoHeader).toJSON()).toEqual({ error: { code: 'BAD_REQUEST', message: 'a trace starts with a {"format":"iommud-trace","version":N,...} header line' } });
    expect(refusal('traceMemoryFull', SAMPLES.traceMemoryFull).details).toEqual({ reason: 'trace-memory', limit: 1024 });
    expect(refusal('revisionFalls', SAMPLES.revisionFalls).toJSON()).toEqual({ error: { code: 'BAD_REQUEST', message: 'revision only rises: 3 follows 5', details: { revision: 3, current: 5 } } });
    // A refusal seen from a batch names the op, keeps its code and details.
    expect(refusal('notMapped', { iova: 0x1000 }).within('op 2', { op: 2 }).toJSON()).toEqual({ error: { code: 'NOT_MAPPED', message: 'op 2: iova 0x1000 is not mapped', details: { iova: '0x1000', op: 2 } } });
  });

  it('every template is used somewhere in src/ (the table holds no dead entries)', () => {
    const src = readdirSync(join(repo, 'src'), { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.ts')).map((f) => readFileSync(join(repo, 'src', f), 'utf8')).join('\n');
    // Keys are unquoted in the table: a quoted name is a use.
    const unused = (Object.keys(ERRORS) as ErrorName[]).filter((n) => !src.includes(`'${n}'`));
    expect(unused).toEqual([]);
  });
});
