/** What `npm run cluster`, its test and its benchmark share: finding haproxy, starting a node, waiting for health. */
import { accessSync, constants } from 'node:fs';
import { createServer } from 'node:net';
import { delimiter, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export const HAPROXY_INSTALL_HINT = 'install it: apt-get install haproxy (Debian/Ubuntu; HAProxy 2.2 or newer), or set IOMMUD_HAPROXY to its path';

/**
 * The system's haproxy: $IOMMUD_HAPROXY if set, else the first on PATH or in the sbin directories (Debian installs
 * /usr/sbin/haproxy, which is not on a normal user's PATH). Null when there is none.
 */
export function findHaproxy(env: NodeJS.ProcessEnv = process.env): string | null {
  const executable = (p: string) => {
    try {
      accessSync(p, constants.X_OK);
      return true;
    } catch {
      return false;
    }
  };
  if (env.IOMMUD_HAPROXY) return executable(env.IOMMUD_HAPROXY) ? env.IOMMUD_HAPROXY : null;
  const dirs = [...(env.PATH ?? '').split(delimiter).filter(Boolean), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const d of dirs) if (executable(join(d, 'haproxy'))) return join(d, 'haproxy');
  return null;
}

export interface NodeSpec {
  id: string;
  port: number;
  /** Journals directory, or null: in memory. */
  dataDir: string | null;
}

/**
 * The command that runs one node: node itself (so its pid is the daemon's, not a wrapper's) on the built entry when
 * this runs from dist/, on the TypeScript source through tsx's loader otherwise.
 */
export function nodeCommand(spec: NodeSpec): { command: string; args: string[] } {
  const fromSource = import.meta.url.endsWith('.ts');
  const entry = fileURLToPath(new URL(fromSource ? '../cli/iommud.ts' : '../cli/iommud.js', import.meta.url));
  const args = [...(fromSource ? ['--import', import.meta.resolve('tsx')] : []), entry, '--node-id', spec.id, '--host', '127.0.0.1', '--port', String(spec.port)];
  if (spec.dataDir) args.push('--data-dir', spec.dataDir);
  return { command: process.execPath, args };
}

/** A TCP port free on loopback right now (the kernel's pick). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const port = (srv.address() as { port: number }).port;
      srv.close(() => resolve(port));
    });
  });
}

/** GET url until it answers with `status` (any error or other status: try again every 100 ms); false if `stop()`. */
export async function waitFor(url: string, status: number, stop: () => boolean): Promise<boolean> {
  for (;;) {
    if (stop()) return false;
    try {
      const res = await fetch(url, { signal: AbortSignal.timeout(2000) });
      await res.arrayBuffer();
      if (res.status === status) return true;
    } catch {
      // not listening yet
    }
    await new Promise((r) => setTimeout(r, 100));
  }
}
