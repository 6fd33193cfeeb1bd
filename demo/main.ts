#!/usr/bin/env node
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { sha256Hex } from '../common/digest';
import { AdminClient } from '../ctl/admin-client';
import { formatStatusTable } from '../ctl/status-table';
import { createCertbotTree, renewCertbotTree } from '../test/support/certbot-tree';
import {
  createWildcardSet,
  issueLeaf,
  type CertbotPemSet,
  type IssuedCertificate,
} from '../test/support/pki';
import { freePort, startProcess, waitFor, type ManagedProcess } from '../test/support/processes';
import {
  agentTransportArgs,
  clientTransport,
  createTransportFixture,
  serverTransportConfig,
  type TransportFixture,
} from '../test/support/transport-fixture';

/**
 * The first thing a newcomer runs: a certbot-shaped tree, a real server and three real agents on
 * loopback, a certbot-style renewal, and the fleet table showing every node on the new version.
 * Everything runs over TLS with an agent and an admin token, made in the temp folder. Needs
 * nothing but Node (no Docker, no openssl). `--keep` leaves the temp folder for a look; `--stay`
 * also leaves the fleet running for certsyncctl (see the README's "Operator tasks").
 */
const DOMAIN = 'example.test';
const NODE_COUNT = 3;
const BUNDLE_NAME = DOMAIN.replace(/\./g, '-');
const TARGETS = { fullchain: `STAR.${DOMAIN}.full.crt`, privkey: `STAR.${DOMAIN}_key.pem` };

async function main(): Promise<void> {
  const stay = process.argv.includes('--stay');
  const keep = stay || process.argv.includes('--keep');
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-demo-'));
  const processes: ManagedProcess[] = [];
  const say = (line: string) => process.stdout.write(`${line}\n`);

  try {
    say(`certsync demo in ${workDir}`);
    const letsencrypt = path.join(workDir, 'letsencrypt');
    const first = await createWildcardSet({ domain: DOMAIN });
    const { liveDir } = await createCertbotTree(letsencrypt, DOMAIN, first.pems);
    say(`1. certbot-shaped tree with a wildcard certificate for *.${DOMAIN}: ${liveDir}`);

    const secrets = await createTransportFixture(path.join(workDir, 'secrets'));
    say(
      '2. a transport CA, a server certificate for localhost, an agent token and an admin token: secrets/',
    );

    const port = await freePort();
    const metricsPort = await freePort();
    const configFile = path.join(workDir, 'certsync.yml');
    await fs.writeFile(
      configFile,
      serverConfig(port, metricsPort, path.join(workDir, 'state'), liveDir, secrets),
    );
    processes.push(
      await startProcess('server', ['--config', configFile], path.join(workDir, 'logs/server.log')),
    );
    const admin = new AdminClient(
      `127.0.0.1:${port}`,
      clientTransport(secrets, 'tls', 'admin'),
      2_000,
    );
    await waitFor('the server to accept version 1', async () =>
      (await admin.getStatus()).bundles[0]?.currentVersion === 1 ? true : undefined,
    );
    say(
      `3. certsync-server on 127.0.0.1:${port} (TLS, tokens) accepted version 1 (log: logs/server.log)`,
    );

    const nodeDirs: string[] = [];
    for (let index = 1; index <= NODE_COUNT; index += 1) {
      const dir = path.join(workDir, 'nodes', `node-${index}`);
      await fs.mkdir(dir, { recursive: true });
      nodeDirs.push(dir);
      const args = ['--server', `127.0.0.1:${port}`, '--dir', dir, '--node-id', `node-${index}`];
      args.push(...agentTransportArgs(secrets, 'tls'));
      processes.push(
        await startProcess('agent', args, path.join(workDir, `logs/agent-${index}.log`)),
      );
    }
    await waitForConvergence(admin, 1);
    say(`4. ${NODE_COUNT} agents connected and wrote version 1 into nodes/node-1..${NODE_COUNT}`);

    const renewedLeaf = await issueLeaf(first.intermediate, {
      commonName: `*.${DOMAIN}`,
      dnsNames: [`*.${DOMAIN}`, DOMAIN],
    });
    const renewed: CertbotPemSet = {
      cert: renewedLeaf.certPem,
      chain: first.intermediate.certPem,
      fullchain: renewedLeaf.certPem + first.intermediate.certPem,
      privkey: renewedLeaf.keyPem,
    };
    await renewCertbotTree(letsencrypt, DOMAIN, renewed, { delayBetweenLinksMs: 20 });
    const renewedAt = Date.now();
    say('5. certbot-style renewal: archive/*2.pem written, live/ links swapped one by one');

    const status = await waitForConvergence(admin, 2);
    const elapsedMs = Date.now() - renewedAt;
    await checkNodeFiles(nodeDirs, renewed);
    say(
      `6. every node holds version 2 (${elapsedMs} ms after the last link swap); bytes and modes checked on disk\n`,
    );
    say(formatStatusTable(status));
    admin.close();

    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const metrics = await readDemoMetrics(metricsUrl);
    say(`\n7. the server's Prometheus metrics (${metricsUrl}):`);
    for (const line of metrics) say(`   ${line}`);
    if (stay) await stayForOperator(workDir, port, metricsUrl, secrets, first.intermediate, say);
  } finally {
    await Promise.all(processes.map((child) => child.stop()));
    if (keep) say(`\nkept ${workDir}`);
    else await fs.rm(workDir, { recursive: true, force: true });
  }
}

/**
 * `--stay`: leaves the fleet running for the README's operator walk-through. Writes the
 * certsyncctl environment and a next certificate to import, then waits for Ctrl-C.
 */
async function stayForOperator(
  workDir: string,
  port: number,
  metricsUrl: string,
  secrets: TransportFixture,
  intermediate: IssuedCertificate,
  say: (line: string) => void,
): Promise<void> {
  const next = await issueLeaf(intermediate, {
    commonName: `*.${DOMAIN}`,
    dnsNames: [`*.${DOMAIN}`, DOMAIN],
  });
  const nextDir = path.join(workDir, 'next');
  await fs.mkdir(nextDir, { mode: 0o700 });
  await fs.writeFile(path.join(nextDir, 'cert.pem'), next.certPem);
  await fs.writeFile(path.join(nextDir, 'privkey.pem'), next.keyPem, { mode: 0o600 });
  await fs.writeFile(path.join(nextDir, 'chain.pem'), intermediate.certPem);
  // certsyncctl on PATH for this shell, without a global install.
  const binDir = path.join(workDir, 'bin');
  await fs.mkdir(binDir);
  const ctlEntry = path.resolve(__dirname, '../ctl/main.js');
  await fs.writeFile(
    path.join(binDir, 'certsyncctl'),
    `#!/bin/sh\nexec node ${JSON.stringify(ctlEntry)} "$@"\n`,
    { mode: 0o755 },
  );
  const envFile = path.join(workDir, 'certsyncctl.env');
  const env = [
    `export DEMO=${workDir}`,
    `export PATH="${binDir}:$PATH"`,
    `export CERTSYNC_SERVER=127.0.0.1:${port}`,
    `export CERTSYNC_CA_FILE=${secrets.caFile}`,
    'export CERTSYNC_SERVER_NAME=localhost',
    `export CERTSYNC_ADMIN_TOKEN_FILE=${secrets.adminTokenFile}`,
    `export CERTSYNC_DEMO_METRICS=${metricsUrl}`,
    '',
  ].join('\n');
  await fs.writeFile(envFile, env, { mode: 0o600 });
  say(`\nThe fleet keeps running (bundle ${BUNDLE_NAME}). In another terminal:`);
  say(`  source ${envFile}`);
  say('  certsyncctl status');
  say(`A next certificate to import is in ${nextDir}. Ctrl-C stops the fleet.`);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
}

function serverConfig(
  port: number,
  metricsPort: number,
  stateDir: string,
  liveDir: string,
  secrets: TransportFixture,
): string {
  return [
    `listen: 127.0.0.1:${port}`,
    `metrics: { listen: 127.0.0.1:${metricsPort} }`,
    ...serverTransportConfig(secrets, 'tls'),
    `stateDir: ${JSON.stringify(stateDir)}`,
    'settleMs: 300',
    'bundles:',
    `  - name: ${BUNDLE_NAME}`,
    `    source: ${JSON.stringify(liveDir)}`,
    '    files:',
    `      - { source: fullchain.pem, target: ${TARGETS.fullchain}, mode: "0644" }`,
    `      - { source: privkey.pem, target: ${TARGETS.privkey}, mode: "0600" }`,
    `    expectNames: ["*.${DOMAIN}"]`,
    '',
  ].join('\n');
}

async function waitForConvergence(admin: AdminClient, version: number) {
  return waitFor(`all ${NODE_COUNT} nodes to hold version ${version}`, async () => {
    const status = await admin.getStatus();
    const bundle = status.bundles[0];
    const inSync =
      bundle?.currentVersion === version &&
      bundle.nodesExpected === NODE_COUNT &&
      bundle.nodesInSync === NODE_COUNT;
    // The demo has no reload targets: its rollouts end "done" right after every node confirmed.
    const done = inSync && bundle.rollout?.version === version && bundle.rollout.state === 'done';
    return done ? status : undefined;
  });
}

/** The few metric lines an operator would alert on, checked against what the demo did. */
async function readDemoMetrics(url: string): Promise<string[]> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url} answered HTTP ${response.status}`);
  const wanted = [
    'certsync_bundle_version',
    'certsync_nodes_expected',
    'certsync_nodes_in_sync',
    'certsync_certificate_expiration_timestamp_seconds',
  ];
  const lines = (await response.text())
    .split('\n')
    .filter((line) => wanted.some((name) => line.startsWith(`${name}{`)));
  const value = (name: string) =>
    Number(
      lines
        .find((line) => line.startsWith(`${name}{`))
        ?.split(' ')
        .at(-1),
    );
  if (value('certsync_bundle_version') !== 2 || value('certsync_nodes_in_sync') !== NODE_COUNT) {
    throw new Error(
      `the metrics do not show version 2 on ${NODE_COUNT} nodes:\n${lines.join('\n')}`,
    );
  }
  return lines;
}

/** The demo proves its claim on disk, not just through the server's word. */
async function checkNodeFiles(nodeDirs: readonly string[], pems: CertbotPemSet): Promise<void> {
  for (const dir of nodeDirs) {
    for (const [kind, target] of Object.entries(TARGETS) as Array<[keyof typeof TARGETS, string]>) {
      const file = path.join(dir, target);
      const bytes = await fs.readFile(file);
      const mode = (await fs.stat(file)).mode & 0o777;
      const expectedMode = kind === 'privkey' ? 0o600 : 0o644;
      if (sha256Hex(bytes) !== sha256Hex(pems[kind]) || mode !== expectedMode) {
        throw new Error(
          `${file} does not hold the renewed ${kind} with mode ${expectedMode.toString(8)}`,
        );
      }
    }
  }
}

main().catch((error: unknown) => {
  process.stderr.write(`demo failed: ${error instanceof Error ? error.message : String(error)}\n`);
  process.exit(1);
});
