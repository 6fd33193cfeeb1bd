import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import pino from 'pino';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import { BundleIntake, rejectWaitMs } from '../../server/bundle-intake';
import { BundleValidationError } from '../../server/bundle-validation-error';
import { parseServerConfig } from '../../server/config';
import { VersionStore, type BundleVersion } from '../../server/version-store';
import { createCertbotTree, renewCertbotTree } from '../../test/support/certbot-tree';
import {
  createWildcardSet,
  issueLeaf,
  type CertbotPemSet,
  type IssuedCertificate,
} from '../../test/support/pki';
import { waitFor } from '../../test/support/processes';

const SETTLE_MS = 100;
/** Long enough for the slow writers below, whose pauses are a few settle windows. */
const REJECT_SETTLE_MS = 1_000;

interface LogRecord {
  msg: string;
  level: number;
  reason?: string;
  waitMs?: number;
  err?: { message: string };
}

async function setUp(
  options: { paused?: () => boolean; rejectSettleMs?: number; plainFolder?: boolean } = {},
) {
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-intake-'));
  const set = await createWildcardSet();
  const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', set.pems);
  // An operator's folder of plain files instead of certbot's links.
  const plainDir = path.join(workDir, 'site');
  if (options.plainFolder) {
    await fs.mkdir(plainDir);
    await fs.writeFile(path.join(plainDir, 'fullchain.pem'), set.pems.fullchain);
    await fs.writeFile(path.join(plainDir, 'privkey.pem'), set.pems.privkey, { mode: 0o600 });
  }
  const config = parseServerConfig({
    insecure: true,
    stateDir: path.join(workDir, 'state'),
    bundles: [
      {
        name: 'example',
        source: options.plainFolder ? plainDir : liveDir,
        files: [
          { source: 'fullchain.pem', target: 'full.crt', mode: '0644' },
          { source: 'privkey.pem', target: 'key.pem', mode: '0600' },
        ],
        expectNames: ['*.example.test'],
      },
    ],
  });
  const bundle = config.bundles[0]!;
  const store = await VersionStore.open(config.stateDir, ['example'], 10, createSilentLogger());
  const accepted: BundleVersion[] = [];
  const rejections: string[] = [];
  const logs: LogRecord[] = [];
  const intake = new BundleIntake({
    bundle,
    store,
    settleMs: SETTLE_MS,
    rejectSettleMs: options.rejectSettleMs ?? REJECT_SETTLE_MS,
    rescanIntervalMs: 60_000,
    usePolling: false,
    limits: config.limits,
    onAccepted: (version) => {
      accepted.push(version);
    },
    onRejected: (reason) => {
      rejections.push(reason);
    },
    log: pino(
      { level: 'debug' },
      { write: (line: string) => void logs.push(JSON.parse(line) as LogRecord) },
    ),
    ...(options.paused ? { isPaused: options.paused } : {}),
  });
  await intake.requestCheck();
  const renew = (pems: CertbotPemSet, delayBetweenLinksMs = 0) =>
    renewCertbotTree(path.join(workDir, 'le'), 'example.test', pems, { delayBetweenLinksMs });
  const tearDown = async () => {
    await intake.close();
    await fs.rm(workDir, { recursive: true, force: true });
  };
  return { set, store, intake, accepted, rejections, logs, plainDir, renew, tearDown };
}

async function renewedPems(
  intermediate: IssuedCertificate,
): Promise<{ pems: CertbotPemSet; leaf: IssuedCertificate }> {
  const leaf = await issueLeaf(intermediate, {
    commonName: '*.example.test',
    dnsNames: ['*.example.test', 'example.test'],
  });
  const pems = {
    cert: leaf.certPem,
    chain: intermediate.certPem,
    fullchain: leaf.certPem + intermediate.certPem,
    privkey: leaf.keyPem,
  };
  return { pems, leaf };
}

test('a certbot renewal becomes the next version with exactly the new bytes', async () => {
  const context = await setUp();
  try {
    assert.equal(context.store.current('example')?.version, 1);
    const { pems, leaf } = await renewedPems(context.set.intermediate);
    await context.renew(pems);

    const version = await waitFor(
      'version 2',
      async () =>
        context.store.current('example')?.version === 2
          ? context.store.current('example')
          : undefined,
      5_000,
    );
    assert.equal(version.validated.leaf.fingerprintSha256, leaf.fingerprintSha256);
    assert.equal(
      version.files.find((file) => file.target === 'full.crt')?.sha256,
      sha256Hex(pems.fullchain),
    );
    assert.equal(
      version.files.find((file) => file.target === 'key.pem')?.sha256,
      sha256Hex(pems.privkey),
    );
    assert.deepEqual(
      context.accepted.map((accepted) => accepted.version),
      [1, 2],
    );
  } finally {
    await context.tearDown();
  }
});

test('a certbot swap is accepted after the quick window, with nothing rejected', async () => {
  // With a reject wait this long, only the quick window can accept within waitFor's limit.
  const context = await setUp({ rejectSettleMs: 600_000 });
  try {
    const { pems, leaf } = await renewedPems(context.set.intermediate);
    await context.renew(pems);

    const version = await waitFor(
      'version 2',
      async () =>
        context.store.current('example')?.version === 2
          ? context.store.current('example')
          : undefined,
      5_000,
    );
    assert.equal(version.validated.leaf.fingerprintSha256, leaf.fingerprintSha256);
    assert.deepEqual(context.rejections, []);
    assert.equal(context.store.lastRejected('example'), undefined);
  } finally {
    await context.tearDown();
  }
});

test('an operator copying files one by one causes no rejection; the finished copy is accepted', async () => {
  const context = await setUp({ plainFolder: true });
  try {
    const { pems, leaf } = await renewedPems(context.set.intermediate);
    const staging = path.join(context.plainDir, '..', 'staging');
    await fs.mkdir(staging);
    await fs.writeFile(path.join(staging, 'fullchain.pem'), pems.fullchain);
    await fs.writeFile(path.join(staging, 'privkey.pem'), pems.privkey, { mode: 0o600 });

    await fs.copyFile(
      path.join(staging, 'fullchain.pem'),
      path.join(context.plainDir, 'fullchain.pem'),
    );
    // The pause outlasts the quick window: the intake reads the new fullchain with the old key.
    await waitFor(
      'the half-copied folder read and held back',
      async () =>
        context.logs.some((record) => record.reason === 'key-mismatch' && record.waitMs)
          ? true
          : undefined,
      5_000,
    );
    await fs.copyFile(
      path.join(staging, 'privkey.pem'),
      path.join(context.plainDir, 'privkey.pem'),
    );

    const version = await waitFor(
      'version 2',
      async () =>
        context.store.current('example')?.version === 2
          ? context.store.current('example')
          : undefined,
      5_000,
    );
    assert.equal(version.validated.leaf.fingerprintSha256, leaf.fingerprintSha256);
    assert.equal(
      version.files.find((file) => file.target === 'key.pem')?.sha256,
      sha256Hex(pems.privkey),
    );
    // Past the reject wait of the half-copied state: still nothing recorded.
    await sleep(REJECT_SETTLE_MS + SETTLE_MS * 2);
    assert.deepEqual(context.rejections, []);
    assert.equal(context.store.lastRejected('example'), undefined);
    assert.equal(context.store.current('example')?.version, 2);
  } finally {
    await context.tearDown();
  }
});

test('repeated renewals keep being seen', async () => {
  const context = await setUp();
  try {
    for (const expected of [2, 3, 4]) {
      const { pems } = await renewedPems(context.set.intermediate);
      await context.renew(pems);
      await waitFor(
        `version ${expected}`,
        async () => (context.store.current('example')?.version === expected ? true : undefined),
        5_000,
      );
    }
  } finally {
    await context.tearDown();
  }
});

test('a slow half-swapped renewal is never accepted; only the complete one is', async () => {
  const context = await setUp();
  try {
    const { pems, leaf } = await renewedPems(context.set.intermediate);
    // Each link swap is further apart than the settle window, so the intake reads mixed states.
    await context.renew(pems, SETTLE_MS * 4);
    await waitFor(
      'version 2',
      async () => (context.store.current('example')?.version === 2 ? true : undefined),
      5_000,
    );
    await sleep(SETTLE_MS * 4);

    const fingerprints = context.accepted.map(
      (version) => version.validated.leaf.fingerprintSha256,
    );
    assert.deepEqual(fingerprints, [context.set.leaf.fingerprintSha256, leaf.fingerprintSha256]);
    assert.deepEqual(context.rejections, [], 'swaps closer than the reject wait are no rejection');
    for (const version of context.accepted) {
      const key = version.files.find((file) => file.target === 'key.pem');
      const expectedKey = version.version === 1 ? context.set.pems.privkey : pems.privkey;
      assert.equal(
        key?.sha256,
        sha256Hex(expectedKey),
        `version ${version.version} pairs its own key`,
      );
    }
  } finally {
    await context.tearDown();
  }
});

test('a renewal whose key does not match is rejected once, after the reject wait, naming the file', async () => {
  const context = await setUp();
  try {
    const { pems } = await renewedPems(context.set.intermediate);
    const stranger = await issueLeaf(context.set.intermediate, { dnsNames: ['*.example.test'] });
    await context.renew({ ...pems, privkey: stranger.keyPem });

    const rejected = await waitFor(
      'a rejection',
      async () => context.store.lastRejected('example'),
      5_000,
    );
    assert.equal(rejected.reason, 'key-mismatch');
    assert.match(rejected.message, /private key in \S*archive\/example\.test\/privkey2\.pem /);
    assert.equal(context.store.current('example')?.version, 1);

    // The quick read held the candidate back first; the rejection came from the later read.
    const waiting = context.logs.findIndex(
      (record) => record.reason === 'key-mismatch' && (record.waitMs ?? 0) > 0,
    );
    const warned = context.logs.findIndex((record) =>
      record.msg.startsWith('Candidate bundle rejected'),
    );
    assert.ok(waiting !== -1, 'the quick read logged a wait, not a rejection');
    assert.ok(warned > waiting, 'the rejection was logged after the wait');
    assert.ok((context.logs[waiting]?.waitMs ?? 0) <= REJECT_SETTLE_MS);

    await sleep(REJECT_SETTLE_MS + SETTLE_MS * 2);
    assert.deepEqual(context.rejections, ['key-mismatch'], 'recorded once');
    assert.equal(context.store.current('example')?.version, 1);
    assert.deepEqual(
      context.accepted.map((version) => version.version),
      [1],
    );
    assert.ok(!rejected.message.includes('PRIVATE KEY'));
    assert.ok(!JSON.stringify(context.logs).includes('PRIVATE KEY'));
  } finally {
    await context.tearDown();
  }
});

test('an empty key file and an expired leaf are rejected with their reasons', async () => {
  const context = await setUp();
  try {
    const { pems } = await renewedPems(context.set.intermediate);
    await context.renew({ ...pems, privkey: '' });
    const empty = await waitFor(
      'empty-file rejection',
      async () => context.store.lastRejected('example'),
      5_000,
    );
    assert.equal(empty.reason, 'empty-file');

    const expired = await issueLeaf(context.set.intermediate, {
      dnsNames: ['*.example.test'],
      notBefore: new Date(Date.now() - 10 * 86_400_000),
      notAfter: new Date(Date.now() - 86_400_000),
    });
    const expiredPems = {
      cert: expired.certPem,
      chain: context.set.intermediate.certPem,
      fullchain: expired.certPem + context.set.intermediate.certPem,
      privkey: expired.keyPem,
    };
    await context.renew(expiredPems);
    const rejection = await waitFor(
      'expired rejection',
      async () => {
        const record = context.store.lastRejected('example');
        return record?.reason === 'expired' ? record : undefined;
      },
      5_000,
    );
    assert.match(rejection.message, /expired/);
    assert.equal(context.store.current('example')?.version, 1);
  } finally {
    await context.tearDown();
  }
});

test('a renewal with identical content creates no new version', async () => {
  const context = await setUp();
  try {
    await context.renew(context.set.pems);
    await sleep(SETTLE_MS * 6);
    await context.intake.requestCheck();
    assert.equal(context.store.current('example')?.version, 1);
    assert.deepEqual(
      context.accepted.map((version) => version.version),
      [1],
    );
  } finally {
    await context.tearDown();
  }
});

test('an import is validated like the source, becomes the next version, and the source does not take it back', async () => {
  const context = await setUp();
  try {
    const { pems, leaf } = await renewedPems(context.set.intermediate);
    const imported = await context.intake.importCandidate({
      cert: Buffer.from(pems.cert),
      key: Buffer.from(pems.privkey),
      chain: Buffer.from(pems.chain),
    });
    assert.equal(imported?.version, 2);
    assert.equal(imported?.sourceDir, 'import');
    assert.equal(imported?.validated.leaf.fingerprintSha256, leaf.fingerprintSha256);
    assert.equal(
      imported?.files.find((file) => file.target === 'full.crt')?.sha256,
      sha256Hex(pems.fullchain),
    );
    assert.equal(
      imported?.files.find((file) => file.target === 'key.pem')?.sha256,
      sha256Hex(pems.privkey),
    );

    // The source still holds version 1's files: a check must leave the import current.
    await context.intake.requestCheck();
    assert.equal(context.store.current('example')?.version, 2);
    assert.equal(
      await context.intake.importCandidate({
        cert: Buffer.from(pems.cert),
        key: Buffer.from(pems.privkey),
        chain: Buffer.from(pems.chain),
      }),
      undefined,
      'the same bundle again is no new version',
    );

    // A new renewal of the source supersedes the import.
    const renewed = await renewedPems(context.set.intermediate);
    await context.renew(renewed.pems);
    await waitFor(
      'version 3 from the source',
      async () => (context.store.current('example')?.version === 3 ? true : undefined),
      5_000,
    );
  } finally {
    await context.tearDown();
  }
});

test('an invalid import is refused with the reason and changes nothing', async () => {
  const context = await setUp();
  try {
    const { pems } = await renewedPems(context.set.intermediate);
    const other = await renewedPems(context.set.intermediate);
    await assert.rejects(
      context.intake.importCandidate({
        cert: Buffer.from(pems.cert),
        key: Buffer.from(other.pems.privkey),
        chain: Buffer.from(pems.chain),
      }),
      (error: unknown) =>
        error instanceof BundleValidationError &&
        error.reason === 'key-mismatch' &&
        !error.message.includes('PRIVATE KEY'),
    );
    assert.equal(context.store.current('example')?.version, 1);
    assert.equal(
      context.store.lastRejected('example'),
      undefined,
      'a refused import is answered, not recorded as the source rejection',
    );
  } finally {
    await context.tearDown();
  }
});

test('a paused intake does not read its source; once resumed the renewal is accepted', async () => {
  let paused = false;
  const context = await setUp({ paused: () => paused });
  try {
    paused = true;
    const { pems } = await renewedPems(context.set.intermediate);
    await context.renew(pems);
    await sleep(SETTLE_MS * 4);
    await context.intake.requestCheck();
    assert.equal(context.store.current('example')?.version, 1);
    paused = false;
    await context.intake.requestCheck();
    // A watcher-started check may still be running; the one queued behind it reads the renewal.
    await waitFor(
      'version 2 after resume',
      async () => (context.store.current('example')?.version === 2 ? true : undefined),
      5_000,
    );
  } finally {
    await context.tearDown();
  }
});

test('the reject wait counts from the last event and ends once the source has been quiet long enough', () => {
  assert.equal(rejectWaitMs(0, 2_000), 2_000);
  assert.equal(rejectWaitMs(1_999.5, 2_000), 1);
  assert.equal(rejectWaitMs(2_000, 2_000), 0);
  assert.equal(
    rejectWaitMs(60_000, 2_000),
    0,
    'a rescan long after the last event rejects at once',
  );
  assert.equal(rejectWaitMs(5, 0), 0);
});
