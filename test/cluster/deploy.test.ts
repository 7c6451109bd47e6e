/**
 * The compose file, the Kubernetes manifests and the HAProxy configurations rendered from the one template agree
 * with the code (node ids, ports, paths) and with each other; the rendered files are current.
 */
import { execFileSync } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse, parseAllDocuments } from 'yaml';
import { COMPOSE, composeHaproxyCfg, DATA_DIR, K8S, k8sConfigMapYaml, NODE_PORT, nodeIdOfOrdinal, PROXY_PORT } from '../../src/cluster/deploy.js';
import { renderHaproxyConfig, renderTemplate } from '../../src/cluster/haproxy.js';
import { findHaproxy } from '../../src/cluster/launch.js';
import { isNodeId } from '../../src/cluster/node.js';
import { ERROR_STATUS } from '../../src/errors.js';

const read = (p: string) => readFileSync(p, 'utf8');
type Doc = { kind: string; metadata: { name: string; namespace?: string }; spec?: any; data?: Record<string, string> };
const k8sDocs: Doc[] = readdirSync(K8S.dir)
  .filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml')
  .flatMap((f) => parseAllDocuments(read(join(K8S.dir, f))).map((d) => d.toJS() as Doc));
const k8s = (kind: string, name: string) => {
  const d = k8sDocs.find((x) => x.kind === kind && x.metadata.name === name);
  if (!d) throw new Error(`no ${kind} ${name} in ${K8S.dir}`);
  return d;
};
const envOf = (container: { env: Array<{ name: string; value: string }> }) => Object.fromEntries(container.env.map((e) => [e.name, e.value]));

describe('HAProxy template', () => {
  it('the committed renderings are current (npm run cluster:render rewrites them)', () => {
    expect(read(COMPOSE.haproxyCfg)).toBe(composeHaproxyCfg());
    expect(read(K8S.configMapFile)).toBe(k8sConfigMapYaml());
  });

  it('every error the proxy answers itself is the contract JSON shape with the status of its code', () => {
    const cfg = renderHaproxyConfig({ bind: '127.0.0.1:8080', nodes: [{ id: 'n1', address: '127.0.0.1:9001' }] });
    const replies = [...cfg.matchAll(/(?:http-error|http-request return) status (\d+) content-type application\/json string '([^']*)'/g)];
    expect(replies.length).toBe(9);
    for (const [, status, body] of replies) {
      const { error } = JSON.parse(body!) as { error: { code: keyof typeof ERROR_STATUS; message: string; details?: unknown } };
      expect(Object.keys(error).every((k) => ['code', 'message', 'details'].includes(k))).toBe(true);
      // 502/504: a request in flight when its node died (API.md: "may get the proxy's 502 or 504 instead").
      if (status === '502' || status === '504') expect(error.code).toBe('UNAVAILABLE');
      else expect(ERROR_STATUS[error.code]).toBe(Number(status));
    }
    expect(cfg).toContain(`'{"error":{"code":"UNAVAILABLE","message":"node n1 is down: its sessions are unavailable until it is back","details":{"node":"n1"}}}' hdr Retry-After 2`);
    // The health check is the daemon's route, and it insists on the node's own id.
    expect(cfg).toContain('option httpchk GET /health\n');
    expect(cfg).toContain(`http-check expect string '"node":"n1"'\n`);
  });

  it('routes each node id to its own backend and an unknown prefix to 401; WebSockets get a tunnel timeout', () => {
    const cfg = renderHaproxyConfig({ bind: ':8080', nodes: ['n1', 'n2', 'n10'].map((id, i) => ({ id, address: `10.0.0.${i + 1}:8080` })) });
    expect(cfg.match(/^ {2}use_backend .*$/gm)).toEqual([
      '  use_backend node_n1 if session_path { var(txn.node) -m str n1 }',
      '  use_backend node_n2 if session_path { var(txn.node) -m str n2 }',
      '  use_backend node_n10 if session_path { var(txn.node) -m str n10 }',
      '  use_backend unknown_node if session_path',
    ]);
    expect(cfg.match(/^ {2}server .*$/gm)).toHaveLength(6);
    expect(cfg).toContain('  server n10 10.0.0.3:8080 check observe layer4 error-limit 1 on-error mark-down on-marked-down shutdown-sessions\n');
    expect(cfg).toMatch(/^ {2}timeout tunnel 1h$/m);
    expect(() => renderHaproxyConfig({ bind: ':1', nodes: [{ id: 'N1', address: 'a:1' }] })).toThrow('bad node id');
    expect(() => renderHaproxyConfig({ bind: ':1', nodes: [{ id: 'n1', address: 'a:1' }, { id: 'n1', address: 'b:1' }] })).toThrow('appears twice');
  });

  it('the template language: sections repeat, conditions drop, a missing value is an error', () => {
    expect(renderTemplate('a\n{{#xs}}\n- {{v}}\n{{/xs}}\n{{#no}}\ngone\n{{/no}}\nz\n', { xs: [{ v: 1 }, { v: 2 }], no: false })).toBe('a\n- 1\n- 2\nz\n');
    expect(() => renderTemplate('{{missing}}', {})).toThrow('no value for {{missing}}');
  });

  it.runIf(findHaproxy() !== null || process.env.IOMMUD_REQUIRE_HAPROXY === '1')('haproxy -c accepts the compose and Kubernetes renderings', () => {
    const dir = mkdtempSync(join(tmpdir(), 'iommud-haproxy-'));
    try {
      for (const [name, cfg] of [['compose.cfg', composeHaproxyCfg()], ['k8s.cfg', k8s('ConfigMap', K8S.configMap).data!['haproxy.cfg']!]] as const) {
        writeFileSync(join(dir, name), cfg);
        // Names that do not resolve here only warn: the servers wait for DNS (init-addr ... none).
        expect(execFileSync(findHaproxy()!, ['-c', '-f', join(dir, name)], { stdio: 'pipe' }).toString()).toContain('Configuration file is valid');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe('docker/compose.cluster.yaml', () => {
  const compose = parse(read(COMPOSE.file), { merge: true }) as { services: Record<string, any>; volumes: Record<string, unknown> };
  const dockerfile = read('Dockerfile');

  it('runs HAProxy and nodes n1..n3, each with its node id, port, data dir and its own volume', () => {
    expect(Object.keys(compose.services).sort()).toEqual(['proxy', ...COMPOSE.nodes].sort());
    const volumes = new Set<string>();
    for (const id of COMPOSE.nodes) {
      const svc = compose.services[id];
      expect(isNodeId(id)).toBe(true);
      expect(svc.environment).toMatchObject({ IOMMUD_NODE_ID: id, PORT: String(NODE_PORT), IOMMUD_DATA_DIR: DATA_DIR, HOST: '0.0.0.0' });
      expect(svc.volumes).toEqual([`${id}-data:${DATA_DIR}`]);
      expect(existsSync(join(dirname(COMPOSE.file), svc.build.context, svc.build.dockerfile))).toBe(true);
      volumes.add(`${id}-data`);
    }
    expect(Object.keys(compose.volumes).sort()).toEqual([...volumes].sort());
    // The image's own defaults say the same.
    expect(dockerfile).toContain(`PORT=${NODE_PORT}`);
    expect(dockerfile).toContain(`IOMMUD_DATA_DIR=${DATA_DIR}`);
    expect(dockerfile).toMatch(new RegExp(`^EXPOSE ${NODE_PORT}$`, 'm'));
  });

  it('the proxy mounts the rendered haproxy.cfg, publishes its bind port and reaches every node by service name', () => {
    const proxy = compose.services.proxy;
    expect(proxy.volumes).toEqual([`./${COMPOSE.haproxyCfg.split('/').pop()}:/usr/local/etc/haproxy/haproxy.cfg:ro`]);
    expect(existsSync(join(dirname(COMPOSE.file), 'haproxy.cfg'))).toBe(true);
    expect(proxy.ports).toEqual([`127.0.0.1:${PROXY_PORT}:${PROXY_PORT}`]);
    expect(proxy.depends_on).toEqual(COMPOSE.nodes);
    const cfg = read(COMPOSE.haproxyCfg);
    expect(cfg).toContain(`\n  bind :${PROXY_PORT}\n`);
    for (const id of COMPOSE.nodes) expect(cfg).toContain(`\n  server ${id} ${id}:${NODE_PORT} check `);
    expect(cfg).toContain(`\n  nameserver ns1 ${COMPOSE.nameserver}\n`);
  });
});

describe('deploy/k8s', () => {
  const sts = k8s('StatefulSet', K8S.statefulSet);
  const node = sts.spec.template.spec.containers[0];

  it('every manifest is in the namespace; kustomization lists every file', () => {
    expect(k8s('Namespace', K8S.namespace)).toBeDefined();
    for (const d of k8sDocs.filter((x) => x.kind !== 'Namespace')) expect(d.metadata.namespace).toBe(K8S.namespace);
    const kust = parse(read(join(K8S.dir, 'kustomization.yaml'))) as { resources: string[] };
    expect(kust.resources.sort()).toEqual(readdirSync(K8S.dir).filter((f) => f.endsWith('.yaml') && f !== 'kustomization.yaml').sort());
  });

  it('a StatefulSet of nodes behind a headless Service; the volume claim holds the data dir', () => {
    expect(sts.spec.replicas).toBe(K8S.replicas);
    expect(sts.spec.serviceName).toBe(K8S.service);
    const svc = k8s('Service', K8S.service);
    expect(svc.spec.clusterIP).toBe('None');
    expect(svc.spec.selector).toEqual(sts.spec.template.metadata.labels);
    expect(envOf(node)).toMatchObject({ PORT: String(NODE_PORT), IOMMUD_DATA_DIR: DATA_DIR, HOST: '0.0.0.0' });
    expect(node.ports).toEqual([{ name: 'http', containerPort: NODE_PORT }]);
    expect(node.readinessProbe.httpGet.path).toBe('/health');
    const claim = sts.spec.volumeClaimTemplates[0].metadata.name;
    expect(node.volumeMounts).toEqual([{ name: claim, mountPath: DATA_DIR }]);
  });

  it("pod ordinal k runs node id n(k+1): the container's own shell line, evaluated", () => {
    const [sh, flag, line] = node.command as string[];
    const entry = JSON.parse(read('package.json')).bin.iommud as string;
    expect(line).toContain(`exec node ${entry} --node-id `);
    for (let k = 0; k < K8S.replicas; k++) {
      const out = execFileSync(sh!, [flag!, line!.replace(`exec node ${entry}`, 'exec echo')], { env: { HOSTNAME: `${K8S.statefulSet}-${k}` } }).toString();
      expect(out).toBe(`--node-id ${nodeIdOfOrdinal(k)}\n`);
    }
  });

  it("HAProxy's ConfigMap routes node nK to <pod>.<service> of pod ordinal K-1; the proxy mounts it and serves its port", () => {
    const cfg = k8s('ConfigMap', K8S.configMap).data!['haproxy.cfg']!;
    for (let k = 0; k < K8S.replicas; k++) {
      expect(cfg).toContain(`\n  server ${nodeIdOfOrdinal(k)} ${K8S.statefulSet}-${k}.${K8S.service}.${K8S.namespace}.svc.cluster.local:${NODE_PORT} check `);
    }
    expect(cfg.match(/^ {2}use_backend node_/gm)).toHaveLength(K8S.replicas);
    expect(cfg).toContain(`\n  bind :${PROXY_PORT}\n`);
    expect(cfg).toContain('\n  parse-resolv-conf\n');
    const proxy = k8s('Deployment', 'iommud-proxy').spec.template.spec;
    const volume = proxy.volumes.find((v: { configMap?: { name: string } }) => v.configMap?.name === K8S.configMap);
    expect(proxy.containers[0].volumeMounts).toEqual([{ name: volume.name, mountPath: '/usr/local/etc/haproxy', readOnly: true }]);
    expect(proxy.containers[0].ports).toEqual([{ name: 'http', containerPort: PROXY_PORT }]);
    expect(k8s('Service', 'iommud-proxy').spec.ports).toEqual([{ name: 'http', port: PROXY_PORT, targetPort: 'http' }]);
  });
});
