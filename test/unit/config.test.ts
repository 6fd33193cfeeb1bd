import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadServerConfig, parseServerConfig } from '../../server/config';

const minimalBundle = {
  name: 'iklim-co',
  source: '/swag/etc/letsencrypt/live/iklim.co',
  files: [
    { source: 'fullchain.pem', target: 'STAR.iklim.co.full.crt', mode: '0644' },
    { source: 'privkey.pem', target: 'STAR.iklim.co_key.pem', mode: '0600' },
  ],
};

test('defaults fill in and modes become numbers', () => {
  const config = parseServerConfig({ bundles: [minimalBundle] });
  assert.equal(config.listen, '0.0.0.0:7443');
  assert.equal(config.stateDir, '/var/lib/certsync');
  assert.equal(config.settleMs, 500);
  assert.deepEqual(config.fleet, { mode: 'connected' });
  assert.equal(config.bundles[0]?.files[0]?.mode, 0o644);
  assert.equal(config.bundles[0]?.files[1]?.mode, 0o600);
  assert.ok(Object.isFrozen(config.bundles[0]?.files));
});

test('unknown keys are rejected with their path', () => {
  assert.throws(
    () => parseServerConfig({ bundles: [{ ...minimalBundle, expectName: ['x'] }], lisen: 'x' }),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message.includes('bundles[0]: Unrecognized key: "expectName"') &&
      error.message.includes('(top level): Unrecognized key: "lisen"'),
  );
});

test('targets that leave the agent folder and bad modes are named', () => {
  const bad = {
    ...minimalBundle,
    files: [
      { source: 'a', target: '../etc/passwd', mode: '0644' },
      { source: 'b', target: '/abs', mode: '644x' },
    ],
  };
  assert.throws(
    () => parseServerConfig({ bundles: [bad] }),
    (error: unknown) =>
      error instanceof ConfigError &&
      error.message.includes('bundles[0].files[0].target') &&
      error.message.includes('bundles[0].files[1].target') &&
      error.message.includes('bundles[0].files[1].mode'),
  );
});

test('owner is an optional numeric uid:gid; names and other shapes are named errors', () => {
  const owned = {
    ...minimalBundle,
    files: [minimalBundle.files[0], { ...minimalBundle.files[1], owner: '100:1000' }],
  };
  const config = parseServerConfig({ bundles: [owned] });
  assert.equal(config.bundles[0]?.files[0]?.owner, undefined);
  assert.deepEqual(config.bundles[0]?.files[1]?.owner, { uid: 100, gid: 1000 });

  for (const owner of ['vault:vault', '100', '100:', ':100', '-1:0', '100:1000:1', '4294967295:0']) {
    const bad = { ...minimalBundle, files: [{ ...minimalBundle.files[1], owner }] };
    assert.throws(
      () => parseServerConfig({ bundles: [bad] }),
      (error: unknown) => error instanceof ConfigError && error.message.includes('bundles[0].files[0].owner: '),
      `owner ${owner} is refused`,
    );
  }
});

test('duplicate bundle names and duplicate targets are refused', () => {
  assert.throws(() => parseServerConfig({ bundles: [minimalBundle, minimalBundle] }), /used twice/);
  const twice = { ...minimalBundle, files: [minimalBundle.files[0], minimalBundle.files[0]] };
  assert.throws(() => parseServerConfig({ bundles: [twice] }), /same target/);
});

test('a YAML file is read, overrides win, and YAML errors name the file', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-config-'));
  const file = path.join(dir, 'certsync.yml');
  await fs.writeFile(
    file,
    [
      'listen: 0.0.0.0:7443',
      'bundles:',
      '  - name: iklim-co',
      '    source: /swag/live/iklim.co',
      '    files:',
      '      - { source: fullchain.pem, target: full.crt, mode: "0644" }',
      '    expectNames: ["*.iklim.co"]',
    ].join('\n'),
  );
  const config = loadServerConfig(file, { listen: '127.0.0.1:9000' });
  assert.equal(config.listen, '127.0.0.1:9000');
  assert.deepEqual(config.bundles[0]?.expectNames, ['*.iklim.co']);

  await fs.writeFile(file, 'bundles: [\n');
  assert.throws(() => loadServerConfig(file), (error: unknown) => error instanceof ConfigError && error.message.includes(file));
  assert.throws(() => loadServerConfig(path.join(dir, 'missing.yml')), /cannot read config file/);
  await fs.rm(dir, { recursive: true, force: true });
});

test('fleet modes and reload targets are read with their defaults', () => {
  const config = parseServerConfig({
    fleet: { mode: 'swarm', agentService: 'certsync_agent' },
    bundles: [
      {
        ...minimalBundle,
        reload: [
          { service: 'iklimco_vault', action: 'force-update' },
          { service: 'iklimco_nginx', action: 'signal' },
        ],
      },
    ],
  });
  assert.deepEqual(config.fleet, { mode: 'swarm', agentService: 'certsync_agent', refreshIntervalMs: 10_000 });
  assert.equal(config.convergeTimeoutMs, 300_000);
  assert.deepEqual(config.bundles[0]?.reload, [
    { service: 'iklimco_vault', action: 'force-update', timeoutMs: 300_000, onFailure: 'hold' },
    { service: 'iklimco_nginx', action: 'signal', signal: 'SIGHUP', timeoutMs: 300_000, onFailure: 'hold' },
  ]);
  assert.deepEqual(parseServerConfig({ fleet: { mode: 'static', nodes: ['n1', 'n2'] }, bundles: [minimalBundle] }).fleet, {
    mode: 'static',
    nodes: ['n1', 'n2'],
  });
});

test('a verify section takes its defaults and refuses bad endpoints', () => {
  const bundle = (verify: unknown) => ({ ...minimalBundle, reload: [{ service: 'v', action: 'force-update', verify, onFailure: 'rollback' }] });
  const config = parseServerConfig({ bundles: [bundle({ tls: { port: 8200, serverName: 'vault.iklim.co' }, vault: { unsealKeyFile: '/run/secrets/k' } })] });
  assert.deepEqual(config.bundles[0]?.reload[0]?.verify, {
    tls: { port: 8200, serverName: 'vault.iklim.co' },
    vault: { unsealKeyFile: '/run/secrets/k' },
    timeoutMs: 120_000,
  });
  assert.equal(config.bundles[0]?.reload[0]?.onFailure, 'rollback');
  assert.throws(() => parseServerConfig({ bundles: [bundle({ tls: { port: 8200, endpoints: ['nohost'] } })] }), /verify\.tls\.endpoints\[0\]: must be HOST:PORT/);
  assert.throws(() => parseServerConfig({ bundles: [bundle({ tls: {} })] }), /verify\.tls\.port/);
});

test('bad fleet and reload settings name their key', () => {
  const attempts: Array<[unknown, RegExp]> = [
    [{ fleet: { mode: 'swarm' }, bundles: [minimalBundle] }, /fleet\.agentService/],
    [{ fleet: { mode: 'static', nodes: [] }, bundles: [minimalBundle] }, /fleet\.nodes: list at least one node ID/],
    [{ fleet: { mode: 'static', nodes: ['a'], agentService: 'x' }, bundles: [minimalBundle] }, /fleet: Unrecognized key: "agentService"/],
    [{ bundles: [{ ...minimalBundle, reload: [{ service: 'v', action: 'restart' }] }] }, /bundles\[0\]\.reload\[0\]\.action/],
    [{ bundles: [{ ...minimalBundle, reload: [{ service: 'v', action: 'signal', signal: 'SIGKILL' }] }] }, /bundles\[0\]\.reload\[0\]\.signal/],
    [{ bundles: [{ ...minimalBundle, reload: [{ service: 'v', action: 'force-update', signal: 'SIGHUP' }] }] }, /Unrecognized key: "signal"/],
  ];
  for (const [raw, pattern] of attempts) {
    assert.throws(() => parseServerConfig(raw), (error: unknown) => error instanceof ConfigError && pattern.test(error.message), String(pattern));
  }
});
