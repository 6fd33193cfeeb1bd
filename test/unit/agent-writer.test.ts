import assert from 'node:assert/strict';
import {
  chmod,
  lstat,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  readlink,
  rm,
  stat,
  symlink,
  writeFile,
} from 'node:fs/promises';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import type { BundleFile, BundlePush } from '../../common/contract';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import { ApplyError } from '../../agent/apply-error';
import { BundleWriter } from '../../agent/writer';

function bundleFile(target: string, text: string, mode = 0o600): BundleFile {
  const content = Buffer.from(text);
  return {
    target,
    mode,
    sha256: sha256Hex(content),
    size: content.length,
    content,
    owner: undefined,
  };
}

function push(files: BundleFile[], version = 1): BundlePush {
  return { bundle: 'web', version, files, manifestOnly: false };
}

/** Every entry under `dir`, recursively, relative; used to prove no temp file survived. */
async function listTree(dir: string): Promise<string[]> {
  const entries = await readdir(dir, { recursive: true });
  return entries.map(String).sort();
}

async function assertNoTempFiles(dir: string): Promise<void> {
  const leftovers = (await listTree(dir)).filter((entry) => entry.includes('.certsync-'));
  assert.deepEqual(leftovers, []);
}

async function rejectsWithCode(promise: Promise<unknown>, code: string): Promise<ApplyError> {
  const error = await promise.then(
    () => assert.fail(`expected ApplyError ${code}`),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof ApplyError, `expected ApplyError, got ${String(error)}`);
  assert.equal(error.code, code, error.message);
  return error;
}

describe('BundleWriter', () => {
  let root: string;
  let dir: string;
  let writer: BundleWriter;

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'certsync-writer-'));
    dir = path.join(root, 'ssl');
    await mkdir(dir);
    writer = new BundleWriter({ dir, logger: createSilentLogger() });
  });

  afterEach(async () => {
    await rm(root, { recursive: true, force: true });
  });

  it('writes the exact bytes and mode, including nested targets, and reads them back', async () => {
    // 0o664 would come out 0o644 under the usual umask if the writer relied on open()'s mode.
    const files = [bundleFile('cert.pem', 'CERT-1', 0o664), bundleFile('private/key.pem', 'KEY-1')];

    const outcome = await writer.applyBundle(push(files));

    assert.equal(outcome.filesWritten, 2);
    assert.equal(await readFile(path.join(dir, 'cert.pem'), 'utf8'), 'CERT-1');
    assert.equal(await readFile(path.join(dir, 'private/key.pem'), 'utf8'), 'KEY-1');
    assert.equal((await stat(path.join(dir, 'cert.pem'))).mode & 0o7777, 0o664);
    assert.equal((await stat(path.join(dir, 'private/key.pem'))).mode & 0o7777, 0o600);
    assert.deepEqual(outcome.files, [
      { path: 'cert.pem', sha256: sha256Hex('CERT-1'), size: 6, mode: 0o664 },
      { path: 'private/key.pem', sha256: sha256Hex('KEY-1'), size: 5, mode: 0o600 },
    ]);
    await assertNoTempFiles(dir);
  });

  it('does not rewrite files already holding the pushed bytes, but fixes their mode', async () => {
    await writer.applyBundle(push([bundleFile('cert.pem', 'CERT'), bundleFile('key.pem', 'KEY')]));
    const certBefore = await stat(path.join(dir, 'cert.pem'));
    const keyBefore = await stat(path.join(dir, 'key.pem'));
    await chmod(path.join(dir, 'key.pem'), 0o644);

    const outcome = await writer.applyBundle(
      push([bundleFile('cert.pem', 'CERT'), bundleFile('key.pem', 'KEY')], 2),
    );

    const certAfter = await stat(path.join(dir, 'cert.pem'));
    const keyAfter = await stat(path.join(dir, 'key.pem'));
    assert.equal(outcome.filesWritten, 0);
    assert.equal(outcome.attributesFixed, 1);
    assert.equal(certAfter.ino, certBefore.ino);
    assert.equal(certAfter.mtimeMs, certBefore.mtimeMs);
    assert.equal(keyAfter.ino, keyBefore.ino);
    assert.equal(keyAfter.mode & 0o7777, 0o600);
  });

  it('refuses content whose digest or size does not match and leaves the old file', async () => {
    await writeFile(path.join(dir, 'cert.pem'), 'OLD');
    const wrongDigest = { ...bundleFile('cert.pem', 'NEW'), sha256: sha256Hex('OTHER') };
    const wrongSize = { ...bundleFile('cert.pem', 'NEW'), size: 99 };

    await rejectsWithCode(writer.applyBundle(push([wrongDigest])), 'DIGEST_MISMATCH');
    await rejectsWithCode(writer.applyBundle(push([wrongSize])), 'DIGEST_MISMATCH');

    assert.equal(await readFile(path.join(dir, 'cert.pem'), 'utf8'), 'OLD');
    await assertNoTempFiles(dir);
  });

  for (const target of ['../x', '/abs', 'a/../../x', '', 'a\0b', 'sub/', '..']) {
    it(`rejects the escaping target ${JSON.stringify(target)}`, async () => {
      const error = await rejectsWithCode(
        writer.applyBundle(push([bundleFile(target, 'X')])),
        'PATH_ESCAPE',
      );
      assert.equal(error.toAgentError().code, 'PATH_ESCAPE');
      assert.deepEqual(await listTree(root), ['ssl']);
    });
  }

  it('refuses a symlink planted at the target and leaves its destination alone', async () => {
    const victim = path.join(root, 'victim.txt');
    await writeFile(victim, 'PRECIOUS');
    await symlink(victim, path.join(dir, 'cert.pem'));

    await rejectsWithCode(
      writer.applyBundle(push([bundleFile('cert.pem', 'NEW')])),
      'SYMLINK_TARGET',
    );

    assert.equal(await readFile(victim, 'utf8'), 'PRECIOUS');
    assert.ok((await lstat(path.join(dir, 'cert.pem'))).isSymbolicLink());
    assert.equal(await readlink(path.join(dir, 'cert.pem')), victim);
    await assertNoTempFiles(dir);
  });

  it('refuses a symlinked folder on the way to the target', async () => {
    const outside = path.join(root, 'outside');
    await mkdir(outside);
    await symlink(outside, path.join(dir, 'sub'));

    await rejectsWithCode(
      writer.applyBundle(push([bundleFile('sub/x.pem', 'X')])),
      'SYMLINK_TARGET',
    );

    assert.deepEqual(await readdir(outside), []);
  });

  it('leaves the first file intact when a later file cannot be staged', async () => {
    await writeFile(path.join(dir, 'a.pem'), 'OLD-A', { mode: 0o600 });
    await writeFile(path.join(dir, 'blocker'), 'I am a file, not a folder');

    await rejectsWithCode(
      writer.applyBundle(push([bundleFile('a.pem', 'NEW-A'), bundleFile('blocker/b.pem', 'B')])),
      'ENOTDIR',
    );

    assert.equal(await readFile(path.join(dir, 'a.pem'), 'utf8'), 'OLD-A');
    await assertNoTempFiles(dir);
  });

  it('leaves the first file intact when a folder sits where a later file goes', async () => {
    await writeFile(path.join(dir, 'a.pem'), 'OLD-A', { mode: 0o600 });
    await mkdir(path.join(dir, 'b.pem'));

    await rejectsWithCode(
      writer.applyBundle(push([bundleFile('a.pem', 'NEW-A'), bundleFile('b.pem', 'B')])),
      'EISDIR',
    );

    assert.equal(await readFile(path.join(dir, 'a.pem'), 'utf8'), 'OLD-A');
    assert.ok((await stat(path.join(dir, 'b.pem'))).isDirectory());
    await assertNoTempFiles(dir);
  });

  it(
    'reports EACCES when a later file sits in a read-only folder, first file intact',
    { skip: process.getuid?.() === 0 ? 'root ignores folder permissions' : false },
    async () => {
      await writeFile(path.join(dir, 'a.pem'), 'OLD-A', { mode: 0o600 });
      await mkdir(path.join(dir, 'locked'));
      await writeFile(path.join(dir, 'locked/b.pem'), 'OLD-B');
      await chmod(path.join(dir, 'locked'), 0o555);
      try {
        const error = await rejectsWithCode(
          writer.applyBundle(push([bundleFile('a.pem', 'NEW-A'), bundleFile('locked/b.pem', 'B')])),
          'EACCES',
        );
        assert.equal(error.relativePath, 'locked/b.pem');
        assert.equal(await readFile(path.join(dir, 'a.pem'), 'utf8'), 'OLD-A');
        await assertNoTempFiles(dir);
      } finally {
        await chmod(path.join(dir, 'locked'), 0o755);
      }
    },
  );

  it('rolls already renamed files back when a later rename fails in phase 2', async (t) => {
    const aPath = path.join(dir, 'a.pem');
    const bPath = path.join(dir, 'b.pem');
    await writeFile(aPath, 'OLD-A', { mode: 0o600 });
    await writeFile(bPath, 'OLD-B', { mode: 0o600 });
    const aBefore = await stat(aPath);
    // An immutable file cannot be renamed over, even by root: the one phase-2 failure we can stage.
    if (spawnSync('chattr', ['+i', bPath]).status !== 0) {
      t.skip('chattr +i is not available here');
      return;
    }
    try {
      await rejectsWithCode(
        writer.applyBundle(push([bundleFile('a.pem', 'NEW-A'), bundleFile('b.pem', 'NEW-B')])),
        'EPERM',
      );
    } finally {
      spawnSync('chattr', ['-i', bPath]);
    }

    assert.equal(await readFile(aPath, 'utf8'), 'OLD-A');
    assert.equal((await stat(aPath)).ino, aBefore.ino);
    assert.equal(await readFile(bPath, 'utf8'), 'OLD-B');
    await assertNoTempFiles(dir);
  });

  it('removes stale temp files left by a crashed agent, and nothing else', async () => {
    await mkdir(path.join(dir, 'sub'));
    await writeFile(path.join(dir, '.cert.pem.certsync-0a1b2c3d.tmp'), 'half');
    await writeFile(path.join(dir, 'sub/.key.pem.certsync-ffee.tmp'), 'half');
    await writeFile(path.join(dir, '.hidden'), 'keep');
    await writeFile(path.join(dir, 'cert.pem'), 'keep');

    const removed = await writer.removeStaleTempFiles();

    assert.equal(removed, 2);
    assert.deepEqual(await listTree(dir), ['.hidden', 'cert.pem', 'sub']);
  });
});
