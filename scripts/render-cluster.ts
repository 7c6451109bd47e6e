// npm run cluster:render — rewrites the HAProxy configurations rendered from deploy/haproxy/haproxy.cfg.template
// (test/cluster/deploy.test.ts fails when they are stale).
import { writeFileSync } from 'node:fs';
import { COMPOSE, composeHaproxyCfg, K8S, k8sConfigMapYaml } from '../src/cluster/deploy.js';

writeFileSync(COMPOSE.haproxyCfg, composeHaproxyCfg());
writeFileSync(K8S.configMapFile, k8sConfigMapYaml());
process.stdout.write(`wrote ${COMPOSE.haproxyCfg} and ${K8S.configMapFile}\n`);
