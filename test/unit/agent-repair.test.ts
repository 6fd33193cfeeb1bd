import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import {
  chmod,
  chown,
  lstat,
  mkdir,
  mkdtemp,
  readdir,
  readFile,
  rm,
  stat,
  symlink,
  truncate,
  writeFile,
} from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import type { ApplyReport, BundlePush } from '../../common/contract';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import { ApplyRetry, isRetryableApplyError } from '../../agent/apply-retry';
import { retryDelayMs } from '../../agent/backoff';
import { DriftWatcher } from '../../agent/drift-watcher';
import { PushHandler } from '../../agent/push-handler';
import { BundleWriter } from '../../agent/writer';

const CERT = Buffer.from('-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
const KEY = Buffer.from('-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n');

function pushOf(version: number, manifestOnly = false): BundlePush {
  const file = (target: string, content: Buffer, mode: number) => ({
    target,
    mode,
    owner: undefined,
    sha256: sha256Hex(content),
    size: content.length,
    content: manifestOnly ? Buffer.alloc(0) : content,
  });
  return {
    bundle: 'example',
    version,
    manifestOnly,
    files: [file('test.full.crt', CERT, 0o644), file('test_key.pem', KEY, 0o600)],
  };
}

describe('retry delays', () => {
  it('double from the initial delay up to the ceiling, never below half of it', () => {
    const policy = { initialDelayMs: 1000, maxDelayMs: 30_000 };
    assert.deepEqual(
      [0, 1, 2, 5, 10].map((attempt) => retryDelayMs(attempt, policy, () => 0)),
      [500, 1000, 2000, 15_000, 15_000],
    );
    assert.deepEqual(
      [0, 1, 5, 10].map((attempt) => retryDelayMs(attempt, policy, () => 0.999_999)),
      [999, 1999, 29_999, 29_999],
    );
  });

  it('treat disk and folder errors as retryable, errors of the push or its config as not', () => {
    for (const code of ['ENOSPC', 'EROFS', 'EPERM', 'ENOENT', 'SYMLINK_TARGET', 'EIO']) {
      assert.equal(isRetryableApplyError({ code, message: '', path: '' }), true, code);
    }
    for (const code of ['PATH_ESCAPE', 'DUPLICATE_TARGET', 'INVALID_MODE', 'NOT_READABLE']) {
      assert.equal(isRetryableApplyError({ code, message: '', path: '' }), false, code);
    }
  });
});

describe('ApplyRetry', () => {
  const failed = (push: BundlePush, code: string): ApplyReport => ({
    bundle: push.bundle,
    version: push.version,
    ok: false,
    files: [],
    error: { code, message: 'failed', path: 'test_key.pem' },
    filesWritten: 0,
  });

  it('retries a failed write with growing delays until it succeeds, then stops', async () => {
    const attempts: number[] = [];
    const startedMs = Date.now();
    let failuresLeft = 4;
    const retry = new ApplyRetry({
      policy: { initialDelayMs: 20, maxDelayMs: 80 },
      logger: createSilentLogger(),
      random: () => 0,
      retry: async (push) => {
        attempts.push(Date.now() - startedMs);
        return failuresLeft-- > 0
          ? failed(push, 'ENOSPC')
          : { ...failed(push, ''), ok: true, error: undefined };
      },
    });
    const push = pushOf(2);
    retry.settle(push, failed(push, 'ENOSPC'));
    await sleep(600);

    assert.equal(attempts.length, 5, 'four failures, then the success, then nothing');
    assert.deepEqual(retry.pendingBundles, []);
    const gaps = attempts.map((atMs, index) => atMs - (attempts[index - 1] ?? 0));
    // Delays 10, 20, 40, 40, 40 ms at the least (timers never fire early).
    [10, 20, 40, 40, 40].forEach((minimumMs, index) =>
      assert.ok(gaps[index]! >= minimumMs - 1, `gap ${index}: ${gaps[index]}`),
    );
    retry.stop();
  });

  it('drops the pending write when a newer push settles the bundle, and never retries a permanent error', async () => {
    let attempts = 0;
    const retry = new ApplyRetry({
      policy: { initialDelayMs: 20, maxDelayMs: 40 },
      logger: createSilentLogger(),
      retry: async (push) => {
        attempts += 1;
        return failed(push, 'EROFS');
      },
    });
    const old = pushOf(2);
    retry.settle(old, failed(old, 'EROFS'));
    const newer = pushOf(3);
    retry.settle(newer, { ...failed(newer, ''), ok: true, error: undefined });
    const permanent = pushOf(4);
    retry.settle(permanent, failed(permanent, 'NOT_READABLE'));
    await sleep(200);

    assert.equal(attempts, 0);
    assert.deepEqual(retry.pendingBundles, []);
    retry.stop();
  });
});

describe('drift of mode and owner', () => {
  let dir: string;
  let watcher: DriftWatcher | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(tmpdir(), 'certsync-agent-repair-'));
  });

  afterEach(async () => {
    await watcher?.stop();
    watcher = undefined;
    await rm(dir, { recursive: true, force: true });
  });

  it('a chmod is noticed by the watcher, found as attribute drift and put back in place', async () => {
    const writer = new BundleWriter({ dir, logger: createSilentLogger() });
    let settled = 0;
    watcher = new DriftWatcher({
      dir,
      logger: createSilentLogger(),
      debounceMs: 20,
      recheckIntervalMs: 60_000,
      onSettled: () => void (settled += 1),
    });
    await watcher.start();
    const handler = new PushHandler({
      dir,
      writer,
      manifests: watcher,
      logger: createSilentLogger(),
    });
    assert.equal((await handler.handle(pushOf(1))).ok, true);
    const key = path.join(dir, 'test_key.pem');
    const inode = (await stat(key)).ino;
    await sleep(100);
    settled = 0;

    await chmod(key, 0o666);
    await sleep(300);
    assert.ok(settled >= 1, 'the attribute change alone woke the watcher');
    const [finding, ...rest] = await watcher.findDrift();
    assert.equal(rest.length, 0);
    assert.equal(finding?.attributesOnly, true);
    assert.equal(finding?.report.files.find((file) => file.path === 'test_key.pem')?.mode, 0o666);
    assert.deepEqual(await watcher.findDrift(), [], 'the same drifted state is reported once');

    const restored = await handler.restoreAttributes('example');
    assert.equal(restored?.ok, true);
    const after = await stat(key);
    assert.equal(after.mode & 0o7777, 0o600);
    assert.equal(after.ino, inode, 'not rewritten');
    assert.deepEqual(await watcher.findDrift(), []);
  });

  it('a manifest-only push fixes a wrong mode in place and refuses changed bytes', async () => {
    const writer = new BundleWriter({ dir, logger: createSilentLogger() });
    const handler = new PushHandler({
      dir,
      writer,
      manifests: { setManifest: () => undefined },
      logger: createSilentLogger(),
    });
    await writeFile(path.join(dir, 'test.full.crt'), CERT, { mode: 0o666 });
    await chmod(path.join(dir, 'test.full.crt'), 0o666);
    await writeFile(path.join(dir, 'test_key.pem'), KEY);
    await chmod(path.join(dir, 'test_key.pem'), 0o644);

    const verified = await handler.handle(pushOf(1, true));
    assert.equal(verified.ok, true);
    assert.equal(verified.filesWritten, 0);
    assert.deepEqual(
      verified.files.map((file) => [file.path, file.mode]),
      [
        ['test.full.crt', 0o644],
        ['test_key.pem', 0o600],
      ],
    );

    await writeFile(path.join(dir, 'test_key.pem'), 'changed\n');
    const refused = await handler.handle(pushOf(1, true));
    assert.equal(refused.ok, false);
    assert.equal(refused.error?.code, 'DIGEST_MISMATCH');
  });

  it(
    'a configured owner changed by chown is drift, and put back',
    { skip: process.getuid?.() !== 0 && 'needs root (chown)' },
    async () => {
      const writer = new BundleWriter({ dir, logger: createSilentLogger() });
      watcher = new DriftWatcher({
        dir,
        logger: createSilentLogger(),
        debounceMs: 20,
        recheckIntervalMs: 60_000,
        onSettled: () => undefined,
      });
      await watcher.start();
      const handler = new PushHandler({
        dir,
        writer,
        manifests: watcher,
        logger: createSilentLogger(),
      });
      const push = pushOf(1);
      push.files[1] = { ...push.files[1]!, owner: { uid: 100, gid: 1000 } };
      assert.equal((await handler.handle(push)).ok, true);
      const key = path.join(dir, 'test_key.pem');

      await chown(key, 0, 0);
      const [finding] = await watcher.findDrift();
      assert.equal(finding?.attributesOnly, true);
      assert.equal((await handler.restoreAttributes('example'))?.ok, true);
      const after = await stat(key);
      assert.deepEqual([after.uid, after.gid, after.mode & 0o7777], [100, 1000, 0o600]);
      assert.deepEqual(await watcher.findDrift(), []);
    },
  );

  it('a write refused by a symlinked folder is retried and lands once a real folder is there', async () => {
    const writer = new BundleWriter({ dir, logger: createSilentLogger() });
    const handler = new PushHandler({
      dir,
      writer,
      manifests: { setManifest: () => undefined },
      logger: createSilentLogger(),
    });
    const elsewhere = await mkdtemp(path.join(tmpdir(), 'certsync-elsewhere-'));
    await symlink(elsewhere, path.join(dir, 'sub'));
    const push: BundlePush = {
      ...pushOf(1),
      files: [{ ...pushOf(1).files[0]!, target: 'sub/test.crt' }],
    };
    const reports: ApplyReport[] = [];
    const retry = new ApplyRetry({
      policy: { initialDelayMs: 40, maxDelayMs: 80 },
      logger: createSilentLogger(),
      retry: async (retried) => {
        const report = await handler.handle(retried);
        reports.push(report);
        return report;
      },
    });
    try {
      const first = await handler.handle(push);
      assert.equal(first.error?.code, 'SYMLINK_TARGET');
      retry.settle(push, first);
      await sleep(200);
      assert.ok(
        reports.length >= 1 && reports.every((report) => report.error?.code === 'SYMLINK_TARGET'),
      );
      assert.deepEqual(await readdir(elsewhere), [], 'nothing written through the link');

      await rm(path.join(dir, 'sub'));
      await mkdir(path.join(dir, 'sub'));
      await sleep(300);
      assert.equal(reports.at(-1)?.ok, true);
      assert.deepEqual(retry.pendingBundles, []);
      assert.equal(sha256Hex(await readFile(path.join(dir, 'sub', 'test.crt'))), sha256Hex(CERT));
      assert.ok((await lstat(path.join(dir, 'sub'))).isDirectory());
    } finally {
      retry.stop();
      await rm(elsewhere, { recursive: true, force: true });
    }
  });

  it('a folder deleted for longer than the poll is reported again once back, so the server refills it at once', async () => {
    await mkdir(path.join(dir, 'node'));
    const nodeDir = path.join(dir, 'node');
    watcher = new DriftWatcher({
      dir: nodeDir,
      logger: createSilentLogger(),
      debounceMs: 20,
      recheckIntervalMs: 60_000,
      onSettled: () => undefined,
    });
    await watcher.start();
    const handler = new PushHandler({
      dir: nodeDir,
      writer: new BundleWriter({ dir: nodeDir, logger: createSilentLogger() }),
      manifests: watcher,
      logger: createSilentLogger(),
    });
    assert.equal((await handler.handle(pushOf(1))).ok, true);

    await rm(nodeDir, { recursive: true });
    await sleep(100);
    const whileGone = await watcher.findDrift();
    assert.equal(whileGone.length, 1, 'the missing files are reported');
    // The server's repair fails now (ENOENT) and waits in the retry backoff, up to 30 s.
    assert.equal((await handler.handle(pushOf(1))).error?.code, 'ENOENT');

    await mkdir(nodeDir);
    await sleep(2_500);
    const back = await watcher.findDrift();
    assert.equal(back.length, 1, 'reported again once the folder is back');
    assert.deepEqual(
      back[0]?.report.files.map((file) => file.sha256),
      ['', ''],
      'both files reported missing',
    );
  });

  it("a FIFO planted in a managed file's place reads as missing and does not block the agent", async () => {
    await mkdir(path.join(dir, 'sub'));
    execFileSync('mkfifo', [path.join(dir, 'sub', 'key.pem')]);
    // In a child: a blocking open of the FIFO would freeze the whole event loop (file calls run on
    // it), and this test's process with it.
    const child = spawnSync(
      process.execPath,
      [
        '-e',
        `const { DriftWatcher } = require(process.argv[1]);
         const { createSilentLogger } = require(process.argv[2]);
         const watcher = new DriftWatcher({ dir: process.argv[3], logger: createSilentLogger(),
           debounceMs: 20, recheckIntervalMs: 60000, onSettled: () => undefined });
         watcher.setManifest('example', 1, [
           { path: 'sub/key.pem', sha256: process.argv[4], size: 4096, mode: 0o600, owner: undefined }]);
         watcher.findDrift().then((found) => {
           process.stdout.write(JSON.stringify(found.map((f) => f.report.files)));
           return watcher.stop();
         });`,
        require.resolve('../../agent/drift-watcher'),
        require.resolve('../../common/log'),
        dir,
        sha256Hex(KEY),
      ],
      { encoding: 'utf8', timeout: 10_000 },
    );
    assert.equal(child.signal, null, 'findDrift returned instead of hanging on the FIFO');
    assert.deepEqual(JSON.parse(child.stdout), [
      [{ path: 'sub/key.pem', sha256: '', size: 0, mode: 0 }],
    ]);
  });

  it('a managed file grown to 1 GiB is drift by its size, reported without being read', async () => {
    watcher = new DriftWatcher({
      dir,
      logger: createSilentLogger(),
      debounceMs: 20,
      recheckIntervalMs: 60_000,
      onSettled: () => undefined,
    });
    const handler = new PushHandler({
      dir,
      writer: new BundleWriter({ dir, logger: createSilentLogger() }),
      manifests: watcher,
      logger: createSilentLogger(),
    });
    assert.equal((await handler.handle(pushOf(1))).ok, true);
    // Sparse: no disk used, but reading it would take a 1 GiB buffer and seconds on the loop.
    await truncate(path.join(dir, 'test_key.pem'), 2 ** 30);

    const [finding] = await watcher.findDrift();
    assert.deepEqual(
      finding?.report.files.find((file) => file.path === 'test_key.pem'),
      { path: 'test_key.pem', sha256: '', size: 2 ** 30, mode: 0o600 },
    );
    assert.equal(finding?.attributesOnly, false);
  });

  it("a socket bound in a managed file's place is reported as missing drift", async () => {
    watcher = new DriftWatcher({
      dir,
      logger: createSilentLogger(),
      debounceMs: 20,
      recheckIntervalMs: 60_000,
      onSettled: () => undefined,
    });
    const handler = new PushHandler({
      dir,
      writer: new BundleWriter({ dir, logger: createSilentLogger() }),
      manifests: watcher,
      logger: createSilentLogger(),
    });
    assert.equal((await handler.handle(pushOf(1))).ok, true);
    await rm(path.join(dir, 'test_key.pem'));
    const socket = createServer();
    await new Promise<void>((resolve) => socket.listen(path.join(dir, 'test_key.pem'), resolve));
    try {
      const [finding] = await watcher.findDrift();
      assert.deepEqual(
        finding?.report.files.find((file) => file.path === 'test_key.pem'),
        { path: 'test_key.pem', sha256: '', size: 0, mode: 0 },
      );
    } finally {
      await new Promise((resolve) => socket.close(resolve));
    }
  });

  it('a deleted and re-created folder is watched again', async () => {
    let settled = 0;
    await mkdir(path.join(dir, 'node'));
    const nodeDir = path.join(dir, 'node');
    watcher = new DriftWatcher({
      dir: nodeDir,
      logger: createSilentLogger(),
      debounceMs: 20,
      recheckIntervalMs: 60_000,
      onSettled: () => void (settled += 1),
    });
    await watcher.start();
    watcher.setManifest('example', 1, [
      {
        path: 'test_key.pem',
        sha256: sha256Hex(KEY),
        size: KEY.length,
        mode: 0o600,
        owner: undefined,
      },
    ]);
    await rm(nodeDir, { recursive: true });
    await mkdir(nodeDir);
    await sleep(2_500);
    settled = 0;

    await writeFile(path.join(nodeDir, 'test_key.pem'), 'planted\n');
    await sleep(300);
    assert.ok(settled >= 1, 'an event in the new folder was seen');
  });
});
