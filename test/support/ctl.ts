import { execFile, spawn } from 'node:child_process';
import { builtCli } from './built.js';

export interface CtlResult {
  code: number;
  stdout: string;
  stderr: string;
}

/**
 * Runs the built iommuctl (what users run) against a daemon: `url()` is read at each call, so a runner made at
 * module level works once the daemon of a beforeAll listens. No config file is read unless `env` names one.
 */
export function ctlRunner(url: () => string): {
  ctl(args: string[], env?: Record<string, string>): Promise<CtlResult>;
  json(args: string[], env?: Record<string, string>): Promise<any>;
  watch(args: string[], env?: Record<string, string>): { subscribed: Promise<string>; done: Promise<CtlResult> };
} {
  const bin = builtCli('iommuctl');
  /** `iommuctl watch ...` running: `subscribed` is its first stderr line (the notice once the daemon accepted it). */
  const watch = (args: string[], env: Record<string, string> = {}) => {
    const p = spawn(process.execPath, [bin, ...args], { env: { ...process.env, IOMMUD_URL: url(), IOMMUD_CONFIG: '/nonexistent/iommud-config.json', ...env } });
    let stdout = '';
    let stderr = '';
    p.stdout.on('data', (b: Buffer) => (stdout += b.toString()));
    const subscribed = new Promise<string>((resolve) => p.stderr.on('data', (b: Buffer) => ((stderr += b.toString()), stderr.includes('\n') && resolve(stderr))));
    const done = new Promise<CtlResult>((resolve) => p.on('close', (code) => resolve({ code: code ?? 1, stdout, stderr })));
    return { subscribed, done };
  };
  const ctl = (args: string[], env: Record<string, string> = {}) =>
    new Promise<CtlResult>((resolve) => {
      execFile(process.execPath, [bin, ...args], { env: { ...process.env, IOMMUD_URL: url(), IOMMUD_CONFIG: '/nonexistent/iommud-config.json', ...env } }, (err, stdout, stderr) =>
        resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
      );
    });
  const json = async (args: string[], env: Record<string, string> = {}) => {
    const r = await ctl(['--json', ...args], env);
    if (r.code !== 0) throw new Error(`iommuctl ${args.join(' ')}: exit ${r.code}: ${r.stdout}${r.stderr}`);
    return JSON.parse(r.stdout);
  };
  return { ctl, json, watch };
}
