import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RolloutInfo } from '../../common/contract';
import { createCertbotTree } from '../support/certbot-tree';
import { FleetHarness } from '../support/fleet-harness';
import { createWildcardSet } from '../support/pki';
import { waitFor } from '../support/processes';

// A signal reload travels server → every agent → the node's Docker socket → a report back. Here
// the agents' Docker socket does not exist: the reload must fail, name every node and the reason,
// and the rollout must say so — never hang, never report success. (Delivery to real containers is
// checked against a real dockerd in the e2e suite.)

const NODES = ['node-a', 'node-b'];

describe('signal reloads when the agents cannot reach Docker', () => {
  let workDir: string;
  let harness: FleetHarness;

  before(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-signal-'));
    const set = await createWildcardSet();
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    harness = await FleetHarness.create({
      workDir,
      liveDir,
      extraConfig: [`fleet: { mode: static, nodes: [${NODES.join(', ')}] }`],
      extraBundleConfig: [
        '    reload:',
        '      - { service: web_nginx, action: signal, signal: SIGHUP, timeoutMs: 5000 }',
      ],
    });
    await harness.startServer();
    for (const nodeId of NODES)
      await harness.startAgent(nodeId, undefined, [
        '--docker-socket',
        path.join(workDir, 'no-docker.sock'),
      ]);
  });

  after(async () => {
    await harness.stop();
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('the rollout fails and names each node with DOCKER_UNAVAILABLE', async () => {
    const rollout = await waitFor(
      'the rollout to fail',
      async (): Promise<RolloutInfo | undefined> => {
        const current = (await harness.admin.getStatus()).bundles[0]?.rollout;
        return current?.state === 'failed' ? current : undefined;
      },
    );
    assert.deepEqual(rollout.confirmedNodes, NODES, 'every node confirmed before the reload');
    const reload = rollout.reloads[0]!;
    assert.equal(reload.action, 'signal');
    assert.equal(reload.ok, false);
    assert.deepEqual(
      reload.signals.map((signal) => [signal.nodeId, signal.ok]),
      NODES.map((nodeId) => [nodeId, false]),
    );
    for (const signal of reload.signals)
      assert.match(
        signal.error,
        /DOCKER_UNAVAILABLE: Docker socket .*no-docker\.sock is not usable \(ENOENT\); bind-mount/,
      );
    assert.match(rollout.reason, /SIGHUP to "web_nginx" failed on node-a .*node-b/);
  });
});
