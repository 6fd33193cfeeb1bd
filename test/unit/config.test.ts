import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { ConfigError, loadServerConfig, parseServerConfig } from '../../server/config';
import { linkRootOf } from '../../server/source-reader';

const minimalBundle = {
  name: 'iklim-co',
  source: '/swag/etc/letsencrypt/live/iklim.co',
  files: [
    { source: 'fullchain.pem', target: 'STAR.iklim.co.full.crt', mode: '0644' },
    { source: 'privkey.pem', target: 'STAR.iklim.co_key.pem', mode: '0600' },
  ],
};

test('defaults fill in and modes become numbers', () => {
  const config = parseServerConfig({ insecure: true, bundles: [minimalBundle] });
  assert.equal(config.listen, '0.0.0.0:7443');
  assert.equal(config.stateDir, '/var/lib/certsync');
  assert.equal(config.settleMs, 50);
  assert.equal(config.rejectSettleMs, 2000);
  assert.deepEqual(config.fleet, { mode: 'connected' });
  assert.equal(config.bundles[0]?.files[0]?.mode, 0o644);
  assert.equal(config.bundles[0]?.files[1]?.mode, 0o600);
  assert.ok(Object.isFrozen(config.bundles[0]?.files));
});

test('validation limits: limits.maxFileBytes 1 MiB, requireChain on, link root from the source', () => {
  const config = parseServerConfig({ insecure: true, bundles: [minimalBundle] });
  assert.equal(config.limits.maxFileBytes, 1024 * 1024);
  assert.equal(config.bundles[0]?.requireChain, true);
  assert.equal(config.bundles[0]?.linkRoot, undefined);
  assert.equal(linkRootOf(config.bundles[0]!), '/swag/etc/letsencrypt');
  assert.equal(linkRootOf({ source: '/srv/certs/site' }), '/srv/certs/site');
  assert.equal(linkRootOf({ source: '/srv/certs/site', linkRoot: '/srv' }), '/srv');
  assert.throws(
    () =>
      parseServerConfig({ insecure: true, bundles: [minimalBundle], limits: { maxFileBytes: 10 } }),
    (error: unknown) =>
      error instanceof ConfigError && error.message.includes('limits.maxFileBytes:'),
  );
});

test('unknown keys are rejected with their path', () => {
  assert.throws(
    () =>
      parseServerConfig({
        insecure: true,
        bundles: [{ ...minimalBundle, expectName: ['x'] }],
        lisen: 'x',
      }),
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
    () => parseServerConfig({ insecure: true, bundles: [bad] }),
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
  const config = parseServerConfig({ insecure: true, bundles: [owned] });
  assert.equal(config.bundles[0]?.files[0]?.owner, undefined);
  assert.deepEqual(config.bundles[0]?.files[1]?.owner, { uid: 100, gid: 1000 });

  for (const owner of [
    'vault:vault',
    '100',
    '100:',
    ':100',
    '-1:0',
    '100:1000:1',
    '4294967295:0',
  ]) {
    const bad = { ...minimalBundle, files: [{ ...minimalBundle.files[1], owner }] };
    assert.throws(
      () => parseServerConfig({ insecure: true, bundles: [bad] }),
      (error: unknown) =>
        error instanceof ConfigError && error.message.includes('bundles[0].files[0].owner: '),
      `owner ${owner} is refused`,
    );
  }
});

test('duplicate bundle names and duplicate targets are refused', () => {
  assert.throws(
    () => parseServerConfig({ insecure: true, bundles: [minimalBundle, minimalBundle] }),
    /used twice/,
  );
  const twice = { ...minimalBundle, files: [minimalBundle.files[0], minimalBundle.files[0]] };
  assert.throws(() => parseServerConfig({ insecure: true, bundles: [twice] }), /same target/);
  const otherBundle = { ...minimalBundle, name: 'other' };
  assert.throws(
    () => parseServerConfig({ insecure: true, bundles: [minimalBundle, otherBundle] }),
    /bundles\[1\]\.files\[0\]\.target: ".*" is also written by bundle "iklim-co"/,
  );
});

test('a YAML file is read, overrides win, and YAML errors name the file', async () => {
  const dir = await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-config-'));
  const file = path.join(dir, 'certsync.yml');
  await fs.writeFile(
    file,
    [
      'listen: 0.0.0.0:7443',
      'insecure: true',
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
  assert.throws(
    () => loadServerConfig(file),
    (error: unknown) => error instanceof ConfigError && error.message.includes(file),
  );
  assert.throws(() => loadServerConfig(path.join(dir, 'missing.yml')), /cannot read config file/);
  await fs.rm(dir, { recursive: true, force: true });
});

test('fleet modes and reload targets are read with their defaults', () => {
  const config = parseServerConfig({
    insecure: true,
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
  assert.deepEqual(config.fleet, {
    mode: 'swarm',
    agentService: 'certsync_agent',
    refreshIntervalMs: 10_000,
  });
  assert.equal(config.convergeTimeoutMs, 300_000);
  assert.deepEqual(config.bundles[0]?.reload, [
    { service: 'iklimco_vault', action: 'force-update', timeoutMs: 300_000, onFailure: 'hold' },
    {
      service: 'iklimco_nginx',
      action: 'signal',
      signal: 'SIGHUP',
      timeoutMs: 300_000,
      onFailure: 'hold',
    },
  ]);
  assert.deepEqual(
    parseServerConfig({
      insecure: true,
      fleet: { mode: 'static', nodes: ['n1', 'n2'] },
      bundles: [minimalBundle],
    }).fleet,
    {
      mode: 'static',
      nodes: ['n1', 'n2'],
    },
  );
});

test('a verify section takes its defaults and refuses bad endpoints', () => {
  const bundle = (verify: unknown) => ({
    ...minimalBundle,
    reload: [{ service: 'v', action: 'force-update', verify, onFailure: 'rollback' }],
  });
  const config = parseServerConfig({
    insecure: true,
    bundles: [
      bundle({
        tls: { port: 8200, serverName: 'vault.iklim.co' },
        vault: { unsealKeyFile: '/run/secrets/k' },
      }),
    ],
  });
  assert.deepEqual(config.bundles[0]?.reload[0]?.verify, {
    tls: { port: 8200, serverName: 'vault.iklim.co' },
    vault: { unsealKeyFile: '/run/secrets/k' },
    timeoutMs: 120_000,
  });
  assert.equal(config.bundles[0]?.reload[0]?.onFailure, 'rollback');
  assert.throws(
    () =>
      parseServerConfig({
        insecure: true,
        bundles: [bundle({ tls: { port: 8200, endpoints: ['nohost'] } })],
      }),
    /verify\.tls\.endpoints\[0\]: must be HOST:PORT/,
  );
  assert.throws(
    () => parseServerConfig({ insecure: true, bundles: [bundle({ tls: {} })] }),
    /verify\.tls\.port/,
  );
});

test('bad fleet and reload settings name their key', () => {
  const attempts: Array<[unknown, RegExp]> = [
    [{ fleet: { mode: 'swarm' }, bundles: [minimalBundle] }, /fleet\.agentService/],
    [
      { fleet: { mode: 'static', nodes: [] }, bundles: [minimalBundle] },
      /fleet\.nodes: list at least one node ID/,
    ],
    [
      { fleet: { mode: 'static', nodes: ['a'], agentService: 'x' }, bundles: [minimalBundle] },
      /fleet: Unrecognized key: "agentService"/,
    ],
    [
      { bundles: [{ ...minimalBundle, reload: [{ service: 'v', action: 'restart' }] }] },
      /bundles\[0\]\.reload\[0\]\.action/,
    ],
    [
      {
        bundles: [
          { ...minimalBundle, reload: [{ service: 'v', action: 'signal', signal: 'SIGKILL' }] },
        ],
      },
      /bundles\[0\]\.reload\[0\]\.signal/,
    ],
    [
      {
        bundles: [
          {
            ...minimalBundle,
            reload: [{ service: 'v', action: 'force-update', signal: 'SIGHUP' }],
          },
        ],
      },
      /Unrecognized key: "signal"/,
    ],
  ];
  for (const [raw, pattern] of attempts) {
    assert.throws(
      () => parseServerConfig(raw),
      (error: unknown) => error instanceof ConfigError && pattern.test(error.message),
      String(pattern),
    );
  }
});

test('the transport must be chosen: TLS with a credential per role, or insecure by name', () => {
  const tls = { certFile: '/run/secrets/server.crt', keyFile: '/run/secrets/server.key' };
  const tokens = { agentTokenFile: '/run/secrets/agent', adminTokenFile: '/run/secrets/admin' };
  const refused: Array<[unknown, RegExp]> = [
    [
      { bundles: [minimalBundle] },
      /tls: no transport chosen; set tls: \{ certFile, keyFile \}.*or insecure: true/,
    ],
    [
      { tls, insecure: true, auth: tokens, bundles: [minimalBundle] },
      /tls and insecure: true exclude each other/,
    ],
    [
      { tls, bundles: [minimalBundle] },
      /auth\.agentTokenFile, auth\.adminTokenFile: with tls every caller must authenticate/,
    ],
    [
      { tls, auth: { agentTokenFile: '/a' }, bundles: [minimalBundle] },
      /auth\.adminTokenFile: with tls/,
    ],
    [
      { tls, auth: { agentTokenFile: '/a', adminTokenFile: '/a' }, bundles: [minimalBundle] },
      /auth\.adminTokenFile: must not be the agent token file/,
    ],
    [{ insecure: false, bundles: [minimalBundle] }, /insecure/],
    [{ tls: { certFile: '/c' }, auth: tokens, bundles: [minimalBundle] }, /tls\.keyFile/],
  ];
  for (const [raw, pattern] of refused) {
    assert.throws(
      () => parseServerConfig(raw),
      (error: unknown) => error instanceof ConfigError && pattern.test(error.message),
      String(pattern),
    );
  }
  assert.deepEqual(parseServerConfig({ tls, auth: tokens, bundles: [minimalBundle] }).tls, tls);
  const mtls = parseServerConfig({
    tls: { ...tls, clientCaFile: '/run/secrets/client-ca.pem' },
    bundles: [minimalBundle],
  });
  assert.equal(mtls.tls?.clientCaFile, '/run/secrets/client-ca.pem');
});

test('limits take defaults, and a bundle with more files than allowed names the key', () => {
  const config = parseServerConfig({ insecure: true, bundles: [minimalBundle] });
  assert.deepEqual(config.limits, {
    maxMessageBytes: 4 * 1024 * 1024,
    maxFilesPerBundle: 16,
    maxFileBytes: 1024 * 1024,
  });
  assert.throws(
    () =>
      parseServerConfig({
        insecure: true,
        limits: { maxFilesPerBundle: 1 },
        bundles: [minimalBundle],
      }),
    /bundles\[0\]\.files: 2 files, more than limits\.maxFilesPerBundle \(1\)/,
  );
  assert.throws(
    () =>
      parseServerConfig({
        insecure: true,
        limits: { maxMessageBytes: 65536, maxFileBytes: 1048576 },
        bundles: [minimalBundle],
      }),
    /limits\.maxFileBytes \(1048576\) is larger than limits\.maxMessageBytes \(65536\)/,
  );
});

test('metrics: no listener unless metrics.listen is set; expiryWarningDays defaults to 14', () => {
  const plain = parseServerConfig({ insecure: true, bundles: [minimalBundle] });
  assert.equal(plain.metrics, undefined);
  assert.equal(plain.expiryWarningDays, 14);
  const withMetrics = parseServerConfig({
    insecure: true,
    bundles: [minimalBundle],
    metrics: { listen: '127.0.0.1:9464' },
    expiryWarningDays: 30,
  });
  assert.deepEqual(withMetrics.metrics, { listen: '127.0.0.1:9464' });
  assert.equal(withMetrics.expiryWarningDays, 30);
  assert.throws(
    () =>
      parseServerConfig({ insecure: true, bundles: [minimalBundle], metrics: { listen: '9464' } }),
    /metrics\.listen: must be HOST:PORT/,
  );
  assert.throws(
    () =>
      parseServerConfig({
        insecure: true,
        bundles: [minimalBundle],
        metrics: { listen: '[::]:9464', path: '/m' },
      }),
    /metrics: Unrecognized key/,
  );
  assert.throws(
    () => parseServerConfig({ insecure: true, bundles: [minimalBundle], expiryWarningDays: -1 }),
    /expiryWarningDays:/,
  );
});

test('stateStore: local by default; swarm needs keyFile, fills the lease TTL, rejects unknown keys', () => {
  assert.deepEqual(parseServerConfig({ insecure: true, bundles: [minimalBundle] }).stateStore, {
    kind: 'local',
  });
  const swarm = parseServerConfig({
    insecure: true,
    bundles: [minimalBundle],
    stateStore: { kind: 'swarm', keyFile: '/run/secrets/certsync_state_key' },
  });
  assert.deepEqual(swarm.stateStore, {
    kind: 'swarm',
    keyFile: '/run/secrets/certsync_state_key',
    leaseTtlMs: 15_000,
  });
  assert.throws(
    () =>
      parseServerConfig({
        insecure: true,
        bundles: [minimalBundle],
        stateStore: { kind: 'swarm' },
      }),
    (error: unknown) =>
      error instanceof ConfigError && error.message.includes('stateStore.keyFile'),
  );
  assert.throws(
    () =>
      parseServerConfig({
        insecure: true,
        bundles: [minimalBundle],
        stateStore: { kind: 'local', keyFile: 'x' },
      }),
    (error: unknown) => error instanceof ConfigError && error.message.includes('stateStore'),
  );
  assert.throws(
    () =>
      parseServerConfig({ insecure: true, bundles: [minimalBundle], stateStore: { kind: 'etcd' } }),
    (error: unknown) => error instanceof ConfigError && error.message.includes('stateStore.kind'),
  );
});

test('the reject wait follows an explicit settleMs and may not be shorter than it', () => {
  const bundles = [minimalBundle];
  const oldStyle = parseServerConfig({ insecure: true, bundles, settleMs: 500 });
  assert.equal(oldStyle.settleMs, 500);
  assert.equal(oldStyle.rejectSettleMs, 2000, 'an old config keeps a reject wait over settleMs');
  const slow = parseServerConfig({ insecure: true, bundles, settleMs: 5000 });
  assert.equal(slow.rejectSettleMs, 5000, 'never shorter than settleMs');
  const both = parseServerConfig({ insecure: true, bundles, settleMs: 20, rejectSettleMs: 800 });
  assert.deepEqual([both.settleMs, both.rejectSettleMs], [20, 800]);
  assert.throws(
    () => parseServerConfig({ insecure: true, bundles, settleMs: 500, rejectSettleMs: 100 }),
    (error: unknown) =>
      error instanceof ConfigError &&
      /rejectSettleMs: must be at least settleMs \(500\)/.test(error.message),
  );
});
