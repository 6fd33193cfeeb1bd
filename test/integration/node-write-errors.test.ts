import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
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

// A node that cannot write, through a real server, two real agents and a real `signal` reload
// (a private dockerd; reloads counted from its event log): node-b's folder is a 64 KiB tmpfs that
// is filled up (ENOSPC), remounted read-only (EROFS) and made immutable (EPERM). Each time the
// rollout stalls naming node-b, the errno and the file, node-b keeps its old bytes, and nothing
// is reloaded; once the operator fixes the disk and re-sends, it converges and reloads once.
// The key is owned by uid 100 (Vault's image) on every node; a mode that uid cannot read stops
// the rollout on every node with NOT_READABLE.

const engineCheck = checkDockerEngine();
const NODES = ['node-a', 'node-b'];
const SERVICE = 'example_web';
const IMAGE = 'cswrite-busybox:1';
const VAULT_OWNER = '100:1000';
const KEY = HARNESS_TARGETS.privkey.target;

describe('node write errors stop the reload', { skip: engineCheck.skip }, () => {
  let workDir: string;
  let engine: DockerEngine;
  let harness: FleetHarness;
  let intermediate: IssuedCertificate;
  let container: string;
  let nodeBDir: string;
  let current: CertbotPemSet;
  let version = 1;
  let tmpfsMounted = false;

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

  const holds = async (nodeId: string, pems: CertbotPemSet): Promise<boolean> => {
    for (const [kind, { target }] of Object.entries(HARNESS_TARGETS)) {
      const bytes = await fs
        .readFile(path.join(harness.nodeDir(nodeId), target))
        .catch(() => Buffer.alloc(0));
      if (sha256Hex(bytes) !== sha256Hex(pems[kind as keyof typeof HARNESS_TARGETS])) return false;
    }
    return true;
  };

  const rolloutOf = (wanted: number, state: string): Promise<RolloutInfo> =>
    waitFor(`rollout of version ${wanted} to be ${state}`, async () => {
      const rollout = (await harness.admin.getStatus()).bundles[0]?.rollout;
      return rollout?.version === wanted && rollout.state === state ? rollout : undefined;
    });

  const retriesScheduled = async (nodeId: string): Promise<number> => {
    const log = await fs.readFile(harness.agents.get(nodeId)!.logFile, 'utf8');
    return log.split('\n').filter((line) => line.includes('"msg":"Apply retry scheduled"')).length;
  };

  /**
   * The most attempts the agent's retry policy (1 s doubling to 30 s, equal jitter: each delay at
   * least half its ceiling) can make within `windowMs`, plus the first write.
   */
  const maxAttemptsWithin = (windowMs: number): number => {
    let attempts = 1;
    for (
      let elapsedMs = 500;
      elapsedMs <= windowMs;
      elapsedMs += Math.min(30_000, 1_000 * 2 ** (attempts - 1)) / 2
    )
      attempts += 1;
    return attempts;
  };

  /**
   * Breaks node-b, renews, checks the stall; fixes node-b and checks one reload. node-b retries
   * the write by itself with backoff (a bounded number of times while broken); with
   * `recover: 'rollout-command'` the operator's `certsyncctl rollout` re-sends at once instead.
   */
  const stallThenRecover = async (
    code: string,
    breakNode: () => Promise<void>,
    fixNode: () => Promise<void>,
    recover: 'by-itself' | 'rollout-command' = 'by-itself',
  ) => {
    await breakNode();
    const sinceMs = Date.now();
    const retriesBefore = await retriesScheduled('node-b');
    const pems = await renew();
    version += 1;
    // Under load node-a may confirm only after the stall; wait until it has.
    const stalled = await waitFor('node-b alone to hold the rollout back', async () => {
      const rollout = await rolloutOf(version, 'stalled');
      return rollout.missingNodes.join() === 'node-b' ? rollout : undefined;
    });

    assert.match(stalled.reason, new RegExp(`node-b: ${code} STAR\\.example\\.test`));
    assert.match(
      stalled.reason,
      /retries by itself with backoff, `certsyncctl rollout restart example` re-sends now/,
    );
    const nodeB = (await harness.admin.getStatus()).bundles[0]!.nodes.find(
      (node) => node.nodeId === 'node-b',
    )!;
    assert.equal(nodeB.lastError?.code, code);
    assert.match(nodeB.lastError?.path ?? '', /^STAR\.example\.test/);
    assert.ok(await holds('node-b', current), 'node-b keeps the old bytes');
    assert.ok(await holds('node-a', pems), 'node-a has the renewal');
    const ctl = await harness.runCtl(['status']);
    assert.equal(ctl.code, 1);
    assert.match(ctl.stdout, new RegExp(`node-b.*${code}`, 's'));
    assert.match(
      ctl.stdout,
      /retries by itself with backoff; `certsyncctl rollout restart example` re-sends now/,
    );
    await sleep(3_000);
    assert.deepEqual(await signalsDelivered(engine, container, sinceMs), [], 'nothing reloaded');
    assert.ok(
      await holds('node-b', current),
      'retries leave the old bytes while the disk is broken',
    );
    const brokenForMs = Date.now() - sinceMs;
    const attempts = (await retriesScheduled('node-b')) - retriesBefore;
    assert.ok(attempts >= 2, `node-b retried by itself (${attempts} in ${brokenForMs} ms)`);
    assert.ok(
      attempts <= maxAttemptsWithin(brokenForMs),
      `no hot loop (${attempts} in ${brokenForMs} ms)`,
    );

    await fixNode();
    if (recover === 'rollout-command') {
      const resent = await harness.runCtl(['rollout', 'restart', 'example']);
      assert.equal(resent.code, 0, resent.stderr);
    }
    // No re-send by hand: the agent's next retry writes it, the stalled rollout converges.
    await waitFor(
      `rollout of version ${version} to be done`,
      async () => {
        const rollout = (await harness.admin.getStatus()).bundles[0]?.rollout;
        return rollout?.version === version && rollout.state === 'done' ? rollout : undefined;
      },
      60_000,
    );
    const healed = (await harness.admin.getStatus()).bundles[0]!.nodes.find(
      (node) => node.nodeId === 'node-b',
    )!;
    assert.equal(healed.lastError, undefined, 'the error is cleared once written');
    assert.ok(await holds('node-b', pems));
    // The operator's re-send may come after node-b's own retry already converged the stalled
    // rollout; `rollout restart` then runs a second rollout, which reloads once more, as asked.
    // Either way every rollout of this version that got to done reloaded exactly once.
    const doneRollouts = (await harness.admin.listRollouts('example')).rollouts.filter(
      (rollout) => rollout.version === version && rollout.state === 'done',
    ).length;
    if (recover === 'by-itself') assert.equal(doneRollouts, 1, 'one rollout of this version');
    else assert.ok(doneRollouts === 1 || doneRollouts === 2, `${doneRollouts} rollouts done`);
    assert.equal(
      (await signalsDelivered(engine, container, sinceMs)).length,
      NODES.length * doneRollouts,
      'reloaded once per rollout',
    );
    current = pems;
  };

  before(async () => {
    engineCheck.require();
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-write-errors-'));
    // uid 100 must be able to walk to the node folders to read its key.
    await fs.chmod(workDir, 0o755);
    engine = await startDockerEngine('cswrite-engine');
    await engine.importBusyboxImage(IMAGE);
    container = await runSignalledTask(engine, IMAGE, SERVICE, 'task-web-1');
    const set = await createWildcardSet();
    intermediate = set.intermediate;
    current = set.pems;
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    harness = await FleetHarness.create({
      workDir,
      liveDir,
      extraConfig: [
        'convergeTimeoutMs: 1500',
        `fleet: { mode: static, nodes: [${NODES.join(', ')}] }`,
      ],
      extraBundleConfig: [
        '    reload:',
        `      - { service: ${SERVICE}, action: signal, signal: SIGHUP, timeoutMs: 10000 }`,
      ],
      fileSettings: { privkey: { mode: '0600', owner: VAULT_OWNER } },
    });
    nodeBDir = harness.nodeDir('node-b');
    await fs.mkdir(nodeBDir, { recursive: true });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64k,mode=0755', 'tmpfs', nodeBDir]);
    tmpfsMounted = true;
    await harness.startServer();
    for (const nodeId of NODES)
      await harness.startAgent(nodeId, undefined, ['--docker-socket', engine.socketPath]);
  });

  // Runs even when a test failed half-way: the folder is writable, mutable and unmounted again.
  after(async () => {
    await harness?.stop();
    await engine?.stop();
    if (nodeBDir) spawnSync('chattr', ['-i', nodeBDir]);
    if (tmpfsMounted && spawnSync('umount', [nodeBDir]).status !== 0)
      spawnSync('umount', ['-l', nodeBDir]);
    if (workDir && !process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('version 1: every node holds the key as uid 100 can read it, and one reload', async () => {
    await rolloutOf(1, 'done');
    for (const nodeId of NODES) {
      const keyPath = path.join(harness.nodeDir(nodeId), KEY);
      const stats = await fs.stat(keyPath);
      assert.deepEqual([stats.uid, stats.gid, stats.mode & 0o7777], [100, 1000, 0o600], nodeId);
      const read = spawnSync(
        process.execPath,
        ['-e', `require('fs').readFileSync(${JSON.stringify(keyPath)})`],
        { uid: 100, gid: 1000 },
      );
      assert.equal(read.status, 0, `uid 100 reads the key on ${nodeId}`);
      assert.ok(await holds(nodeId, current));
    }
    assert.equal((await signalsDelivered(engine, container, 0)).length, NODES.length);
  });

  test('disk full on node-b: ENOSPC stalls the rollout, no reload; freed, node-b retries by itself, one reload', async () => {
    const filler = path.join(nodeBDir, 'filler');
    await stallThenRecover(
      'ENOSPC',
      async () => {
        const { bavail, bsize } = await fs.statfs(nodeBDir);
        await fs.writeFile(filler, Buffer.alloc(Math.max(0, bavail * bsize - 512)));
      },
      () => fs.rm(filler),
    );
  });

  test('read-only file system on node-b: EROFS stalls the rollout, no reload; remounted, node-b retries by itself, one reload', async () => {
    await stallThenRecover(
      'EROFS',
      async () => void execFileSync('mount', ['-o', 'remount,ro', nodeBDir]),
      async () => void execFileSync('mount', ['-o', 'remount,rw', nodeBDir]),
    );
  });

  test('immutable folder on node-b: EPERM stalls the rollout, no reload; cleared and re-sent with certsyncctl rollout, one reload', async () => {
    await stallThenRecover(
      'EPERM',
      async () => void execFileSync('chattr', ['+i', nodeBDir]),
      async () => void execFileSync('chattr', ['-i', nodeBDir]),
      'rollout-command',
    );
  });

  test('a key mode its owner cannot read stops the rollout on every node, nothing reloaded', async () => {
    // Group may read, the owner class may not; uid 100 owns the file, so it cannot read it.
    await harness.writeConfig({ privkey: { mode: '0060', owner: VAULT_OWNER } });
    await harness.server!.stop();
    await harness.startServer();
    const sinceMs = Date.now();
    const retriesBefore = await Promise.all(NODES.map(retriesScheduled));
    await renew();
    version += 1;

    const stalled = await rolloutOf(version, 'stalled');
    assert.deepEqual([...stalled.missingNodes].sort(), NODES);
    for (const nodeId of NODES)
      assert.match(
        stalled.reason,
        new RegExp(`${nodeId}: NOT_READABLE ${KEY.replaceAll('.', '\\.')}`),
      );
    const nodes = (await harness.admin.getStatus()).bundles[0]!.nodes;
    for (const node of nodes) {
      assert.equal(node.lastError?.code, 'NOT_READABLE');
      assert.match(
        node.lastError?.message ?? '',
        /mode 0060 owner 100:1000 is not readable by uid 100/,
      );
      assert.ok(await holds(node.nodeId, current), `${node.nodeId} keeps the readable key`);
      const stats = await fs.stat(path.join(harness.nodeDir(node.nodeId), KEY));
      assert.deepEqual([stats.uid, stats.mode & 0o7777], [100, 0o600]);
    }
    await sleep(500);
    assert.deepEqual(await signalsDelivered(engine, container, sinceMs), []);
    // Only a new version can change the configured mode: the agents do not retry this one.
    assert.deepEqual(await Promise.all(NODES.map(retriesScheduled)), retriesBefore);
  });
});
