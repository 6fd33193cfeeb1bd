import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

// The contract must keep passing buf's STANDARD lint (buf.yaml): field names, enum zero values,
// request/response naming — the rules grpcurl and generated clients in other languages rely on.

function projectRoot(): string {
  for (let dir = __dirname; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    if (existsSync(path.join(dir, 'buf.yaml'))) return dir;
  }
  throw new Error(`no buf.yaml above ${__dirname}`);
}

test('proto/ passes buf lint (STANDARD)', () => {
  const root = projectRoot();
  const buf = path.join(root, 'node_modules', '.bin', 'buf');
  const result = spawnSync(buf, ['lint'], { cwd: root, encoding: 'utf8' });
  assert.equal(result.error, undefined, `could not run ${buf}`);
  assert.equal(result.status, 0, `buf lint:\n${result.stdout}${result.stderr}`);
});
