import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { chmod, mkdir, mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, afterEach, before, describe, it } from 'node:test';
import type { BundleFile, BundlePush } from '../../common/contract';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import { ApplyError } from '../../agent/apply-error';
import { BundleWriter } from '../../agent/writer';
import { checkRootAndTools } from '../support/tools';

// The writer on real failing file systems: a full 64 KiB tmpfs (ENOSPC), a tmpfs remounted
// read-only (EROFS), an immutable folder (EPERM, even for root) and a folder the writer's user may
// not write (EACCES, from a child process running as nobody). Each time the old files keep their
// bytes, no temp file is left, and the error carries the errno and the file's path.

const rootCheck = checkRootAndTools('mount tmpfs, chattr, run a child as nobody', [
  'mount',
  'umount',
  'chattr',
]);
const APPLY_ONCE = path.join(__dirname, '..', 'support', 'apply-once.js');
const NOBODY = 65_534;

function bundleFile(target: string, content: string | Buffer): BundleFile {
  const bytes = Buffer.from(content);
  return {
    target,
    mode: 0o600,
    sha256: sha256Hex(bytes),
    size: bytes.length,
    content: bytes,
    owner: undefined,
  };
}

function push(files: BundleFile[]): BundlePush {
  return { bundle: 'web', version: 2, files, manifestOnly: false };
}

async function applyError(writer: BundleWriter, bundle: BundlePush): Promise<ApplyError> {
  const error = await writer.applyBundle(bundle).then(
    () => assert.fail('expected the apply to fail'),
    (caught: unknown) => caught,
  );
  assert.ok(error instanceof ApplyError, `expected ApplyError, got ${String(error)}`);
  return error;
}

describe('BundleWriter on failing file systems', { skip: rootCheck.skip }, () => {
  let root: string;
  let dir: string;
  let writer: BundleWriter;
  const mounted: string[] = [];
  const immutable: string[] = [];
  let round = 0;

  const freshDir = async (tmpfsKiB?: number) => {
    round += 1;
    dir = path.join(root, `ssl-${round}`);
    await mkdir(dir, { mode: 0o755 });
    if (tmpfsKiB !== undefined) {
      execFileSync('mount', ['-t', 'tmpfs', '-o', `size=${tmpfsKiB}k,mode=0755`, 'tmpfs', dir]);
      mounted.push(dir);
    }
    await writeFile(path.join(dir, 'a.pem'), 'OLD-A', { mode: 0o600 });
    await writeFile(path.join(dir, 'b.pem'), 'OLD-B', { mode: 0o600 });
    writer = new BundleWriter({ dir, logger: createSilentLogger() });
  };

  const assertOldFilesIntact = async () => {
    assert.equal(await readFile(path.join(dir, 'a.pem'), 'utf8'), 'OLD-A');
    assert.equal(await readFile(path.join(dir, 'b.pem'), 'utf8'), 'OLD-B');
    assert.deepEqual((await readdir(dir)).sort(), ['a.pem', 'b.pem'], 'no temp file left');
  };

  before(async () => {
    rootCheck.require();
    root = await mkdtemp(path.join(tmpdir(), 'certsync-disk-'));
    await chmod(root, 0o755);
  });

  // Runs after every test, failed or not: nothing mounted or immutable may outlive it.
  afterEach(() => {
    for (const folder of immutable.splice(0)) spawnSync('chattr', ['-i', folder]);
    for (const folder of mounted.splice(0).reverse()) {
      if (spawnSync('umount', [folder]).status !== 0) spawnSync('umount', ['-l', folder]);
    }
  });

  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  it('disk full: ENOSPC names the file, the old bytes stay, the space is given back', async () => {
    await freshDir(64);
    const tooBig = Buffer.alloc(100 * 1024, 'B');

    const error = await applyError(
      writer,
      push([bundleFile('a.pem', 'NEW-A'), bundleFile('b.pem', tooBig)]),
    );

    assert.equal(error.code, 'ENOSPC');
    assert.equal(error.relativePath, 'b.pem');
    assert.match(error.message, /^writing temp file failed for b\.pem: ENOSPC/);
    await assertOldFilesIntact();
    // The failed temp file was removed, so a bundle that fits goes through.
    await writer.applyBundle(
      push([bundleFile('a.pem', 'NEW-A'), bundleFile('b.pem', Buffer.alloc(40 * 1024, 'B'))]),
    );
    assert.equal(await readFile(path.join(dir, 'a.pem'), 'utf8'), 'NEW-A');
  });

  it('read-only file system: EROFS, nothing changed; after remount rw the apply goes through', async () => {
    await freshDir(256);
    execFileSync('mount', ['-o', 'remount,ro', dir]);

    const error = await applyError(
      writer,
      push([bundleFile('a.pem', 'NEW-A'), bundleFile('b.pem', 'NEW-B')]),
    );

    assert.equal(error.code, 'EROFS');
    assert.equal(error.relativePath, 'a.pem');
    await assertOldFilesIntact();
    execFileSync('mount', ['-o', 'remount,rw', dir]);
    await writer.applyBundle(push([bundleFile('a.pem', 'NEW-A'), bundleFile('b.pem', 'NEW-B')]));
    assert.equal(await readFile(path.join(dir, 'b.pem'), 'utf8'), 'NEW-B');
  });

  it('immutable folder: EPERM even for root, old files intact', async () => {
    await freshDir();
    execFileSync('chattr', ['+i', dir]);
    immutable.push(dir);

    const error = await applyError(
      writer,
      push([bundleFile('a.pem', 'NEW-A'), bundleFile('b.pem', 'NEW-B')]),
    );

    assert.equal(error.code, 'EPERM');
    assert.equal(error.relativePath, 'a.pem');
    assert.match(error.message, /creating temp file failed for a\.pem/);
    await assertOldFilesIntact();
  });

  it('permission denied for a writer that is not root: EACCES, old file intact', async () => {
    await freshDir();
    // Readable, so the writer gets as far as creating its temp file in the root-owned folder.
    await chmod(path.join(dir, 'a.pem'), 0o644);

    const child = spawnSync(process.execPath, [APPLY_ONCE, dir, 'a.pem', 'NEW-A'], {
      uid: NOBODY,
      gid: NOBODY,
      encoding: 'utf8',
    });

    assert.equal(child.status, 0, child.stderr);
    const outcome = JSON.parse(child.stdout) as {
      ok: boolean;
      code: string;
      path: string;
      message: string;
    };
    assert.deepEqual([outcome.ok, outcome.code, outcome.path], [false, 'EACCES', 'a.pem']);
    assert.match(outcome.message, /^creating temp file failed for a\.pem: EACCES/);
    await assertOldFilesIntact();
  });
});
