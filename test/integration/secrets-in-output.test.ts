import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createCertbotTree, renewCertbotTree } from '../support/certbot-tree';
import { FleetHarness, HARNESS_TARGETS } from '../support/fleet-harness';
import {
  createWildcardSet,
  issueLeaf,
  type CertbotPemSet,
  type IssuedCertificate,
} from '../support/pki';
import { waitFor } from '../support/processes';
import { findKeyMaterial, keyForms, type KeyForms } from '../support/secret-scan';

// A full rollout at log level debug with its error paths — two rejected candidates (a key that does
// not match, a truncated key), a node that refuses a planted symlink, a drift repair, a signal
// reload whose agents have no Docker socket — and then every byte certsync printed or answered:
// server and agent logs, certsyncctl (table and --json) for every command, the admin RPCs, and
// the rollout history in the state folder. No private key may appear in any of it: not its PEM,
// not one base64 body line, no 32-character window of its base64, DER hex or file encodings.

const NODES = ['node-a', 'node-b'];
const KEY = HARNESS_TARGETS.privkey.target;

describe('no private key in any output', () => {
  let workDir: string;
  let harness: FleetHarness;
  let intermediate: IssuedCertificate;
  const keys: KeyForms[] = [];
  const outputs: Array<{ source: string; text: string }> = [];

  const ctl = async (...args: string[]) => {
    const result = await harness.runCtl([...args]);
    outputs.push({ source: `certsyncctl ${args.join(' ')}`, text: result.stdout + result.stderr });
    // A refused or unreachable call prints nothing worth searching; only a server answer counts.
    // (4 = the server answered with a refusal, e.g. an unknown version: still a server message.)
    assert.ok(
      [0, 1, 4].includes(result.code),
      `certsyncctl ${args.join(' ')} exited ${result.code}: ${result.stderr}`,
    );
    if (result.code === 4) assert.doesNotMatch(result.stderr, /UNAUTHENTICATED|PERMISSION_DENIED/);
    return result;
  };

  const rpc = async (name: string, call: () => Promise<unknown>) => {
    const answer = await call().catch((error: unknown) => ({ error: String(error) }));
    outputs.push({ source: `admin ${name}`, text: JSON.stringify(answer) });
  };

  const pemsFor = async (
    keyType: 'rsa' | 'ec' | 'ed25519',
  ): Promise<{ pems: CertbotPemSet; leaf: IssuedCertificate }> => {
    const leaf = await issueLeaf(intermediate, {
      commonName: '*.example.test',
      dnsNames: ['*.example.test'],
      keyType,
    });
    return {
      leaf,
      pems: {
        cert: leaf.certPem,
        chain: intermediate.certPem,
        fullchain: leaf.certPem + intermediate.certPem,
        privkey: leaf.keyPem,
      },
    };
  };

  const rejectedCount = async () =>
    (await harness.admin.getStatus()).bundles[0]?.lastRejected?.at?.getTime() ?? 0;

  before(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-secrets-'));
    const set = await createWildcardSet({ keyType: 'rsa' });
    intermediate = set.intermediate;
    keys.push(keyForms('version 1 (rsa)', set.pems.privkey));
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    harness = await FleetHarness.create({
      workDir,
      liveDir,
      extraConfig: [`fleet: { mode: static, nodes: [${NODES.join(', ')}] }`],
      extraBundleConfig: [
        '    reload:',
        '      - { service: example_web, action: signal, signal: SIGHUP, timeoutMs: 3000 }',
      ],
    });
    await harness.startServer();
    const noDocker = [
      '--docker-socket',
      path.join(workDir, 'no-docker.sock'),
      '--log-level',
      'debug',
    ];
    for (const nodeId of NODES) await harness.startAgent(nodeId, undefined, noDocker);
  });

  after(async () => {
    await harness?.stop();
    if (workDir && !process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('a rollout with its error paths, then every output searched for key material', async (t) => {
    // Version 1 everywhere; its reload fails: the agents have no Docker socket.
    await harness.waitForConvergence(1, NODES);
    await waitFor('the failed reload', async () =>
      (await harness.admin.getStatus()).bundles[0]?.rollout?.state === 'failed' ? true : undefined,
    );

    // Rejected: a key that does not match the certificate, then a truncated key.
    const other = await pemsFor('ec');
    const mismatched = await pemsFor('ec');
    keys.push(keyForms('mismatched candidate (ec)', other.pems.privkey));
    let lastRejectedAt = await rejectedCount();
    await renewCertbotTree(path.join(workDir, 'le'), 'example.test', {
      ...mismatched.pems,
      privkey: other.pems.privkey,
    });
    await waitFor('the mismatched key to be rejected', async () =>
      (await rejectedCount()) > lastRejectedAt ? true : undefined,
    );
    const truncated = await pemsFor('rsa');
    const half = truncated.pems.privkey.slice(0, Math.floor(truncated.pems.privkey.length / 2));
    keys.push(keyForms('truncated candidate (rsa)', half));
    lastRejectedAt = await rejectedCount();
    await renewCertbotTree(path.join(workDir, 'le'), 'example.test', {
      ...truncated.pems,
      privkey: half,
    });
    await waitFor('the truncated key to be rejected', async () =>
      (await rejectedCount()) > lastRejectedAt ? true : undefined,
    );
    assert.equal((await harness.admin.getStatus()).bundles[0]?.currentVersion, 1);
    await ctl('--json', 'status');
    const rejectedFile = path.join(workDir, 'state', 'bundles', 'example', 'rejected.json');
    outputs.push({ source: 'state rejected.json', text: await fs.readFile(rejectedFile, 'utf8') });

    // Version 2 (ed25519); node-b has a symlink planted where the key goes and refuses it.
    const v2 = await pemsFor('ed25519');
    keys.push(keyForms('version 2 (ed25519)', v2.pems.privkey));
    const planted = path.join(harness.nodeDir('node-b'), KEY);
    await fs.rm(planted);
    await fs.symlink(path.join(workDir, 'elsewhere.pem'), planted);
    await renewCertbotTree(path.join(workDir, 'le'), 'example.test', v2.pems);
    await harness.waitForConvergence(2, ['node-a']);
    await waitFor('node-b to report the symlink', async () => {
      const node = (await harness.admin.getStatus()).bundles[0]?.nodes.find(
        (candidate) => candidate.nodeId === 'node-b',
      );
      return node?.lastError?.code === 'SYMLINK_TARGET' ? true : undefined;
    });
    await ctl('status');
    await fs.rm(planted);
    await harness.agents.get('node-b')!.stop();
    await harness.startAgent('node-b', undefined, [
      '--docker-socket',
      path.join(workDir, 'no-docker.sock'),
      '--log-level',
      'debug',
    ]);
    await harness.waitForConvergence(2, NODES);

    // Drift: someone edits the key on node-a; the agent reports it and the server restores it.
    await fs.writeFile(path.join(harness.nodeDir('node-a'), KEY), 'edited by hand\n');
    await waitFor('the key on node-a to be restored', async () =>
      (await fs.readFile(path.join(harness.nodeDir('node-a'), KEY), 'utf8')) === v2.pems.privkey
        ? true
        : undefined,
    );

    for (const args of [
      ['status'],
      ['--json', 'status'],
      ['nodes'],
      ['--json', 'nodes'],
      ['bundle', 'show', 'example'],
      ['bundle', 'show', 'example', '--version', '1'],
    ])
      await ctl(...args);
    for (const args of [
      ['history', 'example'],
      ['--json', 'history', 'example'],
      ['verify', 'example'],
      ['reload', 'example'],
      ['rollout', 'restart', 'example', '--version', '99'],
      ['rollout', 'status', 'example'],
      ['history'],
    ])
      await ctl(...args);
    await rpc('GetStatus', () => harness.admin.getStatus());
    await rpc('ListNodes', () => harness.admin.listNodes());
    await rpc('GetBundle v1', () => harness.admin.getBundle('example', 1));
    await rpc('GetBundle v2', () => harness.admin.getBundle('example', 2));
    await rpc('ListRollouts', () => harness.admin.listRollouts('example'));
    await sleep(300);
    const logDir = path.join(workDir, 'logs');
    for (const name of await fs.readdir(logDir))
      outputs.push({
        source: `log ${name}`,
        text: await fs.readFile(path.join(logDir, name), 'utf8'),
      });
    const historyFile = path.join(workDir, 'state', 'rollouts', 'example.json');
    outputs.push({
      source: 'state rollouts/example.json',
      text: await fs.readFile(historyFile, 'utf8'),
    });

    // The search must be able to fail: the key files on the nodes do hold key material.
    const nodeKey = await fs.readFile(path.join(harness.nodeDir('node-a'), KEY), 'utf8');
    assert.notDeepEqual(
      findKeyMaterial(nodeKey, keys.at(-1)!),
      [],
      'the scan finds a key where there is one',
    );
    const debugLines = outputs
      .filter((output) => output.source.startsWith('log '))
      .reduce(
        (sum, output) =>
          sum + output.text.split('\n').filter((line) => line.includes('"level":20')).length,
        0,
      );
    assert.ok(debugLines > 0, 'debug logging was on');

    const leaks = outputs.flatMap((output) =>
      keys.flatMap((key) =>
        findKeyMaterial(output.text, key).map((leak) => `${output.source}: ${leak}`),
      ),
    );
    const bytes = outputs.reduce((sum, output) => sum + Buffer.byteLength(output.text), 0);
    t.diagnostic(
      `searched ${outputs.length} outputs (${bytes} bytes, ${debugLines} debug lines) for ${keys.length} keys: ${leaks.length} leaks`,
    );
    assert.deepEqual(leaks, []);
  });
});
