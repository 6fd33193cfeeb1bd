import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ensurePrivateDirectory } from '../../server/atomic-file';

test('state folders are made with owner-only access, parents included', async () => {
  const root = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-statedir-'));
  try {
    const dir = path.join(root, 'a', 'b', 'bundles');
    await ensurePrivateDirectory(dir);
    await ensurePrivateDirectory(dir);
    for (const folder of [path.join(root, 'a'), path.join(root, 'a', 'b'), dir]) {
      assert.equal((await fs.stat(folder)).mode & 0o777, 0o700, folder);
    }
  } finally {
    await fs.rm(root, { recursive: true, force: true });
  }
});

// fs.mkdir({ recursive: true }) never settles below /proc on Node 20; the timeout turns a hang
// into a failure.
test(
  'a state folder that cannot be made fails with its errno instead of hanging',
  { timeout: 5000 },
  async () => {
    await assert.rejects(ensurePrivateDirectory('/proc/certsync-no-such/bundles'), {
      code: 'ENOENT',
    });
    const root = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-statedir-'));
    try {
      await fs.writeFile(path.join(root, 'file'), '');
      await assert.rejects(ensurePrivateDirectory(path.join(root, 'file', 'bundles')), {
        code: 'ENOTDIR',
      });
    } finally {
      await fs.rm(root, { recursive: true, force: true });
    }
  },
);
