import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import type { ValidatedBundle } from '../../server/bundle-validator';
import { VersionStore, type NewVersion } from '../../server/version-store';

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

function candidate(label: string): NewVersion {
  const cert = Buffer.from(`certificate ${label}`);
  const key = Buffer.from(`key ${label}`);
  return {
    bundle: 'example',
    sourceDir: '/live/example',
    digest: sha256Hex(label),
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

test('versions survive a restart with their bytes and dates', async () => {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-store-'));
  const store = await VersionStore.open(stateDir, ['example'], 10, createSilentLogger());
  await store.accept(candidate('one'), new Date('2026-12-01T00:00:00Z'));
  await store.accept(candidate('two'), new Date('2026-12-02T00:00:00Z'));

  const reopened = await VersionStore.open(stateDir, ['example'], 10, createSilentLogger());
  const current = reopened.current('example');
  assert.equal(current?.version, 2);
  assert.equal(current?.acceptedAt.toISOString(), '2026-12-02T00:00:00.000Z');
  assert.equal(current?.validated.leaf.notAfter.getTime(), validated.leaf.notAfter.getTime());
  assert.equal(current?.files[1]?.content.toString(), 'key two');
  assert.equal((await reopened.get('example', 1))?.files[0]?.content.toString(), 'certificate one');
  await fs.rm(stateDir, { recursive: true, force: true });
});

test('stored files and folders are private to the server user', async () => {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-store-'));
  const store = await VersionStore.open(stateDir, ['example'], 10, createSilentLogger());
  await store.accept(candidate('one'), new Date());
  const versionDir = path.join(stateDir, 'bundles', 'example', 'v000001');
  assert.equal((await fs.stat(versionDir)).mode & 0o777, 0o700);
  for (const entry of await fs.readdir(versionDir)) {
    assert.equal((await fs.stat(path.join(versionDir, entry))).mode & 0o777, 0o600, entry);
  }
  await fs.rm(stateDir, { recursive: true, force: true });
});

test('a half-written version folder from a crash is discarded; numbering stays monotonic', async () => {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-store-'));
  const store = await VersionStore.open(stateDir, ['example'], 10, createSilentLogger());
  await store.accept(candidate('one'), new Date());
  const crashed = path.join(stateDir, 'bundles', 'example', '.v000002.tmp');
  await fs.mkdir(crashed);
  await fs.writeFile(path.join(crashed, '0.bin'), 'partial');

  const reopened = await VersionStore.open(stateDir, ['example'], 10, createSilentLogger());
  assert.equal(reopened.current('example')?.version, 1);
  await assert.rejects(fs.stat(crashed), { code: 'ENOENT' });
  assert.equal((await reopened.accept(candidate('two'), new Date())).version, 2);
  await fs.rm(stateDir, { recursive: true, force: true });
});

test('old versions are pruned beyond versionsKept, and rejections persist', async () => {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-store-'));
  const store = await VersionStore.open(stateDir, ['example'], 2, createSilentLogger());
  for (const label of ['a', 'b', 'c', 'd']) await store.accept(candidate(label), new Date());
  assert.deepEqual(await store.listVersions('example'), [3, 4]);

  await store.recordRejection('example', {
    at: new Date('2026-12-03T00:00:00Z'),
    reason: 'expired',
    message: 'leaf expired',
    digest: 'x',
    files: [],
  });
  const reopened = await VersionStore.open(stateDir, ['example'], 2, createSilentLogger());
  assert.equal(reopened.lastRejected('example')?.reason, 'expired');
  assert.equal(reopened.lastRejected('example')?.at.toISOString(), '2026-12-03T00:00:00.000Z');
  await fs.rm(stateDir, { recursive: true, force: true });
});

test('a damaged state folder stops the start with the file named, never serving the bytes', async () => {
  const stateDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-store-'));
  const store = await VersionStore.open(stateDir, ['example'], 10, createSilentLogger());
  await store.accept(candidate('one'), new Date());
  const bundleDir = path.join(stateDir, 'bundles', 'example');
  const storedKey = path.join(bundleDir, 'v000001', '1.bin');
  await fs.writeFile(storedKey, 'kex one');
  await assert.rejects(
    VersionStore.open(stateDir, ['example'], 10, createSilentLogger()),
    (error: Error) => {
      assert.match(
        error.message,
        /version 1 .* is unreadable .*1\.bin \(key\.pem of version 1\) does not match its recorded SHA-256/,
      );
      assert.ok(!error.message.includes('kex one'), 'no content in the message');
      return true;
    },
  );

  await fs.writeFile(storedKey, 'key one');
  await fs.writeFile(path.join(bundleDir, 'current.json'), '{"version":');
  await assert.rejects(
    VersionStore.open(stateDir, ['example'], 10, createSilentLogger()),
    /current\.json is not valid JSON .*; restore it from a backup or move it aside/,
  );
  await fs.rm(stateDir, { recursive: true, force: true });
});
