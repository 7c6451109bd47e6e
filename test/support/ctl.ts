import { execFile } from 'node:child_process';
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
export function ctlRunner(url: () => string): { ctl(args: string[], env?: Record<string, string>): Promise<CtlResult>; json(args: string[], env?: Record<string, string>): Promise<any> } {
  const bin = builtCli('iommuctl');
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
  return { ctl, json };
}
