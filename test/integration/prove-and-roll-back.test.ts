import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { RolloutInfo } from '../../common/contract';
import { sha256Hex } from '../../common/digest';
import { createCertbotTree, renewCertbotTree } from '../support/certbot-tree';
import { checkDockerEngine, startDockerEngine, type DockerEngine } from '../support/docker-engine';
import { FleetHarness, HARNESS_TARGETS } from '../support/fleet-harness';
import { createWildcardSet, issueLeaf, type CertbotPemSet } from '../support/pki';
import { waitFor } from '../support/processes';
import { startLocalVaultStandIn, type LocalVaultStandIn } from '../support/vault-stand-in';

// The proof step over real processes: a server, two agents, and two Vault stand-in replicas on
// loopback that serve the files of node-a. Every reload is a `signal` reload through a real
// private dockerd (no container of the service runs there, so the agents report none signalled —
// the stand-ins here are processes, and never reload: they keep serving what they started with).
// So: version 1 is proved after certsync unseals both replicas with two of three keys; version 2
// fails its proof (the replicas keep serving version 1), and `onFailure: rollback` puts version 1
// back on every node and proves it again.

const engineCheck = checkDockerEngine();
const NODES = ['node-a', 'node-b'];
const UNSEAL_KEYS = ['key-one-3f1a', 'key-two-9c2e', 'key-three-77b0'];

describe('proof of a reload, unseal and rollback', { skip: engineCheck.skip }, () => {
  let workDir: string;
  let engine: DockerEngine;
  let harness: FleetHarness;
  let replicas: LocalVaultStandIn[] = [];
  let v1: CertbotPemSet;

  const rolloutOf = (version: number, state: string, trigger?: string) =>
    waitFor(
      `rollout of version ${version} to be ${state}`,
      async (): Promise<RolloutInfo | undefined> => {
        const rollout = (await harness.admin.getStatus()).bundles[0]?.rollout;
        return rollout?.version === version &&
          rollout.state === state &&
          (!trigger || rollout.trigger === trigger)
          ? rollout
          : undefined;
      },
      30_000,
    );

  before(async () => {
    engineCheck.require();
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-prove-'));
    engine = await startDockerEngine('cssig-prove-engine');
    const set = await createWildcardSet();
    v1 = set.pems;
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    const keyFile = path.join(workDir, 'unseal-keys');
    await fs.writeFile(
      keyFile,
      `# two of three are needed\n${UNSEAL_KEYS.slice(0, 2).join('\n')}\n`,
      { mode: 0o600 },
    );

    // The replicas' ports must be known before the server's config is written.
    const tlsDir = path.join(workDir, 'nodes', 'node-a');
    await fs.mkdir(tlsDir, { recursive: true });
    await fs.writeFile(path.join(tlsDir, HARNESS_TARGETS.fullchain.target), v1.fullchain);
    await fs.writeFile(path.join(tlsDir, HARNESS_TARGETS.privkey.target), v1.privkey, {
      mode: 0o600,
    });
    for (const index of [1, 2]) {
      replicas.push(
        await startLocalVaultStandIn({
          tlsDir,
          certName: HARNESS_TARGETS.fullchain.target,
          keyName: HARNESS_TARGETS.privkey.target,
          logFile: path.join(workDir, 'logs', `vault-${index}.log`),
          env: { VAULT_STAND_IN_UNSEAL_KEYS: UNSEAL_KEYS.join(','), VAULT_STAND_IN_THRESHOLD: '2' },
        }),
      );
    }

    harness = await FleetHarness.create({
      workDir,
      liveDir,
      extraConfig: [`fleet: { mode: static, nodes: [${NODES.join(', ')}] }`],
      extraBundleConfig: [
        '    reload:',
        '      - service: example_vault',
        '        action: signal',
        '        signal: SIGHUP',
        '        timeoutMs: 5000',
        '        onFailure: rollback',
        '        verify:',
        `          tls: { port: 8200, serverName: vault.example.test, endpoints: [${replicas.map((replica) => replica.endpoint).join(', ')}] }`,
        `          vault: { unsealKeyFile: ${JSON.stringify(keyFile)} }`,
        '          timeoutMs: 3000',
      ],
    });
    await harness.startServer();
    for (const nodeId of NODES)
      await harness.startAgent(nodeId, undefined, ['--docker-socket', engine.socketPath]);
  });

  after(async () => {
    await harness?.stop();
    await Promise.all(replicas.map((replica) => replica.stop()));
    await engine?.stop();
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('version 1 is proved on both replicas after certsync unseals them', async () => {
    const done = await rolloutOf(1, 'done');
    const proof = done.reloads[0]?.proof;
    assert.ok(proof?.ok, proof?.error);
    const expected = (await harness.admin.getStatus()).bundles[0]!.leafFingerprintSha256;
    assert.equal(proof.expectedFingerprintSha256, expected);
    assert.deepEqual(
      proof.replicas.map((replica) => [
        replica.endpoint,
        replica.fingerprintSha256,
        replica.sealState,
      ]),
      replicas.map((replica) => [replica.endpoint, expected, 'unsealed by certsync']),
    );
    for (const replica of replicas) {
      const events = (await replica.events()).map((event) => event['msg']);
      assert.ok(events.includes('Unsealed'), `${replica.endpoint} was unsealed`);
      assert.ok(
        !(await fs.readFile(replica.logFile, 'utf8')).includes('key-'),
        'no key in the stand-in log',
      );
    }
    const serverLog = await fs.readFile(harness.server!.logFile, 'utf8');
    for (const key of UNSEAL_KEYS)
      assert.ok(!serverLog.includes(key), 'no unseal key in the server log');

    const verify = await harness.runCtl(['verify', 'example']);
    assert.equal(verify.code, 0, verify.stdout + verify.stderr);
    assert.match(verify.stdout, /proof of example_vault \(version 1.*\): ok/);
    assert.match(verify.stdout, /vault unsealed/);
  });

  test('a renewal the replicas do not serve fails its proof and is rolled back everywhere', async () => {
    const { intermediate } = await createWildcardSet();
    const leaf = await issueLeaf(intermediate, {
      commonName: '*.example.test',
      dnsNames: ['*.example.test'],
    });
    // A chain from another intermediate is still a valid bundle; what matters is a new leaf.
    // The fullchain carries its intermediate: a leaf alone is rejected (requireChain).
    const chain = intermediate.certPem;
    const v2: CertbotPemSet = {
      cert: leaf.certPem,
      chain,
      fullchain: leaf.certPem + chain,
      privkey: leaf.keyPem,
    };
    // An operator watching the renewal sees the reload, the failed proof and the outcome live.
    const watching = harness.runCtl([
      'rollout',
      'status',
      '--watch',
      '--next',
      'example',
      '--timeout',
      '60',
    ]);
    await waitFor('the watch to start', async () =>
      (await fs.readFile(harness.server!.logFile, 'utf8')).includes('Rollout watch started')
        ? true
        : undefined,
    );
    await renewCertbotTree(path.join(workDir, 'le'), 'example.test', v2);

    const history = await waitFor(
      'the rollback to finish',
      async () => {
        const { rollouts } = await harness.admin.listRollouts('example');
        return rollouts[0]?.trigger === 'rollback' && rollouts[0].state === 'done'
          ? rollouts
          : undefined;
      },
      40_000,
    );
    const [rollback, failed] = history;
    assert.equal(rollback!.version, 1);
    assert.equal(rollback!.rollbackOf, 2);
    assert.ok(rollback!.reloads[0]?.proof?.ok, 'version 1 proved again after the rollback');
    assert.equal(failed!.version, 2);
    assert.equal(failed!.state, 'failed');
    assert.match(
      failed!.reason,
      /2 of 2 replica\(s\) failed the proof: .*serves leaf .*, expected .*\(rolling back to version 1\)/,
    );
    assert.deepEqual(
      failed!.reloads[0]?.proof?.replicas.map((replica) => replica.matches),
      [false, false],
    );

    const watched = await watching;
    assert.equal(watched.code, 1, 'a failed rollout ends the watch with exit 1');
    assert.match(watched.stdout, /rollout of version 2: DISTRIBUTING/);
    assert.match(watched.stdout, /converged → reloading/);
    assert.match(watched.stdout, /reload: SIGHUP to example_vault: ok/);
    assert.match(watched.stdout, /proof of example_vault \(version 2.*\): FAILED/);
    assert.match(
      watched.stdout,
      /rollout of version 2 ended: FAILED — .*rolling back to version 1/,
    );

    for (const nodeId of NODES) {
      for (const [kind, { target }] of Object.entries(HARNESS_TARGETS)) {
        const bytes = await fs.readFile(path.join(harness.nodeDir(nodeId), target));
        assert.equal(
          sha256Hex(bytes),
          sha256Hex(v1[kind as keyof typeof HARNESS_TARGETS]),
          `${nodeId}/${target} is back on version 1`,
        );
      }
    }
    const status = (await harness.admin.getStatus()).bundles[0]!;
    assert.equal(
      status.currentVersion,
      1,
      'version 2 is withdrawn while the source still holds it',
    );

    const ctl = await harness.runCtl(['history', 'example']);
    assert.equal(ctl.code, 0, ctl.stderr);
    assert.match(ctl.stdout, /rollout of version 1: DONE .*rollback of version 2/);
    assert.match(ctl.stdout, /reloading → failed: /);
  });
});
