// HEALTHCHECK probe: asks /health on the port the daemon was started with. The port comes from the daemon's own
// command line (`--port N` / `--port=N`, PID 1 in the container), then PORT, then 8080: the order iommud itself
// uses, so `docker run iommud --port 9000` stays healthy.
import { readFileSync } from 'node:fs';
import { pathToFileURL } from 'node:url';

/** The daemon's port from its argv (NUL-separated /proc cmdline split into words) and environment. */
export function probePort(args, env) {
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--port' && args[i + 1] !== undefined) return args[i + 1];
    if (args[i].startsWith('--port=')) return args[i].slice('--port='.length);
  }
  return env.PORT || '8080';
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  let args = [];
  try {
    args = readFileSync(process.env.IOMMUD_PID1_CMDLINE ?? '/proc/1/cmdline', 'utf8').split('\0');
  } catch {
    // no /proc: the environment decides
  }
  fetch(`http://127.0.0.1:${probePort(args, process.env)}/health`, { signal: AbortSignal.timeout(2500) }).then(
    (r) => process.exit(r.ok ? 0 : 1),
    () => process.exit(1),
  );
}
