import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { sha256Hex } from '../../common/digest';

// The drift watcher when the kernel refuses inotify watches (ENOSPC: fs.inotify.max_user_watches
// reached). The agent runs in a user namespace of its own, whose watch limit it can lower and
// raise (/proc/sys/user/max_inotify_watches) without touching the machine's.

const KEY = Buffer.from('-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n');
/** A user namespace whose inotify limit this user may set (Linux 5.11 and later). */
const userNamespace =
  spawnSync('unshare', ['-Ur', 'sh', '-c', 'echo 8192 > /proc/sys/user/max_inotify_watches'])
    .status === 0;

/** Runs in the namespace; prints one JSON line with what it saw. */
const CHILD = `
const fs = require('node:fs');
const path = require('node:path');
const [pinoPath, watcherPath, dir, keySha256, keySize] = process.argv.slice(1);
const pino = require(pinoPath);
const { DriftWatcher } = require(watcherPath);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const setLimit = (n) => fs.writeFileSync('/proc/sys/user/max_inotify_watches', String(n));
function inotifyWatches() {
  let count = 0;
  for (const fd of fs.readdirSync('/proc/self/fd')) {
    let target = '';
    try { target = fs.readlinkSync('/proc/self/fd/' + fd); } catch { continue; }
    if (target !== 'anon_inode:inotify') continue;
    const info = fs.readFileSync('/proc/self/fdinfo/' + fd, 'utf8');
    count += info.split('\\n').filter((line) => line.startsWith('inotify wd:')).length;
  }
  return count;
}
(async () => {
  const logs = [];
  const logger = pino({ level: 'debug' }, { write: (line) => void logs.push(JSON.parse(line)) });
  let settled = 0;
  setLimit(0);
  const watcher = new DriftWatcher({
    dir, logger, debounceMs: 20, recheckIntervalMs: 400, onSettled: () => void (settled += 1),
  });
  await watcher.start();
  watcher.setManifest('example', 1, [
    { path: 'sub/key.pem', sha256: keySha256, size: Number(keySize), mode: 0o600, owner: undefined },
  ]);
  // Longer than the missing-folder poll (2 s) and several rechecks.
  await sleep(2_500);
  const watchesWhileRefused = inotifyWatches();
  const settledWhileRefused = settled;
  fs.appendFileSync(path.join(dir, 'sub', 'key.pem'), 'tampered');
  const drift = await watcher.findDrift();
  setLimit(1000);
  await sleep(1_000);
  const watchesOnceAllowed = inotifyWatches();
  await watcher.stop();
  process.stdout.write(JSON.stringify({
    logs: logs.map((record) => ({ msg: record.msg, dir: record.dir, sysctl: record.sysctl })),
    watchesWhileRefused, settledWhileRefused, watchesOnceAllowed,
    driftPaths: drift.flatMap((finding) => finding.report.files.map((file) => file.path)),
  }) + '\\n');
})();
`;

interface ChildResult {
  logs: Array<{ msg: string; dir?: string; sysctl?: string }>;
  watchesWhileRefused: number;
  settledWhileRefused: number;
  watchesOnceAllowed: number;
  driftPaths: string[];
}

describe(
  'drift watcher at the inotify watch limit',
  { skip: !userNamespace && 'needs unshare -Ur and a per-namespace inotify limit' },
  () => {
    let dir: string;
    let result: ChildResult;

    before(async () => {
      dir = await mkdtemp(path.join(tmpdir(), 'certsync-inotify-limit-'));
      await mkdir(path.join(dir, 'sub'));
      await writeFile(path.join(dir, 'sub', 'key.pem'), KEY, { mode: 0o600 });
      const child = spawnSync(
        'unshare',
        [
          '-Ur',
          process.execPath,
          '-e',
          CHILD,
          require.resolve('pino'),
          require.resolve('../../agent/drift-watcher'),
          dir,
          sha256Hex(KEY),
          String(KEY.length),
        ],
        { encoding: 'utf8', timeout: 30_000 },
      );
      assert.equal(child.status, 0, child.stderr);
      result = JSON.parse(child.stdout) as ChildResult;
    });

    after(async () => {
      await rm(dir, { recursive: true, force: true });
    });

    it('says once per folder that the limit is reached and what to raise', () => {
      const limitLogs = result.logs.filter(
        (record) => record.sysctl === 'fs.inotify.max_user_watches',
      );
      assert.deepEqual(limitLogs.map((record) => record.dir).sort(), [dir, path.join(dir, 'sub')]);
      assert.deepEqual(
        result.logs.filter((record) => record.msg === 'Folder not watched'),
        [],
        'no generic warning repeated at every retry',
      );
    });

    it('does not take a folder it cannot watch for a missing one', () => {
      assert.deepEqual(
        result.logs.filter((record) => record.msg.startsWith('Watched folder')),
        [],
      );
    });

    it('still finds drift through the periodic recheck', () => {
      assert.equal(result.watchesWhileRefused, 0);
      assert.ok(result.settledWhileRefused >= 2, 'the recheck ran');
      assert.deepEqual(result.driftPaths, ['sub/key.pem']);
    });

    it('watches the folders at the next recheck once watches are available again', () => {
      assert.equal(result.watchesOnceAllowed, 2);
    });
  },
);
