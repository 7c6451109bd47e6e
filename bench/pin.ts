/**
 * CPU pinning for the HTTP and WebSocket benchmarks: the daemon on one core, the load generator (this process,
 * every thread) on another, with taskset from util-linux, so neither steals the other's core. Where taskset or a
 * second core is missing the benchmarks still run, unpinned, and say so.
 */
import { spawnSync } from 'node:child_process';
import { availableParallelism } from 'node:os';

export interface Pinning {
  /** True when the daemon and the load generator each have a core of their own. */
  pinned: boolean;
  daemonCpu: number | null;
  loadCpu: number | null;
  /** What was done, as printed. */
  note: string;
}

function detect(): Pinning {
  const cpus = availableParallelism();
  const probe = spawnSync('taskset', ['-V'], { encoding: 'utf8' });
  if (probe.error || probe.status !== 0) {
    return { pinned: false, daemonCpu: null, loadCpu: null, note: 'WARNING: taskset (util-linux) not found: daemon and load generator are NOT pinned and share the cores; figures are less stable (apt-get install util-linux)' };
  }
  if (cpus < 2) {
    return { pinned: false, daemonCpu: null, loadCpu: null, note: `WARNING: ${cpus} CPU available: daemon and load generator share it; figures are not comparable with a pinned run` };
  }
  // -a: every thread of this process (libuv's pool, autocannon's timers) goes to the load generator's core.
  const self = spawnSync('taskset', ['-a', '-p', '-c', '1', String(process.pid)], { encoding: 'utf8' });
  if (self.status !== 0) {
    return { pinned: false, daemonCpu: null, loadCpu: null, note: `WARNING: taskset could not pin the load generator (${(self.stderr || '').trim()}): NOT pinned` };
  }
  return { pinned: true, daemonCpu: 0, loadCpu: 1, note: `taskset: daemon pinned to CPU 0, load generator (the benchmark process) to CPU 1 (${cpus} CPUs)` };
}

let cached: Pinning | null = null;

/** Pins this process (once) and says so on stderr. */
export function pinning(): Pinning {
  if (!cached) {
    cached = detect();
    process.stderr.write(`bench: ${cached.note}\n`);
  }
  return cached;
}

/** The command that starts a daemon process on its core: [command, ...args]. */
export function daemonCommand(args: string[]): [string, string[]] {
  const p = pinning();
  return p.pinned ? ['taskset', ['-c', String(p.daemonCpu), process.execPath, ...args]] : [process.execPath, args];
}
