import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import {
  chmod,
  chown,
  mkdir,
  mkdtemp,
  readFile,
  readdir,
  rm,
  stat,
  writeFile,
} from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { BundleFile, BundlePush, FileOwner } from '../../common/contract';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';
import { ApplyError } from '../../agent/apply-error';
import { isReadableBy } from '../../agent/file-owner';
import { BundleWriter } from '../../agent/writer';
import { checkRootAndTools } from '../support/tools';

// Owner per file, with real chown (tests run as root here), and the check that the configured
// owner can read what was written — cross-checked against the kernel by reading each file from a
// child process that runs as that uid and gid.

const rootCheck = checkRootAndTools('chown to other users and read as them');
const VAULT: FileOwner = { uid: 100, gid: 1000 };

function bundleFile(target: string, text: string, mode: number, owner?: FileOwner): BundleFile {
  const content = Buffer.from(text);
  return { target, mode, sha256: sha256Hex(content), size: content.length, content, owner };
}

function push(files: BundleFile[], version = 1): BundlePush {
  return { bundle: 'vault', version, files, manifestOnly: false };
}

/** Whether a process running as `reader` (no supplementary groups) can read `file`. */
function kernelLetsRead(file: string, reader: FileOwner): boolean {
  const script = `require('node:fs').readFileSync(${JSON.stringify(file)})`;
  const result = spawnSync(process.execPath, ['-e', script], { uid: reader.uid, gid: reader.gid });
  return result.status === 0;
}

describe('BundleWriter owner and readable check', { skip: rootCheck.skip }, () => {
  let root: string;
  let dir: string;
  let writer: BundleWriter;
  let round = 0;

  before(async () => {
    rootCheck.require();
    root = await mkdtemp(path.join(tmpdir(), 'certsync-owner-'));
    // Readers running as other users must be able to walk to the files.
    await chmod(root, 0o755);
  });

  after(async () => {
    if (root) await rm(root, { recursive: true, force: true });
  });

  const freshDir = async () => {
    round += 1;
    dir = path.join(root, `ssl-${round}`);
    await mkdir(dir, { mode: 0o755 });
    writer = new BundleWriter({ dir, logger: createSilentLogger() });
    return dir;
  };

  it('gives a new file the configured uid:gid and mode, and that user can read it', async () => {
    await freshDir();
    const outcome = await writer.applyBundle(
      push([bundleFile('STAR.key', 'KEY-1', 0o600, VAULT), bundleFile('STAR.crt', 'CRT-1', 0o644)]),
    );

    const key = await stat(path.join(dir, 'STAR.key'));
    assert.deepEqual([key.uid, key.gid, key.mode & 0o7777], [100, 1000, 0o600]);
    assert.equal(outcome.filesWritten, 2);
    assert.ok(kernelLetsRead(path.join(dir, 'STAR.key'), VAULT));
    assert.ok(!kernelLetsRead(path.join(dir, 'STAR.key'), { uid: 65534, gid: 65534 }));
    const cert = await stat(path.join(dir, 'STAR.crt'));
    assert.deepEqual([cert.uid, cert.gid], [0, 0], 'no owner configured: the agent user keeps it');
  });

  it('a renewal gives the configured owner, not the owner of the file it replaces', async () => {
    await freshDir();
    const keyPath = path.join(dir, 'STAR.key');
    await writeFile(keyPath, 'OLD', { mode: 0o600 });
    await chown(keyPath, 4242, 4242);

    await writer.applyBundle(push([bundleFile('STAR.key', 'NEW', 0o640, VAULT)]));

    const after = await stat(keyPath);
    assert.deepEqual([after.uid, after.gid, after.mode & 0o7777], [100, 1000, 0o640]);
    assert.equal(await readFile(keyPath, 'utf8'), 'NEW');
  });

  it('fixes only the owner of a file that already holds the bytes, in place', async () => {
    await freshDir();
    const keyPath = path.join(dir, 'STAR.key');
    await writer.applyBundle(push([bundleFile('STAR.key', 'KEY', 0o600)]));
    const before = await stat(keyPath);

    const outcome = await writer.applyBundle(
      push([bundleFile('STAR.key', 'KEY', 0o600, VAULT)], 2),
    );

    const after = await stat(keyPath);
    assert.equal(outcome.filesWritten, 0);
    assert.equal(outcome.attributesFixed, 1);
    assert.equal(after.ino, before.ino);
    assert.deepEqual([after.uid, after.gid], [100, 1000]);
  });

  it('refuses a file its owner cannot read; the old file keeps bytes, owner and mode', async () => {
    await freshDir();
    const keyPath = path.join(dir, 'STAR.key');
    await writeFile(keyPath, 'OLD', { mode: 0o600 });
    // Group may read, the owner class may not: uid 100 is the owner, so the group bit is no help.
    const unreadable = bundleFile('STAR.key', 'NEW', 0o060, VAULT);

    const error = await writer.applyBundle(push([unreadable])).then(
      () => assert.fail('expected NOT_READABLE'),
      (caught: unknown) => caught,
    );

    assert.ok(error instanceof ApplyError);
    assert.equal(error.code, 'NOT_READABLE');
    assert.equal(error.relativePath, 'STAR.key');
    assert.match(error.message, /^STAR\.key mode 0060 owner 100:1000 is not readable by uid 100 /);
    const after = await stat(keyPath);
    assert.equal(await readFile(keyPath, 'utf8'), 'OLD');
    assert.deepEqual([after.uid, after.gid, after.mode & 0o7777], [0, 0, 0o600]);
    assert.deepEqual(await readdir(dir), ['STAR.key'], 'no temp file left');
  });

  it('refuses an in-place fix that would make the file unreadable; owner and mode stay', async () => {
    await freshDir();
    const keyPath = path.join(dir, 'STAR.key');
    await writer.applyBundle(push([bundleFile('STAR.key', 'KEY', 0o600)]));

    await assert.rejects(
      writer.applyBundle(push([bundleFile('STAR.key', 'KEY', 0o060, VAULT)], 2)),
      (error: unknown) => error instanceof ApplyError && error.code === 'NOT_READABLE',
    );

    const after = await stat(keyPath);
    assert.deepEqual([after.uid, after.gid, after.mode & 0o7777], [0, 0, 0o600]);
  });

  it('reports a file already in place with exactly the pushed attributes if its owner cannot read it', async () => {
    await freshDir();
    const keyPath = path.join(dir, 'STAR.key');
    await writeFile(keyPath, 'KEY');
    await chown(keyPath, VAULT.uid, VAULT.gid);
    await chmod(keyPath, 0o060);

    await assert.rejects(
      writer.applyBundle(push([bundleFile('STAR.key', 'KEY', 0o060, VAULT)])),
      (error: unknown) => error instanceof ApplyError && error.code === 'NOT_READABLE',
    );
  });

  it('agrees with the kernel on who may read, for owner, group and other classes', async () => {
    await freshDir();
    const cases: Array<{ mode: number; owner: FileOwner; reader: FileOwner }> = [
      { mode: 0o600, owner: { uid: 100, gid: 1000 }, reader: { uid: 100, gid: 1000 } },
      { mode: 0o060, owner: { uid: 100, gid: 1000 }, reader: { uid: 100, gid: 1000 } },
      { mode: 0o640, owner: { uid: 0, gid: 1000 }, reader: { uid: 100, gid: 1000 } },
      { mode: 0o600, owner: { uid: 0, gid: 1000 }, reader: { uid: 100, gid: 1000 } },
      { mode: 0o604, owner: { uid: 0, gid: 0 }, reader: { uid: 100, gid: 1000 } },
      { mode: 0o644, owner: { uid: 0, gid: 1000 }, reader: { uid: 100, gid: 1000 } },
      { mode: 0o604, owner: { uid: 0, gid: 1000 }, reader: { uid: 100, gid: 1000 } },
      { mode: 0o000, owner: { uid: 100, gid: 1000 }, reader: { uid: 0, gid: 0 } },
    ];
    for (const [index, { mode, owner, reader }] of cases.entries()) {
      const file = path.join(dir, `case-${index}`);
      await writeFile(file, 'X');
      await chown(file, owner.uid, owner.gid);
      await chmod(file, mode);
      const expected = kernelLetsRead(file, reader);
      const attributes = { uid: owner.uid, gid: owner.gid, mode };
      assert.equal(
        isReadableBy(attributes, reader),
        expected,
        `case ${index}: mode ${mode.toString(8)}`,
      );
    }
  });
});
