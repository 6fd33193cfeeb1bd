import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { SERVER_NODE_FLAGS } from '../../server/runtime-flags';
import { entryCommand, PROJECT_ROOT } from '../support/processes';

// The server's Node flags live in three places that must agree: the image's ENTRYPOINT, the bin's
// shebang and the harness that tests and benchmarks start the server with.

test('Dockerfile.server runs the server with SERVER_NODE_FLAGS', () => {
  const dockerfile = readFileSync(path.join(PROJECT_ROOT, 'Dockerfile.server'), 'utf8');
  const line = dockerfile.split('\n').find((candidate) => candidate.startsWith('ENTRYPOINT '));
  assert.ok(line, 'no ENTRYPOINT in Dockerfile.server');
  assert.deepEqual(JSON.parse(line.slice('ENTRYPOINT '.length)), [
    'node',
    ...SERVER_NODE_FLAGS,
    '/app/dist/server/main.js',
  ]);
});

test('the certsync-server bin starts node with SERVER_NODE_FLAGS', () => {
  const expected = `#!/usr/bin/env -S node ${SERVER_NODE_FLAGS.join(' ')}`;
  for (const file of ['server/main.ts', 'dist/server/main.js']) {
    const firstLine = readFileSync(path.join(PROJECT_ROOT, file), 'utf8').split('\n')[0];
    assert.equal(firstLine, expected, file);
  }
});

test('the test and bench harness starts the server, and only the server, with them', () => {
  const server = entryCommand('server').args;
  assert.deepEqual(server.slice(0, SERVER_NODE_FLAGS.length), [...SERVER_NODE_FLAGS]);
  for (const flag of SERVER_NODE_FLAGS) assert.ok(!entryCommand('agent').args.includes(flag));
});

test('with them, the young generation stays at 1 MiB per semi-space under allocation', () => {
  // Allocates ~200 MiB of short-lived objects, which grows the young generation to its maximum.
  const script = [
    'let kept = [];',
    'for (let i = 0; i < 2e6; i += 1) { kept.push({ i, s: "x" + i }); if (kept.length > 5e4) kept = []; }',
    'const space = require("v8").getHeapSpaceStatistics().find((s) => s.space_name === "new_space");',
    'process.stdout.write(String(space.space_size));',
  ].join('\n');
  const result = spawnSync(process.execPath, [...SERVER_NODE_FLAGS, '-e', script], {
    encoding: 'utf8',
  });
  assert.equal(result.status, 0, result.stderr);
  assert.ok(Number(result.stdout) <= 2 * 1024 * 1024, `new space ${result.stdout} bytes`);
});
