import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { RolloutInfo } from '../../common/contract';
import { sha256Hex } from '../../common/digest';
import { createCertbotTree, renewCertbotTree } from '../support/certbot-tree';
import { checkDockerEngine, startDockerEngine, type DockerEngine } from '../support/docker-engine';
import { FleetHarness, HARNESS_TARGETS } from '../support/fleet-harness';
import {
  createWildcardSet,
  issueLeaf,
  type CertbotPemSet,
  type IssuedCertificate,
} from '../support/pki';
import { waitFor } from '../support/processes';
import { runSignalledTask, signalsDelivered } from '../support/signal-counter';

// The server SIGKILLed in the middle of rollouts and started again on the same state: during
// distributing (one node frozen), right after the reload's first signal, and at random moments
// after a renewal. After each restart the rollout must resume and finish: every node holds the
// renewal's bytes, no version is lost, and the service was reloaded at most once per version —
// exactly once when the rollout ends done. Reloads are `signal` reloads through real agents and a
// real private dockerd; they are counted from the engine's own event log (each reload = one
// SIGHUP per node, since both agents talk to the one engine).

const engineCheck = checkDockerEngine();
const NODES = ['node-a', 'node-b'];
const SERVICE = 'example_web';
const IMAGE = 'cskill-busybox:1';
const RANDOM_KILL_ROUNDS = Number(process.env['CERTSYNC_SERVER_KILL_ROUNDS'] ?? 5);
const MAX_RANDOM_KILL_DELAY_MS = 1_000;
/** How long a finished rollout is watched for a late second reload. */
const QUIET_AFTER_SETTLE_MS = 1_500;

describe('server killed mid-rollout', { skip: engineCheck.skip }, () => {
  let workDir: string;
  let engine: DockerEngine;
  let harness: FleetHarness;
  let intermediate: IssuedCertificate;
  let container: string;
  let lastVersion = 0;

  const renew = async (): Promise<CertbotPemSet> => {
    const leaf = await issueLeaf(intermediate, {
      commonName: '*.example.test',
      dnsNames: ['*.example.test'],
    });
    const pems = {
      cert: leaf.certPem,
      chain: intermediate.certPem,
      fullchain: leaf.certPem + intermediate.certPem,
      privkey: leaf.keyPem,
    };
    await renewCertbotTree(path.join(workDir, 'le'), 'example.test', pems);
    return pems;
  };

  const nodesHold = async (pems: CertbotPemSet): Promise<boolean> => {
    for (const nodeId of NODES) {
      for (const [kind, { target }] of Object.entries(HARNESS_TARGETS)) {
        const bytes = await fs
          .readFile(path.join(harness.nodeDir(nodeId), target))
          .catch(() => Buffer.alloc(0));
        if (sha256Hex(bytes) !== sha256Hex(pems[kind as keyof typeof HARNESS_TARGETS]))
          return false;
      }
    }
    return true;
  };

  /** Waits until the renewal is the current version, on every node, its rollout finished. */
  const settled = (pems: CertbotPemSet): Promise<RolloutInfo> =>
    waitFor(
      'the rollout of the renewal to finish on every node',
      async () => {
        const bundle = (await harness.admin.getStatus()).bundles[0];
        const rollout = bundle?.rollout;
        if (!rollout || rollout.version !== bundle.currentVersion) return undefined;
        if (rollout.state !== 'done' && rollout.state !== 'failed') return undefined;
        return (await nodesHold(pems)) ? rollout : undefined;
      },
      30_000,
    );

  /** The last rollout state the killed server had logged ("v3 reloading"), to say where the kill landed. */
  const lastLoggedState = async (): Promise<string> => {
    const events = (await fs.readFile(harness.server!.logFile, 'utf8'))
      .split('\n')
      .filter(
        (line) => line.includes('"Rollout started"') || line.includes('"Rollout state changed"'),
      )
      .map((line) => JSON.parse(line) as { msg: string; version: number; to?: string });
    const last = events.at(-1);
    return last ? `v${last.version} ${last.to ?? 'distributing'}` : 'none';
  };

  /** SIGKILL, then a new server on the same config and state folder. */
  const killAndRestartServer = async (): Promise<string> => {
    assert.equal(await harness.server!.kill(), 'SIGKILL');
    const landedIn = await lastLoggedState();
    await harness.startServer();
    return landedIn;
  };

  /** The checks after every restart; returns the signals of this round for the diagnostics. */
  const assertResumed = async (pems: CertbotPemSet, sinceMs: number, label: string) => {
    const rollout = await settled(pems);
    await sleep(QUIET_AFTER_SETTLE_MS);
    const signals = await signalsDelivered(engine, container, sinceMs);
    const after = (await harness.admin.getStatus()).bundles[0]!;

    assert.equal(
      after.currentVersion,
      lastVersion + 1,
      `${label}: the renewal is the next version, none lost or doubled`,
    );
    lastVersion = after.currentVersion;
    assert.ok(await nodesHold(pems), `${label}: every node holds the renewal`);
    assert.ok(
      signals.length <= NODES.length,
      `${label}: reloaded at most once (${signals.length} signals)`,
    );
    if (rollout.state === 'done') {
      assert.equal(signals.length, NODES.length, `${label}: a done rollout reloaded exactly once`);
    } else {
      assert.match(
        rollout.reason,
        /stopped while reloading/,
        `${label}: the only failure allowed is a cut-off reload`,
      );
    }
    assert.equal(after.rollout?.state, rollout.state, `${label}: nothing moved after settling`);
    return { state: rollout.state, signals: signals.length };
  };

  before(async () => {
    engineCheck.require();
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-server-kill-'));
    engine = await startDockerEngine('cskill-engine');
    await engine.importBusyboxImage(IMAGE);
    container = await runSignalledTask(engine, IMAGE, SERVICE, 'task-web-1');
    const set = await createWildcardSet();
    intermediate = set.intermediate;
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    harness = await FleetHarness.create({
      workDir,
      liveDir,
      extraConfig: [`fleet: { mode: static, nodes: [${NODES.join(', ')}] }`],
      extraBundleConfig: [
        '    reload:',
        `      - { service: ${SERVICE}, action: signal, signal: SIGHUP, timeoutMs: 10000 }`,
      ],
    });
    const sinceMs = Date.now();
    await harness.startServer();
    for (const nodeId of NODES)
      await harness.startAgent(nodeId, undefined, ['--docker-socket', engine.socketPath]);
    await assertResumed(set.pems, sinceMs, 'version 1');
  });

  after(async () => {
    harness?.agents.get('node-b')?.child.kill('SIGCONT');
    await harness?.stop();
    await engine?.stop();
    if (workDir && !process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('killed while distributing (one node frozen): resumes, reloads once when the node is back', async (t) => {
    const nodeB = harness.agents.get('node-b')!;
    nodeB.child.kill('SIGSTOP');
    const sinceMs = Date.now();
    const pems = await renew();
    await waitFor('node-a to confirm while node-b is frozen', async () => {
      const rollout = (await harness.admin.getStatus()).bundles[0]?.rollout;
      return rollout?.version === lastVersion + 1 && rollout.confirmedNodes.includes('node-a')
        ? rollout
        : undefined;
    });

    const landedIn = await killAndRestartServer();
    assert.equal(landedIn, `v${lastVersion + 1} distributing`);
    assert.deepEqual(
      await signalsDelivered(engine, container, sinceMs),
      [],
      'nothing reloaded while a node was missing',
    );
    nodeB.child.kill('SIGCONT');

    const result = await assertResumed(pems, sinceMs, 'distributing');
    assert.equal(result.state, 'done');
    t.diagnostic(
      `kill landed in ${landedIn}; after restart: ${result.state}, ${result.signals} signal(s)`,
    );
  });

  test('killed mid-reload (the engine frozen under the agents): failed, never reloaded twice', async (t) => {
    const enginePid = Number(await fs.readFile(path.join(engine.dir, 'docker.pid'), 'utf8'));
    const sinceMs = Date.now();
    process.kill(enginePid, 'SIGSTOP');
    let landedIn: string;
    let pems: CertbotPemSet;
    try {
      pems = await renew();
      await waitFor('the rollout to be reloading', async () => {
        const rollout = (await harness.admin.getStatus()).bundles[0]?.rollout;
        return rollout?.version === lastVersion + 1 && rollout.state === 'reloading'
          ? rollout
          : undefined;
      });
      landedIn = await killAndRestartServer();
    } finally {
      // The agents' signal calls were waiting on the engine: they go through now, for the dead server.
      process.kill(enginePid, 'SIGCONT');
    }

    assert.equal(landedIn, `v${lastVersion + 1} reloading`);
    const result = await assertResumed(pems, sinceMs, 'mid-reload');
    assert.equal(result.state, 'failed');
    // The agents' signal calls complete once the engine runs again (usually: 2 signals); under a
    // heavy load they can time out first (10 s). Either way the new server never signals again.
    t.diagnostic(
      `kill landed in ${landedIn}; after restart: ${result.state}, ${result.signals} signal(s)`,
    );
  });

  test('killed right after the reload signalled: no second reload', async (t) => {
    const sinceMs = Date.now();
    const pems = await renew();
    await waitFor(
      'the first reload signal',
      async () =>
        (await signalsDelivered(engine, container, sinceMs)).length > 0 ? true : undefined,
      20_000,
      10,
    );

    const landedIn = await killAndRestartServer();
    const result = await assertResumed(pems, sinceMs, 'after the signal');
    t.diagnostic(
      `kill landed in ${landedIn}; after restart: ${result.state}, ${result.signals} signal(s)`,
    );
  });

  test(`killed at ${RANDOM_KILL_ROUNDS} random moments after a renewal: every rollout resumes`, async (t) => {
    const landings: string[] = [];
    for (let round = 0; round < RANDOM_KILL_ROUNDS; round += 1) {
      const sinceMs = Date.now();
      const pems = await renew();
      const delayMs = Math.floor(Math.random() * MAX_RANDOM_KILL_DELAY_MS);
      await sleep(delayMs);
      const landedIn = await killAndRestartServer();
      const result = await assertResumed(pems, sinceMs, `random round ${round}`);
      landings.push(
        `${delayMs} ms → killed in ${landedIn} → ${result.state} with ${result.signals} signal(s)`,
      );
    }
    t.diagnostic(`server kills: ${landings.join('; ')}`);
  });
});
