import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RolloutInfo } from '../../common/contract';
import { createCertbotTree, renewCertbotTree } from '../support/certbot-tree';
import { FleetHarness } from '../support/fleet-harness';
import { createWildcardSet, issueLeaf, type IssuedCertificate } from '../support/pki';
import { waitFor } from '../support/processes';

// Rollouts with a static fleet, server and agents as real processes: a version converges only when
// every listed node confirmed it, a missing node stalls the rollout by name, and an agent whose
// node ID is not listed is refused.

const NODES = ['node-a', 'node-b'];

describe('rollouts over a static fleet on loopback', () => {
  let workDir: string;
  let harness: FleetHarness;
  let intermediate: IssuedCertificate;

  const rolloutOf = async (version: number, state: string): Promise<RolloutInfo> =>
    waitFor(`rollout of version ${version} to be ${state}`, async () => {
      const rollout = (await harness.admin.getStatus()).bundles[0]?.rollout;
      return rollout?.version === version && rollout.state === state ? rollout : undefined;
    });

  const renew = async () => {
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
  };

  before(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-rollout-'));
    const set = await createWildcardSet();
    intermediate = set.intermediate;
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    harness = await FleetHarness.create({
      workDir,
      liveDir,
      extraConfig: [
        'convergeTimeoutMs: 1500',
        `fleet: { mode: static, nodes: [${NODES.join(', ')}] }`,
      ],
    });
    await harness.startServer();
  });

  after(async () => {
    await harness.stop();
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('the first version waits for every listed node, then is done', async () => {
    await harness.startAgent('node-a');
    await harness.waitForConvergence(1, ['node-a']);
    const waiting = (await harness.admin.getStatus()).bundles[0]!;
    assert.equal(waiting.nodesExpected, 2, 'node-b is expected before its agent ever connected');
    assert.ok(waiting.nodes.some((node) => node.nodeId === 'node-b' && !node.inSync));
    assert.notEqual(waiting.rollout?.state, 'done');

    await harness.startAgent('node-b');
    const done = await rolloutOf(1, 'done');
    assert.deepEqual(done.confirmedNodes, NODES);
    assert.deepEqual(
      done.transitions.map((step) => step.to).filter((state) => state !== 'stalled'),
      ['converged', 'done'],
    );
  });

  test('an agent whose node ID is not in the list is refused', async () => {
    const stranger = await harness.startAgent('node-x');
    await waitFor('the refusal in the stranger log', async () =>
      (await fs.readFile(stranger.logFile, 'utf8')).includes('is not an expected node')
        ? true
        : undefined,
    );
    assert.deepEqual(await fs.readdir(harness.nodeDir('node-x')), []);
    await stranger.stop();
    harness.agents.delete('node-x');
  });

  test('a node that is away stalls the rollout by name; when it returns the rollout finishes', async () => {
    await harness.agents.get('node-b')!.stop();
    await renew();
    const stalled = await rolloutOf(2, 'stalled');
    assert.deepEqual(stalled.missingNodes, ['node-b']);
    assert.match(stalled.reason, /node-b: agent disconnected/);

    const ctl = await harness.runCtl(['status']);
    assert.equal(ctl.code, 1, 'status exits 1 while a node is out of sync');
    assert.match(ctl.stdout, /STALLED/);
    assert.match(ctl.stdout, /waiting for: node-b/);

    const refused = await harness.runCtl(['reload', 'example']);
    assert.equal(refused.code, 4, refused.stderr);
    assert.match(refused.stderr, /node-b.*force/);

    await harness.startAgent('node-b');
    const done = await rolloutOf(2, 'done');
    assert.deepEqual(
      done.transitions.map((step) => step.to),
      ['stalled', 'converged', 'done'],
    );
  });

  test('Rollout re-sends an earlier version and the watcher does not put the newer one back', async () => {
    const result = await harness.runCtl([
      '--json',
      'rollout',
      'restart',
      'example',
      '--version',
      '1',
    ]);
    assert.equal(result.code, 0, result.stderr);
    await harness.waitForConvergence(1, NODES);
    await rolloutOf(1, 'done');
    // The source still holds version 2's files; a rescan must not re-accept them.
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal((await harness.admin.getStatus()).bundles[0]?.currentVersion, 1);

    await renew();
    await harness.waitForConvergence(3, NODES);
  });

  test('WatchRollout with transitionsOnly follows the next rollout without per-node events', async () => {
    await rolloutOf(3, 'done');
    const kinds: string[] = [];
    let last: RolloutInfo | undefined;
    let renewal: Promise<void> | undefined;
    const ended = await harness.admin.watchRollout(
      'example',
      (event) => {
        kinds.push(event.transition ? `${event.kind} ${event.transition.to}` : event.kind);
        last = event.rollout;
      },
      {
        next: true,
        transitionsOnly: true,
        timeoutMs: 30_000,
        // The renewal starts only once the server holds the subscription, so nothing is missed.
        onSubscribed: () => (renewal = renew()),
      },
    );
    await renewal;
    assert.equal(ended, true, 'the server ended the stream once the rollout was final');
    assert.deepEqual(kinds, ['snapshot', 'transition converged', 'transition done']);
    assert.equal(last?.version, 4);
    assert.deepEqual(last?.confirmedNodes, NODES);
  });
});

describe('a server stopped while agents and a watcher are connected', () => {
  test('exits 0 on SIGTERM, before a container runtime would kill it', async () => {
    const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-stop-'));
    const set = await createWildcardSet();
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    const harness = await FleetHarness.create({ workDir, liveDir });
    try {
      await harness.startServer();
      for (const nodeId of NODES) await harness.startAgent(nodeId);
      await harness.waitForConvergence(1, NODES);
      const watcher = harness.runCtl(['rollout', 'status', '--watch', '--next', 'example']);
      await waitFor('the watch to start', async () =>
        (await fs.readFile(harness.server!.logFile, 'utf8')).includes('Rollout watch started')
          ? true
          : undefined,
      );
      // Docker sends SIGKILL 10 s after SIGTERM; an exit code (not 'SIGKILL') means it stopped.
      const exit = await harness.server!.stop('SIGTERM', 9_000);
      assert.equal(exit, 0, 'the server exited by itself');
      const watched = await watcher;
      assert.equal(watched.code, 3, `the watcher is told the server went away: ${watched.stderr}`);
    } finally {
      await harness.destroy();
    }
  });
});
