import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import type { GetStatusResponse } from '../../common/contract';
import { sha256Hex } from '../../common/digest';
import { createCertbotTree, renewCertbotTree } from '../support/certbot-tree';
import { FleetHarness, HARNESS_TARGETS } from '../support/fleet-harness';
import {
  createWildcardSet,
  issueLeaf,
  type CertbotPemSet,
  type IssuedCertificate,
} from '../support/pki';
import { PROJECT_ROOT, runToCompletion, waitFor } from '../support/processes';
import { adminTransportArgs } from '../support/transport-fixture';

// Every certsyncctl command the README shows, run as an operator would against a real server and
// two real agents over TLS with the admin token: status exits 1 while a node is away and 0 once it
// is back, `rollout status --watch` follows a real renewal node by node, rollback, pause/resume,
// import (valid and invalid), and the exit codes. The last test fails when the README shows a
// command shape this file did not run.

const NODES = ['node-a', 'node-b'];
const BUNDLE = 'example';

/** The words of certsyncctl's command tree; anything else that is not a flag is a value. */
const COMMAND_WORDS = new Set([
  'status',
  'nodes',
  'bundle',
  'show',
  'history',
  'rollout',
  'restart',
  'reload',
  'rollback',
  'pause',
  'resume',
  'import',
  'verify',
]);

/** `rollout status --watch example --timeout 60` → `rollout status --watch _ --timeout _`. */
function shapeOf(args: readonly string[]): string {
  return args
    .map((token) => token.replace(/[[\]]/g, ''))
    .filter((token) => token.length > 0 && token !== '...')
    .map((token) =>
      token.startsWith('-') ? token.split('=')[0]! : COMMAND_WORDS.has(token) ? token : '_',
    )
    .join(' ');
}

/** Every certsyncctl command line in README.md: in shell blocks and in inline code. */
async function readmeCommandShapes(): Promise<Map<string, string>> {
  const readme = await fs.readFile(path.join(PROJECT_ROOT, 'README.md'), 'utf8');
  const lines: string[] = [];
  for (const block of readme.matchAll(/```sh\n([\s\S]*?)```/g)) {
    const joined = block[1]!.replace(/\\\n\s*/g, ' ');
    for (const line of joined.split('\n')) {
      const command = line.replace(/#.*$/, '').trim();
      if (command.startsWith('certsyncctl ')) lines.push(command);
    }
  }
  for (const inline of readme.matchAll(/`(certsyncctl [^`]+)`/g)) lines.push(inline[1]!.trim());
  const shapes = new Map<string, string>();
  for (const line of lines) shapes.set(shapeOf(line.split(/\s+/).slice(1)), line);
  return shapes;
}

describe('certsyncctl: every operator command against a real fleet', () => {
  let workDir: string;
  let harness: FleetHarness;
  let intermediate: IssuedCertificate;
  const ran = new Set<string>();
  const pemsByVersion = new Map<number, CertbotPemSet>();

  /** Runs certsyncctl with the harness's address and admin credential, and records the shape. */
  const ctl = async (args: string[]) => {
    ran.add(shapeOf(args));
    return harness.runCtl(args);
  };

  const bundleStatus = async () =>
    (await harness.admin.getStatus()).bundles.find((bundle) => bundle.name === BUNDLE)!;

  const newPems = async (): Promise<CertbotPemSet> => {
    const leaf = await issueLeaf(intermediate, {
      commonName: '*.example.test',
      dnsNames: ['*.example.test'],
    });
    return {
      cert: leaf.certPem,
      chain: intermediate.certPem,
      fullchain: leaf.certPem + intermediate.certPem,
      privkey: leaf.keyPem,
    };
  };

  const renew = async (pems: CertbotPemSet) =>
    renewCertbotTree(path.join(workDir, 'le'), 'example.test', pems);

  /** The bytes each node holds, by node, as digests of the two managed files. */
  const nodeDigests = async (nodeId: string) => ({
    fullchain: sha256Hex(
      await fs.readFile(path.join(harness.nodeDir(nodeId), HARNESS_TARGETS.fullchain.target)),
    ),
    privkey: sha256Hex(
      await fs.readFile(path.join(harness.nodeDir(nodeId), HARNESS_TARGETS.privkey.target)),
    ),
  });

  const assertNodesHold = async (pems: CertbotPemSet, nodes = NODES) => {
    for (const nodeId of nodes) {
      assert.deepEqual(
        await nodeDigests(nodeId),
        { fullchain: sha256Hex(pems.fullchain), privkey: sha256Hex(pems.privkey) },
        nodeId,
      );
    }
  };

  const rolloutDone = (version: number) =>
    waitFor(`rollout of version ${version} to be done on both nodes`, async () => {
      const bundle = await bundleStatus();
      const done =
        bundle.currentVersion === version &&
        bundle.rollout?.version === version &&
        bundle.rollout.state === 'done';
      return done && bundle.nodesInSync === NODES.length ? bundle : undefined;
    });

  /** Waits until the server logged the start of one more rollout watch. */
  const watchStarted = async (count: number) =>
    waitFor(`${count} rollout watch(es) in the server log`, async () => {
      const log = await fs.readFile(harness.server!.logFile, 'utf8');
      return (log.match(/Rollout watch started/g)?.length ?? 0) >= count ? true : undefined;
    });

  before(async () => {
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-ctl-'));
    const set = await createWildcardSet();
    intermediate = set.intermediate;
    pemsByVersion.set(1, set.pems);
    const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
    harness = await FleetHarness.create({
      workDir,
      liveDir,
      bundleName: BUNDLE,
      extraConfig: [
        'convergeTimeoutMs: 1000',
        `fleet: { mode: static, nodes: [${NODES.join(', ')}] }`,
      ],
    });
    await harness.startServer();
    for (const nodeId of NODES) await harness.startAgent(nodeId);
    await rolloutDone(1);
  });

  after(async () => {
    await harness.stop();
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(workDir, { recursive: true, force: true });
  });

  test('status, nodes, bundle show, history and rollout status read the fleet', async () => {
    const status = await ctl(['status']);
    assert.equal(status.code, 0, status.stderr);
    assert.match(status.stdout, /bundle example/);
    assert.match(status.stdout, /2\/2 nodes in sync/);
    assert.match(status.stdout, /\(\d+ days\)/);
    for (const nodeId of NODES) assert.match(status.stdout, new RegExp(nodeId));

    const json = await ctl(['--json', 'status']);
    assert.equal(json.code, 0, json.stderr);
    const parsed = JSON.parse(json.stdout) as GetStatusResponse;
    assert.equal(parsed.bundles[0]?.currentVersion, 1);
    assert.equal(parsed.bundles[0]?.paused, false);

    const nodes = await ctl(['nodes']);
    assert.equal(nodes.code, 0, nodes.stderr);
    assert.deepEqual(
      nodes.stdout
        .trim()
        .split('\n')
        .map((line) => line.split('\t')[0])
        .sort(),
      NODES,
    );

    const show = await ctl(['bundle', 'show', BUNDLE]);
    assert.equal(show.code, 0, show.stderr);
    assert.match(show.stdout, new RegExp(`^bundle ${BUNDLE}  ·  version 1  ·  accepted `));
    // Modes as the config writes them; the key's digest but never its bytes.
    assert.match(show.stdout, /\b0600\b/);
    assert.match(show.stdout, /\b0644\b/);
    assert.match(show.stdout, /^leaf: /m);
    assert.doesNotMatch(show.stdout, /PRIVATE KEY/);
    const showJson = await ctl(['--json', 'bundle', 'show', BUNDLE]);
    assert.equal(showJson.code, 0, showJson.stderr);
    const shown = JSON.parse(showJson.stdout) as { version: number; files: { sha256: string }[] };
    assert.equal(shown.version, 1);
    for (const file of shown.files) assert.ok(show.stdout.includes(file.sha256), file.sha256);
    const showVersion = await ctl(['bundle', 'show', BUNDLE, '--version', '1']);
    assert.equal(showVersion.code, 0, showVersion.stderr);
    const missingVersion = await ctl(['bundle', 'show', BUNDLE, '--version', '9']);
    assert.equal(missingVersion.code, 4, 'an unknown version is refused by the server');
    assert.match(missingVersion.stderr, /no version 9/);

    for (const args of [['history'], ['history', BUNDLE], ['history', BUNDLE, '-n', '1']]) {
      const history = await ctl(args);
      assert.equal(history.code, 0, history.stderr);
      assert.match(history.stdout, /example: rollout of version 1: DONE/);
    }

    const rollout = await ctl(['rollout', 'status', BUNDLE]);
    assert.equal(rollout.code, 0, rollout.stderr);
    assert.match(rollout.stdout, /rollout of version 1: DONE \(2\/2 confirmed/);
  });

  test('a node offline: status exits 1, the watch shows it coming back and ends DONE, status exits 0', async () => {
    await harness.agents.get('node-b')!.stop();
    const pems = await newPems();
    pemsByVersion.set(2, pems);
    await renew(pems);
    await waitFor('node-a to hold version 2', async () => {
      const bundle = await bundleStatus();
      return bundle.nodes.find((node) => node.nodeId === 'node-a')?.appliedVersion === 2
        ? true
        : undefined;
    });

    const away = await ctl(['status']);
    assert.equal(away.code, 1, 'not in sync while node-b is away');
    assert.match(away.stdout, /1\/2 nodes in sync/);

    const nodes = await ctl(['nodes']);
    assert.match(nodes.stdout, /node-b\toffline\tlast seen \d{4}-/);
    assert.match(nodes.stdout, /node-a\tconnected\tsince \d{4}-/);

    await waitFor('the rollout to stall', async () =>
      (await bundleStatus()).rollout?.state === 'stalled' ? true : undefined,
    );
    const stalled = await ctl(['rollout', 'status', BUNDLE]);
    assert.equal(stalled.code, 5, 'a stalled rollout is unfinished');
    assert.match(stalled.stdout, /STALLED/);
    assert.match(stalled.stdout, /node-b/);

    const watching = ctl(['rollout', 'status', '--watch', BUNDLE, '--timeout', '60']);
    await watchStarted(1);
    await harness.startAgent('node-b');
    const watched = await watching;
    assert.equal(watched.code, 0, watched.stdout + watched.stderr);
    assert.match(watched.stdout, /rollout of version 2: STALLED \(1\/2 confirmed/);
    assert.match(watched.stdout, /node node-b confirmed version 2 \(2\/2 confirmed\)/);
    assert.match(watched.stdout, /stalled → converged/);
    assert.match(watched.stdout, /ended: DONE/);

    const back = await ctl(['status']);
    assert.equal(back.code, 0, back.stdout);
    await assertNodesHold(pems);
  });

  test('rollout status --watch --next follows a real renewal from its start to DONE', async () => {
    // No --timeout, as the README shows it: the renewal below must end the watch.
    const watching = ctl(['rollout', 'status', '--watch', '--next', BUNDLE]);
    await watchStarted(2);
    const pems = await newPems();
    pemsByVersion.set(3, pems);
    await renew(pems);
    const watched = await watching;
    assert.equal(watched.code, 0, watched.stdout + watched.stderr);
    assert.match(watched.stdout, /rollout of version 3: DISTRIBUTING/);
    for (const nodeId of NODES)
      assert.match(watched.stdout, new RegExp(`node ${nodeId} confirmed version 3`));
    assert.match(watched.stdout, /distributing → converged/);
    assert.match(watched.stdout, /rollout of version 3 ended: DONE/);
    await rolloutDone(3);
    await assertNodesHold(pems);

    const plain = await ctl(['rollout', 'status', '--watch', BUNDLE]);
    assert.equal(plain.code, 0, plain.stderr);
    assert.match(
      plain.stdout,
      /rollout of version 3 ended: DONE/,
      'a finished rollout ends the watch at once',
    );
    const json = await ctl(['--json', 'rollout', 'status', '--watch', BUNDLE]);
    assert.equal(json.code, 0, json.stderr);
    assert.equal(JSON.parse(json.stdout.trim().split('\n')[0]!).kind, 'snapshot');
  });

  test('rollout restart, reload and reload --force', async () => {
    const restart = await ctl(['rollout', 'restart', BUNDLE]);
    assert.equal(restart.code, 0, restart.stderr);
    assert.match(restart.stdout, /rollout started/);
    await rolloutDone(3);
    for (const args of [
      ['reload', BUNDLE],
      ['reload', BUNDLE, '--force'],
    ]) {
      const reload = await ctl(args);
      assert.equal(reload.code, 0, reload.stderr);
      assert.match(reload.stdout, /reload requested/);
    }
    const unknown = await ctl(['reload', 'no-such-bundle']);
    assert.equal(unknown.code, 4);
    assert.match(unknown.stderr, /no bundle named "no-such-bundle"/);
  });

  test('rollback goes to the previous done version, rollback --to to a named one; bytes follow', async () => {
    const back = await ctl(['rollback', BUNDLE]);
    assert.equal(back.code, 0, back.stderr);
    assert.match(back.stdout, /rollback started/);
    await rolloutDone(2);
    await assertNodesHold(pemsByVersion.get(2)!);

    const to = await ctl(['rollback', BUNDLE, '--to', '1']);
    assert.equal(to.code, 0, to.stderr);
    await rolloutDone(1);
    await assertNodesHold(pemsByVersion.get(1)!);

    const same = await ctl(['rollback', BUNDLE, '--to', '1']);
    assert.equal(same.code, 4, 'rolling back to the current version is refused');
    const restart = await ctl(['rollout', 'restart', BUNDLE, '--version', '3']);
    assert.equal(restart.code, 0, restart.stderr);
    await rolloutDone(3);
    await assertNodesHold(pemsByVersion.get(3)!);
  });

  test('pause: a renewal is neither read nor distributed, also across a restart; resume rolls it out', async () => {
    const pause = await ctl(['pause', BUNDLE]);
    assert.equal(pause.code, 0, pause.stderr);
    const before = await Promise.all(NODES.map(nodeDigests));

    const pems = await newPems();
    await renew(pems);
    // Long enough for several settle windows (200 ms): an unpaused intake would have read it.
    await new Promise((resolve) => setTimeout(resolve, 1_500));
    assert.deepEqual(
      await Promise.all(NODES.map(nodeDigests)),
      before,
      'nothing reached the nodes while paused',
    );
    assert.equal((await bundleStatus()).currentVersion, 3);

    await harness.server!.stop();
    await harness.startServer();
    const paused = await ctl(['status']);
    assert.match(paused.stdout, /PAUSED/, 'the pause survives a restart');
    assert.equal((await bundleStatus()).currentVersion, 3);
    assert.deepEqual(await Promise.all(NODES.map(nodeDigests)), before);
    const refused = await ctl(['rollout', 'restart', BUNDLE]);
    assert.equal(refused.code, 4);
    assert.match(refused.stderr, /paused/);

    const resume = await ctl(['resume', BUNDLE]);
    assert.equal(resume.code, 0, resume.stderr);
    await rolloutDone(4);
    await assertNodesHold(pems);
    pemsByVersion.set(4, pems);
  });

  test('import: a valid bundle becomes a version on every node; an invalid one is refused with the reason', async () => {
    const leaf = await issueLeaf(intermediate, {
      commonName: '*.example.test',
      dnsNames: ['*.example.test'],
    });
    const files = {
      cert: path.join(workDir, 'import-cert.pem'),
      key: path.join(workDir, 'import-key.pem'),
      chain: path.join(workDir, 'import-chain.pem'),
    };
    await fs.writeFile(files.cert, leaf.certPem);
    await fs.writeFile(files.key, leaf.keyPem, { mode: 0o600 });
    await fs.writeFile(files.chain, intermediate.certPem);

    // As a deploy hook on another host calls it (the README's example): every transport flag given.
    const hook = [
      '--server',
      `localhost:${harness.port}`,
      '--ca-file',
      harness.credentials.caFile,
      '--token-file',
      harness.credentials.adminTokenFile,
    ];
    const hookArgs = [
      ...hook,
      'import',
      BUNDLE,
      '--cert',
      files.cert,
      '--key',
      files.key,
      '--chain',
      files.chain,
    ];
    ran.add(shapeOf(hookArgs));
    const imported = await runToCompletion('ctl', hookArgs);
    assert.equal(imported.code, 0, imported.stderr);
    assert.match(imported.stdout, /version 5 imported/);
    await rolloutDone(5);
    await assertNodesHold({
      cert: leaf.certPem,
      chain: intermediate.certPem,
      fullchain: leaf.certPem + intermediate.certPem,
      privkey: leaf.keyPem,
    });

    const other = await issueLeaf(intermediate, {
      commonName: '*.example.test',
      dnsNames: ['*.example.test'],
    });
    const wrongKey = path.join(workDir, 'wrong-key.pem');
    await fs.writeFile(wrongKey, other.keyPem, { mode: 0o600 });
    const before = await Promise.all(NODES.map(nodeDigests));
    const rejected = await ctl([
      'import',
      BUNDLE,
      '--cert',
      files.cert,
      '--key',
      wrongKey,
      '--chain',
      files.chain,
    ]);
    assert.equal(rejected.code, 4, 'an invalid import is refused');
    assert.match(rejected.stderr, /import rejected \(key-mismatch\)/);
    assert.equal((await bundleStatus()).currentVersion, 5);
    assert.deepEqual(await Promise.all(NODES.map(nodeDigests)), before);

    const missingFile = await ctl([
      'import',
      BUNDLE,
      '--cert',
      path.join(workDir, 'nope.pem'),
      '--key',
      wrongKey,
    ]);
    assert.equal(missingFile.code, 2, 'an unreadable file is a usage error');

    // The source still holds version 4's content: a rescan must not take it back over the import.
    await new Promise((resolve) => setTimeout(resolve, 600));
    assert.equal((await bundleStatus()).currentVersion, 5);

    const logs = await fs.readFile(harness.server!.logFile, 'utf8');
    const keyBody = leaf.keyPem.split('\n')[1]!;
    assert.ok(!logs.includes(keyBody), 'the imported key never reaches the server log');
  });

  test('verify without a verify section, usage errors, an unreachable server, the version', async () => {
    const verify = await ctl(['verify', BUNDLE]);
    assert.equal(verify.code, 4, 'no reload target with a verify section: refused');
    assert.match(verify.stderr, /has a verify section/);

    const quiet = await ctl(['rollout', 'status', '--watch', '--next', '--timeout', '1', BUNDLE]);
    assert.equal(quiet.code, 5, 'nothing happened in time: not done');
    assert.match(quiet.stdout, new RegExp(`no rollout of ${BUNDLE} started in that time`));

    const usage = await ctl(['rollout', 'status']);
    assert.equal(usage.code, 2, 'a missing argument is a usage error');
    const badNumber = await ctl(['rollback', BUNDLE, '--to', 'two']);
    assert.equal(badNumber.code, 2);

    const version = await ctl(['-V']);
    assert.equal(version.code, 0);
    assert.match(version.stdout, /\d+\.\d+\.\d+/);

    // The README's first example passes every transport flag itself.
    const explicit = [
      '--server',
      `localhost:${harness.port}`,
      '--ca-file',
      harness.credentials.caFile,
      '--token-file',
      harness.credentials.adminTokenFile,
      'status',
    ];
    ran.add(shapeOf(explicit));
    assert.equal((await runToCompletion('ctl', explicit)).code, 0);

    // The streaming RPC goes through the same access check as the others.
    const noToken = await runToCompletion('ctl', [
      '--server',
      `localhost:${harness.port}`,
      '--ca-file',
      harness.credentials.caFile,
      'rollout',
      'status',
      '--watch',
      BUNDLE,
    ]);
    assert.equal(noToken.code, 4, noToken.stderr);
    assert.match(noToken.stderr, /needs the admin credential/);

    const unreachable = await runToCompletion('ctl', [
      '--server',
      '127.0.0.1:1',
      ...adminTransportArgs(harness.credentials, 'tls'),
      'status',
    ]);
    assert.equal(unreachable.code, 3, unreachable.stderr);
  });

  test('the README shows no certsyncctl command this file did not run', async () => {
    const shapes = await readmeCommandShapes();
    assert.ok(shapes.size >= 15, `found only ${shapes.size} commands in README.md`);
    const missing = [...shapes].filter(([shape]) => !ran.has(shape)).map(([, line]) => line);
    assert.deepEqual(missing, [], 'README commands no test runs');
  });
});
