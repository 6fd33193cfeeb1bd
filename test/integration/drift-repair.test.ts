import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { NodeBundleState } from '../../common/contract';
import { sha256Hex } from '../../common/digest';
import { createCertbotTree } from '../support/certbot-tree';
import { FleetHarness, HARNESS_TARGETS } from '../support/fleet-harness';
import { createWildcardSet, type CertbotPemSet } from '../support/pki';
import { waitFor } from '../support/processes';

// Drift the agent must repair by itself, through a real server and two real agents on loopback
// (TLS with tokens): a key chmodded to 0666 (while the agent runs, and while it is down), a repair
// that failed because a symlink sat in the key's place and is retried once the link is gone,
// and a node folder deleted and re-created under the running agent.

const NODES = ['node-a', 'node-b'];
const KEY = HARNESS_TARGETS.privkey.target;
const FULLCHAIN = HARNESS_TARGETS.fullchain.target;

describe('the agent repairs drift by itself', () => {
  let workDir: string;
  let harness: FleetHarness;
  let current: CertbotPemSet;

  const nodeStatus = async (nodeId: string): Promise<NodeBundleState | undefined> =>
    (await harness.admin.getStatus()).bundles[0]?.nodes.find((node) => node.nodeId === nodeId);

  /** Waits until the node's files hold the current bytes and modes, and status agrees. */
  const waitForRepair = async (nodeId: string, what: string): Promise<NodeBundleState> => {
    await waitFor(
      `${what} on ${nodeId}`,
      async () => {
        for (const kind of ['fullchain', 'privkey'] as const) {
          const file = path.join(harness.nodeDir(nodeId), HARNESS_TARGETS[kind].target);
          const stats = await fs.lstat(file).catch(() => undefined);
          if (!stats?.isFile() || (stats.mode & 0o7777) !== HARNESS_TARGETS[kind].mode)
            return undefined;
          if (sha256Hex(await fs.readFile(file)) !== sha256Hex(current[kind])) return undefined;
        }
        return true;
      },
      45_000,
    );
    return waitFor(`status to show ${nodeId} in sync`, async () => {
      const node = await nodeStatus(nodeId);
      return node?.inSync && node.lastError === undefined ? node : undefined;
    });
  };

  const agentLogLines = async (nodeId: string, message: string): Promise<number> => {
    const log = await fs.readFile(harness.agents.get(nodeId)!.logFile, 'utf8');
    return log.split('\n').filter((line) => line.includes(`"msg":"${message}"`)).length;
  };

  before(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-drift-repair-'));
    const set = await createWildcardSet();
    current = set.pems;
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    harness = await FleetHarness.create({ workDir, liveDir });
    await harness.startServer();
    for (const nodeId of NODES) await harness.startAgent(nodeId);
    await harness.waitForConvergence(1, NODES);
  });

  after(async () => {
    await harness?.stop();
    if (workDir && !process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('a key chmodded to 0666 goes back to 0600 in place, is reported as drift, and status never calls 0666 in sync', async () => {
    const key = path.join(harness.nodeDir('node-b'), KEY);
    const before = await fs.stat(key);
    const repairsBefore = (await nodeStatus('node-b'))?.driftRepairs ?? 0;
    await fs.chmod(key, 0o666);

    const node = await waitForRepair('node-b', 'the key mode put back');
    const after = await fs.stat(key);
    assert.equal(after.mode & 0o7777, 0o600);
    assert.equal(after.ino, before.ino, 'fixed in place, not rewritten');
    assert.equal(node.files.find((file) => file.path === KEY)?.mode, 0o600);
    assert.ok(node.driftRepairs > repairsBefore, 'the server heard of the drift');
    const serverLog = await fs.readFile(path.join(workDir, 'logs', 'server.log'), 'utf8');
    assert.match(serverLog, /"node":"node-b".*"msg":"Managed file changed on node; restoring"/);
  });

  test('a key chmodded to 0666 while the agent is down is fixed on reconnect, not confirmed as it is', async () => {
    await harness.agents.get('node-a')!.stop();
    const key = path.join(harness.nodeDir('node-a'), KEY);
    const inode = (await fs.stat(key)).ino;
    await fs.chmod(key, 0o666);
    await harness.startAgent('node-a');

    const node = await waitForRepair('node-a', 'the key mode put back after a restart');
    assert.equal((await fs.stat(key)).ino, inode);
    assert.equal(node.files.find((file) => file.path === KEY)?.mode, 0o600);
  });

  test('a repair refused because a symlink was in the way is retried with backoff once the link is removed', async () => {
    const key = path.join(harness.nodeDir('node-b'), KEY);
    const decoy = path.join(workDir, 'decoy.pem');
    await fs.writeFile(decoy, 'decoy\n');
    const scheduledBefore = await agentLogLines('node-b', 'Apply retry scheduled');
    await fs.rm(key);
    await fs.symlink(decoy, key);

    const failed = await waitFor('node-b to report the symlink', async () => {
      const node = await nodeStatus('node-b');
      return node?.lastError?.code === 'SYMLINK_TARGET' ? node : undefined;
    });
    assert.equal(failed.inSync, false);
    const windowStartMs = Date.now();
    await sleep(6_000);
    const windowMs = Date.now() - windowStartMs;
    assert.equal(await fs.readFile(decoy, 'utf8'), 'decoy\n', 'the link target is left alone');
    assert.ok((await fs.lstat(key)).isSymbolicLink(), 'the link is left alone');
    // Retries back off (0.5–1 s, 1–2 s, 2–4 s, …): a handful over the window, never a hot loop.
    const attempts = (await agentLogLines('node-b', 'Apply retry scheduled')) - scheduledBefore;
    assert.ok(attempts >= 2, `retried (${attempts} attempts in ${windowMs} ms)`);
    assert.ok(attempts <= 6, `no hot loop (${attempts} attempts in ${windowMs} ms)`);

    // What the error says to do; no certsyncctl rollout, no restart.
    await fs.rm(key);
    const node = await waitForRepair('node-b', 'the key written again');
    assert.equal(node.lastError, undefined, 'the stale SYMLINK_TARGET error is cleared');
    assert.ok((await agentLogLines('node-b', 'Apply retry succeeded')) >= 1);
  });

  test('a node folder deleted and re-created is filled again, and drift after that is still seen', async () => {
    const dir = harness.nodeDir('node-a');
    await fs.rm(dir, { recursive: true, force: true });
    await sleep(300);
    await fs.mkdir(dir);
    await waitForRepair('node-a', 'the folder filled again');

    // The watcher follows the new folder: a later change is noticed and repaired.
    const fullchain = path.join(dir, FULLCHAIN);
    await fs.writeFile(fullchain, 'tampered\n');
    await fs.chmod(path.join(dir, KEY), 0o640);
    await waitForRepair('node-a', 'drift in the re-created folder repaired');
  });
});
