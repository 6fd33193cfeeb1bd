import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import type { ValidatedBundle } from '../../server/bundle-validator';
import { parseServerConfig } from '../../server/config';
import { createExpectedNodes } from '../../server/expected-nodes';
import { Fleet } from '../../server/fleet';
import { Prover } from '../../server/prover';
import { Reloader } from '../../server/reloader';
import { RolloutHistory } from '../../server/rollout-history';
import { RolloutTracker } from '../../server/rollout-tracker';
import { VersionStore, type BundleVersion } from '../../server/version-store';

// The tracker looks only at the node that reported (nodeChanged) and keeps a running count of
// confirmations; these tests hold it to the guarantee that did not change: a rollout converges
// only once every expected node reported the version's exact digests.

const validated: ValidatedBundle = {
  leaf: {
    subject: 'CN=x',
    issuer: 'CN=ca',
    dnsNames: ['x'],
    serial: '01',
    notBefore: new Date(0),
    notAfter: new Date(4e12),
    fingerprintSha256: 'cd'.repeat(32),
  },
  chain: [],
  keyType: 'ec P-256',
  warnings: [],
};

const noDocker = () => {
  throw new Error('no Docker in this test');
};

describe('RolloutTracker, one node report at a time', () => {
  let stateDir: string;
  let store: VersionStore;
  let fleet: Fleet;
  let tracker: RolloutTracker;

  const start = async (fleetConfig: Record<string, unknown>) => {
    const config = parseServerConfig({
      insecure: true,
      stateDir,
      convergeTimeoutMs: 600_000,
      fleet: fleetConfig,
      bundles: [{ name: 'web', source: '/live', files: [{ source: 'c.pem', target: 'c.pem' }] }],
    });
    const log = createSilentLogger();
    store = await VersionStore.open(stateDir, ['web'], 10, log);
    tracker = new RolloutTracker({
      bundles: config.bundles,
      store,
      fleet,
      expectedNodes: createExpectedNodes(config.fleet, { fleet, docker: noDocker, log }),
      reloader: new Reloader(noDocker, { signalNodes: async () => [] }, log),
      prover: new Prover(noDocker, log),
      history: await RolloutHistory.open(stateDir, ['web'], log),
      convergeTimeoutMs: config.convergeTimeoutMs,
      distribute: () => undefined,
      log,
    });
    await tracker.resume();
  };

  const accept = async (label: string): Promise<BundleVersion> => {
    const content = Buffer.from(label);
    const version = await store.accept(
      {
        bundle: 'web',
        sourceDir: '/live',
        digest: sha256Hex(label),
        validated,
        files: [
          {
            source: 'c.pem',
            target: 'c.pem',
            mode: 0o600,
            sha256: sha256Hex(content),
            size: content.length,
            content,
          },
        ],
      },
      new Date(),
    );
    await tracker.begin(version, 'accepted');
    return version;
  };

  const connect = (nodeId: string) => {
    fleet.connect(
      { nodeId, hostname: nodeId, agentVersion: 't', dir: '/d', files: [] },
      'peer',
      [],
      new Date(),
    );
    tracker.nodeChanged(nodeId);
  };

  /** What the hub does with an apply report: record it, then tell the tracker which node. */
  const report = (nodeId: string, version: BundleVersion, sha256: string) => {
    const file = version.files[0]!;
    fleet.recordApply(
      nodeId,
      {
        bundle: 'web',
        version: version.version,
        ok: true,
        files: [{ path: file.target, sha256, size: file.size, mode: file.mode }],
        error: undefined,
        filesWritten: 1,
      },
      version,
      new Date(),
    );
    tracker.nodeChanged(nodeId);
  };

  /** Lets queued evaluations and history writes run. */
  const drain = () => new Promise((resolve) => setTimeout(resolve, 50));

  beforeEach(async () => {
    stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-per-node-'));
    fleet = new Fleet();
  });

  afterEach(async () => {
    await tracker.close();
    await fs.rm(stateDir, { recursive: true, force: true });
  });

  it('converges only after the last of 40 nodes reported, and not on a wrong digest', async () => {
    await start({ mode: 'connected' });
    const nodeIds = Array.from({ length: 40 }, (_, index) => `node-${index}`);
    for (const nodeId of nodeIds) connect(nodeId);
    const version = await accept('v1');
    const good = version.files[0]!.sha256;

    for (const nodeId of nodeIds.slice(0, -1)) report(nodeId, version, good);
    report(nodeIds.at(-1)!, version, sha256Hex('other bytes'));
    await drain();
    const waiting = tracker.current('web')!;
    assert.equal(waiting.state, 'distributing');
    assert.deepEqual(Object.keys(waiting.confirmedAt).sort(), nodeIds.slice(0, -1).sort());

    report(nodeIds.at(-1)!, version, good);
    await drain();
    const done = tracker.current('web')!;
    assert.equal(done.state, 'done');
    assert.deepEqual(Object.keys(done.confirmedAt).sort(), [...nodeIds].sort());
    assert.ok(done.transitions.some((step) => step.to === 'converged'));
  });

  it('a node that joins the fleet mid-rollout must confirm too', async () => {
    await start({ mode: 'connected' });
    connect('a');
    connect('b');
    const version = await accept('v1');
    const good = version.files[0]!.sha256;
    report('a', version, good);
    connect('c');
    report('b', version, good);
    await drain();
    assert.equal(tracker.current('web')?.state, 'distributing');
    assert.deepEqual(tracker.current('web')?.expectedNodes, ['a', 'b', 'c']);

    report('c', version, good);
    await drain();
    assert.equal(tracker.current('web')?.state, 'done');
  });

  it('a confirmation from a node outside the static list does not count towards it', async () => {
    await start({ mode: 'static', nodes: ['a', 'b'] });
    connect('a');
    connect('stranger');
    const version = await accept('v1');
    const good = version.files[0]!.sha256;
    report('a', version, good);
    report('stranger', version, good);
    await drain();
    assert.equal(tracker.current('web')?.state, 'distributing');

    connect('b');
    report('b', version, good);
    await drain();
    assert.equal(tracker.current('web')?.state, 'done');
  });
});
