import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { test } from 'node:test';
import { PROJECT_ROOT } from '../support/processes';

// The README's first command: `npm run demo` builds a certbot tree, runs a server and three
// agents over TLS, renews, and checks bytes, modes and metrics itself; it must exit 0.
test('npm run demo converges three nodes on the renewal and shows the metrics', () => {
  const demo = spawnSync(process.execPath, [path.join(PROJECT_ROOT, 'dist/demo/main.js')], {
    encoding: 'utf8',
    timeout: 120_000,
  });
  assert.equal(demo.status, 0, `${demo.stdout}\n${demo.stderr}`);
  assert.match(
    demo.stdout,
    /6\. every node holds version 2 \(\d+ ms after the last link swap\); bytes and modes checked on disk/,
  );
  assert.match(demo.stdout, /version 2 .*3\/3 nodes in sync/);
  assert.match(demo.stdout, /certsync_nodes_in_sync\{bundle="example-test"\} 3/);
  // Piped output (not a terminal) carries no colour codes.
  assert.ok(!demo.stdout.includes('\u001b['), 'no ANSI escape codes in piped output');
});
