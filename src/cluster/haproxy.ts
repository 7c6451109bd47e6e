/**
 * The HAProxy configuration of a cluster, rendered from the one template in the repository
 * (deploy/haproxy/haproxy.cfg.template) for `npm run cluster`, docker/haproxy.cfg and the Kubernetes ConfigMap.
 */
import { existsSync, readFileSync } from 'node:fs';
import { isNodeId } from './node.js';

export interface ClusterNode {
  /** Node id (the session id prefix). */
  id: string;
  /** host:port where HAProxy reaches it. */
  address: string;
}

export interface HaproxyOptions {
  /** The frontend's bind address, `host:port` (`:8080` for every interface). */
  bind: string;
  nodes: readonly ClusterNode[];
  /**
   * Node addresses are DNS names that change address when a node restarts (compose, Kubernetes): re-resolve them at
   * run time through these nameservers, or through /etc/resolv.conf's (`'resolv.conf'`).
   */
  dns?: { nameservers: readonly string[] } | 'resolv.conf';
}

/** The template's path: found from both src/cluster and dist/src/cluster. */
export function templatePath(): string {
  for (const rel of ['../../deploy/haproxy/haproxy.cfg.template', '../../../deploy/haproxy/haproxy.cfg.template']) {
    const url = new URL(rel, import.meta.url);
    if (existsSync(url)) return url.pathname;
  }
  throw new Error('deploy/haproxy/haproxy.cfg.template not found');
}

type Scope = Record<string, unknown>;

/**
 * A small subset of mustache, enough for a config file: `{{name}}` substitutes (a missing name is an error, so a
 * typo cannot render silently), `{{#name}}` … `{{/name}}` on lines of their own repeats the block for each item of
 * an array (its fields in scope), keeps it once for any other truthy value, and drops it otherwise.
 */
export function renderTemplate(template: string, scope: Scope): string {
  const sections = /^\{\{#(\w+)\}\}\n([\s\S]*?)^\{\{\/\1\}\}\n/gm;
  const expanded = template.replace(sections, (_m, name: string, body: string) => {
    const v = scope[name];
    if (Array.isArray(v)) return v.map((item) => renderTemplate(body, { ...scope, ...(item as Scope) })).join('');
    return v ? renderTemplate(body, scope) : '';
  });
  return expanded.replace(/\{\{(\w+)\}\}/g, (_m, name: string) => {
    const v = scope[name];
    if (v === undefined || v === null || typeof v === 'object') throw new Error(`template: no value for {{${name}}}`);
    return String(v);
  });
}

export function renderHaproxyConfig(opts: HaproxyOptions, template = readFileSync(templatePath(), 'utf8')): string {
  if (opts.nodes.length === 0) throw new Error('a cluster has at least one node');
  const seen = new Set<string>();
  for (const n of opts.nodes) {
    if (!isNodeId(n.id)) throw new Error(`bad node id ${JSON.stringify(n.id)}`);
    if (seen.has(n.id)) throw new Error(`node id ${n.id} appears twice`);
    seen.add(n.id);
    if (!/^[A-Za-z0-9.-]+:\d+$/.test(n.address)) throw new Error(`bad node address ${JSON.stringify(n.address)} (host:port)`);
  }
  const dns = opts.dns === 'resolv.conf' ? ['  parse-resolv-conf'] : (opts.dns?.nameservers ?? []).map((ns, i) => `  nameserver ns${i + 1} ${ns}`);
  return renderTemplate(template, {
    bind: opts.bind,
    nodes: opts.nodes,
    dns: dns.length > 0,
    dnsLines: dns.join('\n'),
    // With DNS: start even before a node's name resolves, and follow its address when it restarts elsewhere.
    serverOptions: dns.length > 0 ? ' resolvers dns resolve-prefer ipv4 init-addr last,libc,none' : '',
  });
}
