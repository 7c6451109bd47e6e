/**
 * The TypeScript SDK's side of clients/python/bench/stream_throughput.py: translations/s over one stream
 * connection on an existing session, with the same batches as the Python client's measurement.
 *
 *   npx tsx bench/stream-sdk.ts URL SESSION TOKEN DEVICE IOVA BATCH BATCHES IN_FLIGHT
 * prints one JSON line {"translationsPerSecond": N}.
 */
import { IommudClient } from '../src/client/index.js';

const [url, sid, token, device, iovaArg, batchArg, batchesArg, inFlightArg] = process.argv.slice(2);
if (!inFlightArg) {
  process.stderr.write('usage: stream-sdk.ts URL SESSION TOKEN DEVICE IOVA BATCH BATCHES IN_FLIGHT\n');
  process.exit(2);
}
const iova = Number(iovaArg);
const batch = Number(batchArg);
const batches = Number(batchesArg);
const s = new IommudClient({ url: url! }).session(sid!, token);
const st = await s.stream(device!, { maxInFlight: Number(inFlightArg) });
const iovas = Uint32Array.from({ length: batch }, (_, i) => iova + (i % 256) * 0x1000);
await st.translate('read', iovas);
const t0 = performance.now();
const results = await Promise.all(Array.from({ length: batches }, () => st.translate('read', iovas)));
const elapsed = (performance.now() - t0) / 1000;
st.close();
if (!results.every((r) => r[r.length - 1]!.status === 'ok')) throw new Error('a translation faulted');
process.stdout.write(JSON.stringify({ translationsPerSecond: Math.round((batch * batches) / elapsed) }) + '\n');
