import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import type { ValidatedBundle } from '../../server/bundle-validator';
import {
  createDockerClient,
  StaleVersionIndexError,
  type DockerConfigClient,
} from '../../server/docker-client';
import { newRollout, transitionRollout } from '../../server/rollout';
import {
  loadStateKey,
  StateCipher,
  StateDecryptionError,
  StateKeyError,
} from '../../server/state-cipher';
import { LABEL } from '../../server/swarm-objects';
import { SwarmLease } from '../../server/swarm-lease';
import { SwarmRolloutHistory } from '../../server/swarm-rollout-history';
import { SwarmVersionStore } from '../../server/swarm-version-store';
import type { NewVersion } from '../../server/version-store';
import { checkDockerEngine, startDockerEngine, type DockerEngine } from '../support/docker-engine';

const engineCheck = checkDockerEngine();

const validated: ValidatedBundle = {
  leaf: {
    subject: 'CN=*.example.test',
    issuer: 'CN=test',
    dnsNames: ['*.example.test'],
    serial: '01',
    notBefore: new Date('2026-01-01T00:00:00Z'),
    notAfter: new Date('2027-01-01T00:00:00Z'),
    fingerprintSha256: 'ab'.repeat(32),
  },
  chain: [],
  keyType: 'ec P-256',
  warnings: [],
};

/** A candidate whose key file holds a marker that must never appear in the swarm in clear. */
function candidate(bundle: string, label: string): NewVersion {
  const cert = Buffer.from(`certificate ${label}`);
  const key = Buffer.from(`PRIVATE-KEY-MARKER ${label} ${randomBytes(8).toString('hex')}`);
  return {
    bundle,
    sourceDir: `/live/${bundle}`,
    digest: sha256Hex(`${bundle}:${label}`),
    validated,
    files: [
      {
        source: 'fullchain.pem',
        target: 'full.crt',
        mode: 0o644,
        sha256: sha256Hex(cert),
        size: cert.length,
        content: cert,
      },
      {
        source: 'privkey.pem',
        target: 'key.pem',
        mode: 0o600,
        sha256: sha256Hex(key),
        size: key.length,
        content: key,
      },
    ],
  };
}

/**
 * The swarm state store against a real dockerd in swarm mode (one manager on loopback): versions
 * as sealed configs, the head pointer moved by compare-and-set on the config's version index,
 * pruning, history snapshots, and the lease.
 */
describe('swarm state store on a real swarm', { skip: engineCheck.skip }, () => {
  let engine: DockerEngine | undefined;
  let docker: DockerConfigClient;
  let cipher: StateCipher;
  const log = createSilentLogger();

  before(async () => {
    engineCheck.require();
    engine = await startDockerEngine('certsync-swarm-store');
    await engine.docker(['swarm', 'init', '--advertise-addr', '127.0.0.1']);
    docker = createDockerClient({ socketPath: engine.socketPath });
    cipher = new StateCipher(randomBytes(32));
  });

  after(async () => {
    await engine?.stop();
  });

  it('refuses a label update that carries a stale version index (the compare-and-set)', async () => {
    await docker.createConfig('cas-probe', { a: '1' }, Buffer.from('x'));
    const first = await docker.inspectConfig('cas-probe');
    await docker.updateConfigLabels(first, { a: '2' });
    await assert.rejects(docker.updateConfigLabels(first, { a: '3' }), StaleVersionIndexError);
    assert.equal((await docker.inspectConfig('cas-probe')).labels.a, '2');
  });

  it('stores versions sealed, reloads them in a new store, and keeps the key out of the swarm in clear', async () => {
    const store = await SwarmVersionStore.open(docker, cipher, ['web'], 10, log);
    const one = await store.accept(candidate('web', 'one'), new Date('2026-12-04T10:00:00Z'));
    const two = await store.accept(candidate('web', 'two'), new Date('2026-12-04T11:00:00Z'));
    assert.deepEqual([one.version, two.version], [1, 2]);

    const reopened = await SwarmVersionStore.open(docker, cipher, ['web'], 10, log);
    const current = reopened.current('web');
    assert.equal(current?.version, 2);
    assert.deepEqual(
      current?.files.map((file) => file.content),
      two.files.map((file) => file.content),
    );
    assert.equal(current?.validated.leaf.notAfter.getTime(), validated.leaf.notAfter.getTime());
    assert.deepEqual(
      (await reopened.get('web', 1))?.files.map((file) => file.sha256),
      one.files.map((file) => file.sha256),
    );

    const raw = await engine!.docker(['config', 'inspect', 'certsync-web-v000002']);
    const data = Buffer.from(
      (JSON.parse(raw) as Array<{ Spec: { Data: string } }>)[0]!.Spec.Data,
      'base64',
    );
    assert.equal(
      data.includes(Buffer.from('PRIVATE-KEY-MARKER')),
      false,
      'key bytes are not in the config in clear',
    );
    assert.equal(
      raw.includes(Buffer.from('PRIVATE-KEY-MARKER').toString('base64').slice(0, 16)),
      false,
    );
    const labels = (JSON.parse(raw) as Array<{ Spec: { Labels: Record<string, string> } }>)[0]!.Spec
      .Labels;
    assert.equal(labels[LABEL.version], '2');
    assert.equal(labels[LABEL.digest], two.digest);
  });

  it('does not open with another key', async () => {
    await assert.rejects(
      SwarmVersionStore.open(docker, new StateCipher(randomBytes(32)), ['web'], 10, log),
      (error: Error) => error.cause instanceof StateDecryptionError,
    );
  });

  it('two writers at once: both versions land under distinct numbers and the pointer names the newest', async () => {
    const a = await SwarmVersionStore.open(docker, cipher, ['race'], 10, log);
    const b = await SwarmVersionStore.open(docker, cipher, ['race'], 10, log);
    const [fromA, fromB] = await Promise.all([
      a.accept(candidate('race', 'a'), new Date()),
      b.accept(candidate('race', 'b'), new Date()),
    ]);
    assert.deepEqual([fromA.version, fromB.version].sort(), [1, 2]);
    const reopened = await SwarmVersionStore.open(docker, cipher, ['race'], 10, log);
    assert.equal(reopened.current('race')?.version, 2);
    assert.deepEqual(await reopened.listVersions('race'), [1, 2]);
  });

  it('prunes beyond versionsKept, reinstates with withdrawn digests, and keeps a rejection', async () => {
    const store = await SwarmVersionStore.open(docker, cipher, ['prune'], 2, log);
    const accepted = [];
    for (const label of ['1', '2', '3'])
      accepted.push(await store.accept(candidate('prune', label), new Date()));
    assert.deepEqual(await store.listVersions('prune'), [2, 3]);

    await store.reinstate('prune', 2);
    await store.recordRejection('prune', {
      at: new Date('2026-12-04T12:00:00Z'),
      reason: 'KEY_MISMATCH',
      message: 'm',
      digest: 'd',
      files: [],
    });
    const reopened = await SwarmVersionStore.open(docker, cipher, ['prune'], 2, log);
    assert.equal(reopened.current('prune')?.version, 2);
    assert.equal(reopened.isWithdrawn('prune', accepted[2]!.digest), true);
    assert.equal(reopened.lastRejected('prune')?.reason, 'KEY_MISMATCH');
    assert.equal(reopened.lastRejected('prune')?.at.toISOString(), '2026-12-04T12:00:00.000Z');
  });

  it('keeps the rollout history as one sealed snapshot, read back by a successor', async () => {
    const history = await SwarmRolloutHistory.open(docker, cipher, ['hist'], log);
    const rollout = newRollout('hist', 1, 'accepted', new Date('2026-12-04T10:00:00Z'));
    await history.save(rollout);
    transitionRollout(rollout, 'converged', new Date('2026-12-04T10:01:00Z'), 'all confirmed');
    rollout.reloadInFlight = 'vault';
    await history.save(rollout);

    const successor = await SwarmRolloutHistory.open(docker, cipher, ['hist'], log);
    const latest = successor.latest('hist');
    assert.equal(latest?.state, 'converged');
    assert.equal(latest?.reloadInFlight, 'vault');
    assert.equal(latest?.transitions[0]?.at.toISOString(), '2026-12-04T10:01:00.000Z');
    const snapshots = await docker.listConfigs({ [LABEL.kind]: 'history', [LABEL.bundle]: 'hist' });
    assert.equal(snapshots.length, 1, 'older snapshots are removed');
  });

  it('lease: a second server waits; it takes over only after expiry, and the first learns it lost', async () => {
    let lostTo = '';
    const first = new SwarmLease({
      docker,
      holderId: 'server-a',
      ttlMs: 3000,
      log,
      onLost: (holder) => (lostTo = holder),
    });
    await first.acquire();
    const second = new SwarmLease({
      docker,
      holderId: 'server-b',
      ttlMs: 3000,
      log,
      onLost: () => undefined,
    });
    assert.equal(await second.tryAcquire(), false, 'a live lease is not taken');
    assert.equal((await second.read())?.holder, 'server-a');

    // The same second server, 10 s later as it sees the clock: server-a's lease has expired.
    const later = new SwarmLease({
      docker,
      holderId: 'server-b',
      ttlMs: 3000,
      log,
      now: () => new Date(Date.now() + 10_000),
      onLost: () => undefined,
    });
    assert.equal(await later.tryAcquire(), true);
    for (let waited = 0; lostTo === '' && waited < 5000; waited += 100) await sleep(100);
    assert.equal(lostTo, 'server-b', 'the first server is told it lost the lease');
    await first.close();
    assert.equal(
      (await second.read())?.holder,
      'server-b',
      'closing a lost lease does not release the new holder',
    );
    await later.close();
    assert.equal((await second.read())?.holder, '', 'a server that stops releases its lease');
    assert.equal(await second.tryAcquire(), true);
    await second.close();
  });
});

describe('state key file', () => {
  it('accepts 64 hex characters or base64 of 32 bytes and refuses anything else, never echoing it', async () => {
    const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-state-key-'));
    const hex = path.join(dir, 'hex');
    await fs.writeFile(hex, `${'a1'.repeat(32)}\n`);
    assert.equal(loadStateKey(hex).length, 32);
    const b64 = path.join(dir, 'b64');
    await fs.writeFile(b64, randomBytes(32).toString('base64'));
    assert.equal(loadStateKey(b64).length, 32);
    const short = path.join(dir, 'short');
    await fs.writeFile(short, 'secret-but-short');
    assert.throws(
      () => loadStateKey(short),
      (error: Error) =>
        error instanceof StateKeyError && !error.message.includes('secret-but-short'),
    );
    assert.throws(() => loadStateKey(path.join(dir, 'missing')), /ENOENT/);
    await fs.rm(dir, { recursive: true });
  });

  it('binds each sealed object to its place: another AAD does not open', () => {
    const cipher = new StateCipher(randomBytes(32));
    const sealed = cipher.seal(Buffer.from('payload'), 'certsync:version:web:1');
    assert.equal(cipher.open(sealed, 'certsync:version:web:1').toString(), 'payload');
    assert.throws(() => cipher.open(sealed, 'certsync:version:web:2'), StateDecryptionError);
  });
});
