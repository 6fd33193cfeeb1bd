import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { chooseLogFormat } from '../../common/log';

// The log format: pretty (pino-pretty) on a terminal or on request, JSON otherwise; redaction
// applies to both.

describe('log format', () => {
  it('is pretty on a terminal, JSON otherwise, and the request wins', () => {
    assert.equal(chooseLogFormat(undefined, true), 'pretty');
    assert.equal(chooseLogFormat(undefined, false), 'json');
    assert.equal(chooseLogFormat('json', true), 'json');
    assert.equal(chooseLogFormat('pretty', false), 'pretty');
    assert.equal(chooseLogFormat('xml', false), 'json');
  });

  it('pretty output is text through pino-pretty, JSON output one object a line; key fields stay redacted', () => {
    const logModule = path.resolve(__dirname, '../../common/log.js');
    const script = `require(${JSON.stringify(logModule)}).createRootLogger('info', process.argv[1]).info({ bundle: 'b', version: 2, key: 'SECRET' }, 'Bundle applied')`;
    const run = (format: string) =>
      spawnSync(process.execPath, ['-e', script, format], {
        encoding: 'utf8',
        env: { ...process.env, NO_COLOR: '1' },
      });

    const json = run('json');
    const line = JSON.parse(json.stdout.trim()) as Record<string, unknown>;
    assert.deepEqual(
      [line['msg'], line['bundle'], line['version'], line['key']],
      ['Bundle applied', 'b', 2, '[redacted]'],
    );

    const pretty = run('pretty');
    assert.equal(pretty.status, 0, pretty.stderr);
    assert.throws(() => JSON.parse(pretty.stdout.trim()));
    assert.match(pretty.stdout, /INFO.*Bundle applied/);
    assert.match(pretty.stdout, /bundle: "b"/);
    assert.doesNotMatch(pretty.stdout, /SECRET/);
  });
});
