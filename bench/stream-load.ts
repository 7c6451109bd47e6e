/**
 * The iovas of ws-stream-translate-random (bench/http.ts), also replayed in process by scripts/stream-ops.ts: 16
 * batches of 4096 uniform random word addresses over a 64 MiB mapping at 0x60000000, cycled (65,536 lookups over
 * 16,384 pages before any batch repeats). A fixed LCG seed: every run translates the same addresses.
 */
export const RANDOM_BASE = 0x60000000;
export const RANDOM_SPAN = 64 * 1024 * 1024;

export function randomBatches(): Uint32Array[] {
  let seed = 0x9e3779b9;
  const rnd = () => ((seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0) / 2 ** 32);
  return Array.from({ length: 16 }, () => Uint32Array.from({ length: 4096 }, () => RANDOM_BASE + (Math.floor(rnd() * RANDOM_SPAN) & ~3)));
}
