import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createClientTransport } from '../../common/client-transport';
import { AdminServiceService } from '../../common/contract';
import { createCertbotTree } from '../support/certbot-tree';
import { FleetHarness } from '../support/fleet-harness';
import {
  callEveryAdminRpc,
  checkHealth,
  helloFor,
  probeSync,
  type CallOutcome,
} from '../support/grpc-probe';
import {
  createRootCa,
  createWildcardSet,
  issueClientCertificate,
  type CertbotPemSet,
} from '../support/pki';
import { runToCompletion, waitFor } from '../support/processes';
import { clientTransport, LOOPBACK_SERVER_NAME } from '../support/transport-fixture';

// Transport and identity, with the server and agents as real processes: without credentials an
// agent stream and every admin RPC are refused; each role's credential opens only its own service;
// health and reflection stay open; a node identity is held by one stream; limits give clear errors.

const ADMIN_PATHS = Object.values(AdminServiceService).map((method) => method.path);

function assertEveryCode(
  outcomes: Map<string, CallOutcome>,
  code: grpc.status,
  detail: RegExp,
): void {
  assert.deepEqual([...outcomes.keys()].sort(), [...ADMIN_PATHS].sort());
  for (const [method, outcome] of outcomes) {
    assert.equal(grpc.status[outcome.code], grpc.status[code], `${method}: ${outcome.details}`);
    assert.match(outcome.details, detail, method);
  }
}

async function logsOf(harness: FleetHarness): Promise<string> {
  const dir = path.join(harness.workDir, 'logs');
  const files = await fs.readdir(dir);
  return (await Promise.all(files.map((file) => fs.readFile(path.join(dir, file), 'utf8')))).join(
    '\n',
  );
}

async function tokensOf(harness: FleetHarness): Promise<string[]> {
  const files = [harness.credentials.agentTokenFile, harness.credentials.adminTokenFile];
  return Promise.all(files.map(async (file) => (await fs.readFile(file, 'utf8')).trim()));
}

async function setUpHarness(
  prefix: string,
  pems: CertbotPemSet,
  options: Partial<Parameters<typeof FleetHarness.create>[0]> = {},
) {
  const workDir = await fs.mkdtemp(path.join(os.tmpdir(), prefix));
  const { liveDir } = await createCertbotTree(path.join(workDir, 'le'), 'example.test', pems);
  return FleetHarness.create({ workDir, liveDir, ...options });
}

describe('TLS with an agent token and an admin token', () => {
  let harness: FleetHarness;
  let address: string;

  before(async () => {
    const set = await createWildcardSet();
    harness = await setUpHarness('certsync-auth-', set.pems);
    address = `127.0.0.1:${harness.port}`;
    await harness.startServer();
    await harness.startAgent('node-a');
    await harness.waitForConvergence(1, ['node-a']);
  });

  after(async () => {
    await harness.destroy();
  });

  test('without credentials, a Sync stream and every admin RPC are refused as UNAUTHENTICATED', async () => {
    const anonymous = clientTransport(harness.credentials, 'tls', 'none');
    assertEveryCode(
      await callEveryAdminRpc(address, anonymous),
      grpc.status.UNAUTHENTICATED,
      /needs the admin credential/,
    );
    const sync = await probeSync(address, anonymous, helloFor('node-x'));
    assert.equal(grpc.status[sync.code], 'UNAUTHENTICATED', sync.details);
    assert.match(sync.details, /needs the agent credential/);
    assert.equal(
      (await harness.admin.listNodes()).nodes.some((node) => node.nodeId === 'node-x'),
      false,
    );
  });

  test('the agent token opens Sync but every admin RPC is PERMISSION_DENIED', async () => {
    const agent = clientTransport(harness.credentials, 'tls', 'agent');
    assertEveryCode(
      await callEveryAdminRpc(address, agent),
      grpc.status.PERMISSION_DENIED,
      /needs the admin role; this caller is agent/,
    );
    // node-a is connected, so a stream that gets past authentication is refused by the agent
    // service itself as a duplicate; no probe node joins the fleet.
    const sync = await probeSync(address, agent, helloFor('node-a'));
    assert.equal(grpc.status[sync.code], 'ALREADY_EXISTS', sync.details);
    assert.match(sync.details, /node "node-a" is already connected/);
  });

  test('the admin token opens admin RPCs but Sync is PERMISSION_DENIED', async () => {
    const admin = clientTransport(harness.credentials, 'tls', 'admin');
    const sync = await probeSync(address, admin, helloFor('node-y'));
    assert.equal(grpc.status[sync.code], 'PERMISSION_DENIED', sync.details);
    assert.match(sync.details, /needs the agent role; this caller is admin/);
    const status = await harness.admin.getStatus();
    assert.equal(status.bundles[0]?.currentVersion, 1);
  });

  test('a wrong token is refused on both services, and certsyncctl says how to fix it', async () => {
    const wrongFile = path.join(harness.credentials.dir, 'wrong.token');
    await fs.writeFile(wrongFile, 'f'.repeat(64), { mode: 0o600 });
    const wrong = createClientTransport({
      caFile: harness.credentials.caFile,
      serverName: LOOPBACK_SERVER_NAME,
      tokenFile: wrongFile,
    });
    assertEveryCode(
      await callEveryAdminRpc(address, wrong),
      grpc.status.UNAUTHENTICATED,
      /bearer token is not accepted/,
    );
    const sync = await probeSync(address, wrong, helloFor('node-z'));
    assert.equal(grpc.status[sync.code], 'UNAUTHENTICATED', sync.details);

    const ctl = await runToCompletion('ctl', [
      '--server',
      address,
      '--ca-file',
      harness.credentials.caFile,
      '--server-name',
      LOOPBACK_SERVER_NAME,
      'status',
    ]);
    assert.equal(ctl.code, 4, ctl.stderr);
    assert.match(
      ctl.stderr,
      /needs the admin credential.*--token-file or CERTSYNC_ADMIN_TOKEN_FILE/,
    );
    const withEnv = await runToCompletion(
      'ctl',
      ['--server', address, '--server-name', LOOPBACK_SERVER_NAME, 'status'],
      {
        CERTSYNC_CA_FILE: harness.credentials.caFile,
        CERTSYNC_ADMIN_TOKEN_FILE: harness.credentials.adminTokenFile,
      },
    );
    assert.equal(withEnv.code, 0, withEnv.stderr);
  });

  test('a plaintext client cannot talk to the TLS server', async () => {
    const plaintext = createClientTransport({
      insecure: true,
      tokenFile: harness.credentials.adminTokenFile,
    });
    const outcomes = await callEveryAdminRpc(address, plaintext);
    assert.equal(grpc.status[outcomes.get(ADMIN_PATHS[0]!)!.code], 'UNAVAILABLE');
  });

  test('an agent without a credential does not start, and says which flag is missing', async () => {
    const dir = path.join(harness.workDir, 'no-credential');
    await fs.mkdir(dir);
    const result = await runToCompletion('agent', [
      '--server',
      address,
      '--dir',
      dir,
      '--node-id',
      'node-n',
      '--ca-file',
      harness.credentials.caFile,
    ]);
    assert.equal(result.code, 2);
    assert.match(
      result.stderr,
      /no credential: pass --token-file \(or CERTSYNC_TOKEN_FILE\) or --cert-file\/--key-file/,
    );
  });

  test('health and reflection stay open: no credential needed', async () => {
    const anonymous = clientTransport(harness.credentials, 'tls', 'none');
    const health = await checkHealth(address, anonymous);
    assert.equal(grpc.status[health.code], 'OK', health.details);
    assert.equal(health.status, 'SERVING');

    const buf = path.join(process.cwd(), 'node_modules', '.bin', 'buf');
    const listed = spawnSync(
      buf,
      [
        'curl',
        '--protocol',
        'grpc',
        '--cacert',
        harness.credentials.caFile,
        '--list-services',
        `https://127.0.0.1:${harness.port}`,
      ],
      {
        encoding: 'utf8',
        cwd: os.tmpdir(),
      },
    );
    assert.equal(listed.status, 0, listed.stderr);
    for (const service of [
      'certsync.v1.AdminService',
      'certsync.v1.AgentService',
      'grpc.health.v1.Health',
    ]) {
      assert.match(listed.stdout, new RegExp(service.replace(/\./g, '\\.')));
    }
    const call = spawnSync(
      buf,
      [
        'curl',
        '--protocol',
        'grpc',
        '--cacert',
        harness.credentials.caFile,
        `https://127.0.0.1:${harness.port}/certsync.v1.AdminService/GetStatus`,
      ],
      {
        encoding: 'utf8',
        cwd: os.tmpdir(),
      },
    );
    assert.notEqual(call.status, 0, 'reflection is open, GetStatus is not');
    assert.match(call.stderr, /unauthenticated/i);
  });

  test('a second agent claiming a connected node ID is refused and reported in the log, ListNodes and status', async () => {
    const imposterDir = path.join(harness.workDir, 'imposter');
    const original = harness.agents.get('node-a')!;
    const imposter = await harness.startAgent('node-a', imposterDir);
    await waitFor('the refusal in the imposter log', async () =>
      (await fs.readFile(imposter.logFile, 'utf8')).includes('already connected')
        ? true
        : undefined,
    );
    await imposter.stop();
    harness.agents.set('node-a', original);
    assert.deepEqual(await fs.readdir(imposterDir), [], 'the imposter wrote nothing');

    const serverLog = await fs.readFile(harness.server!.logFile, 'utf8');
    const line = serverLog
      .split('\n')
      .find((entry) => entry.includes('"msg":"Duplicate node identity refused"'));
    assert.ok(line, 'the server logs the refusal');
    assert.equal(JSON.parse(line).node, 'node-a');
    const node = (await harness.admin.listNodes()).nodes.find(
      (candidate) => candidate.nodeId === 'node-a',
    );
    assert.ok((node?.duplicateRefusals ?? 0) >= 1, 'ListNodes counts the refusal');
    assert.match(node?.lastDuplicatePeer ?? '', /^(ipv4:)?127\.0\.0\.1:\d+$/);
    assert.equal(node?.connected, true, 'the first agent keeps its stream');
    const status = await harness.runCtl(['status']);
    assert.match(
      status.stdout,
      /WARNING node node-a: \d+ second agent\(s\) claimed this node ID and were refused/,
    );
  });

  test('a message over limits.maxMessageBytes is refused with RESOURCE_EXHAUSTED', async () => {
    const agent = clientTransport(harness.credentials, 'tls', 'agent');
    const huge = helloFor('node-big', 'h'.repeat(5 * 1024 * 1024));
    const outcome = await probeSync(address, agent, huge);
    assert.equal(grpc.status[outcome.code], 'RESOURCE_EXHAUSTED', outcome.details);
    assert.match(outcome.details, /larger than max/i);
  });

  test('no token appears in any log', async () => {
    const logs = await logsOf(harness);
    for (const token of await tokensOf(harness)) assert.equal(logs.includes(token), false);
    assert.match(logs, /"msg":"Call refused"/);
  });
});

describe('TLS with client certificates (mTLS)', () => {
  let harness: FleetHarness;
  let address: string;

  before(async () => {
    const set = await createWildcardSet();
    harness = await setUpHarness('certsync-mtls-', set.pems, { transport: 'mtls' });
    address = `127.0.0.1:${harness.port}`;
    await harness.startServer();
    await harness.startAgent('node-m');
  });

  after(async () => {
    await harness.destroy();
  });

  test('an agent with an OU=certsync-agent certificate converges; the admin certificate reads status', async () => {
    const status = await harness.waitForConvergence(1, ['node-m']);
    assert.equal(status.bundles[0]?.nodesInSync, 1);
    const ctl = await harness.runCtl(['status']);
    assert.equal(ctl.code, 0, ctl.stderr);
  });

  test('each certificate opens only its own service; none or an untrusted one is UNAUTHENTICATED', async () => {
    const agent = clientTransport(harness.credentials, 'mtls', 'agent');
    const admin = clientTransport(harness.credentials, 'mtls', 'admin');
    const anonymous = clientTransport(harness.credentials, 'mtls', 'none');
    assertEveryCode(
      await callEveryAdminRpc(address, agent),
      grpc.status.PERMISSION_DENIED,
      /this caller is agent/,
    );
    assertEveryCode(
      await callEveryAdminRpc(address, anonymous),
      grpc.status.UNAUTHENTICATED,
      /OU=certsync-admin/,
    );
    assert.equal(
      grpc.status[(await probeSync(address, admin, helloFor('node-q'))).code],
      'PERMISSION_DENIED',
    );

    const strangerCa = await createRootCa({ commonName: 'not the client CA' });
    const stranger = await issueClientCertificate(strangerCa, {
      organizationalUnit: 'certsync-admin',
    });
    const certFile = path.join(harness.credentials.dir, 'stranger.crt');
    const keyFile = path.join(harness.credentials.dir, 'stranger.key');
    await fs.writeFile(certFile, stranger.certPem);
    await fs.writeFile(keyFile, stranger.keyPem, { mode: 0o600 });
    const untrusted = createClientTransport({
      caFile: harness.credentials.caFile,
      serverName: LOOPBACK_SERVER_NAME,
      certFile,
      keyFile,
    });
    assertEveryCode(
      await callEveryAdminRpc(address, untrusted),
      grpc.status.UNAUTHENTICATED,
      /needs the admin credential/,
    );
  });
});

describe('plaintext only when asked for, and start-up refusals', () => {
  let set: Awaited<ReturnType<typeof createWildcardSet>>;

  before(async () => {
    set = await createWildcardSet();
  });

  test('insecure: true works and warns loudly at every start', async () => {
    const harness = await setUpHarness('certsync-insecure-', set.pems, { transport: 'insecure' });
    try {
      await harness.startServer();
      await harness.startAgent('node-p');
      await harness.waitForConvergence(1, ['node-p']);
      await harness.server!.stop();
      await sleep(100);
      await harness.startServer();
      const warnings = (await fs.readFile(harness.server!.logFile, 'utf8'))
        .split('\n')
        .filter((line) => line.includes('INSECURE: gRPC is plaintext'));
      assert.equal(warnings.length, 2, 'one warning per start');
      assert.equal(JSON.parse(warnings[0]!).level, 40, 'logged at warn');
      assert.match(
        await fs.readFile(harness.agents.get('node-p')!.logFile, 'utf8'),
        /INSECURE: plaintext gRPC to the server/,
      );
    } finally {
      await harness.destroy();
    }
  });

  test('a server without a transport, with a missing token file, or with too many files exits 2 naming the key', async () => {
    const harness = await setUpHarness('certsync-refusals-', set.pems);
    try {
      const config = await fs.readFile(harness.configFile, 'utf8');
      const attempts: Array<[string, RegExp]> = [
        [
          config.replace(/^tls: .*\n/m, '').replace(/^auth: .*\n/m, ''),
          /tls: no transport chosen; set tls: \{ certFile, keyFile \}/,
        ],
        [
          config.replace(
            harness.credentials.agentTokenFile,
            path.join(harness.workDir, 'missing.token'),
          ),
          /cannot read auth\.agentTokenFile .*missing\.token: ENOENT/,
        ],
        [
          config.replace(harness.credentials.serverKeyFile, harness.credentials.agentKeyFile),
          /tls\.keyFile .* does not match the certificate in tls\.certFile/,
        ],
        [
          `${config}limits: { maxFilesPerBundle: 1 }\n`,
          /bundles\[0\]\.files: 2 files, more than limits\.maxFilesPerBundle \(1\)/,
        ],
      ];
      for (const [text, pattern] of attempts) {
        const file = path.join(harness.workDir, 'refused.yml');
        await fs.writeFile(file, text);
        const result = await runToCompletion('server', ['--config', file]);
        assert.equal(result.code, 2, `${pattern}: ${result.stderr}`);
        assert.match(result.stderr, pattern);
        for (const token of await tokensOf(harness))
          assert.equal(result.stderr.includes(token), false);
        assert.equal(result.stderr.includes('PRIVATE KEY'), false);
      }
    } finally {
      await harness.destroy();
    }
  });

  test('a source file over limits.maxFileBytes is rejected with the limit named and nothing is sent', async () => {
    assert.ok(
      Buffer.byteLength(set.pems.fullchain) > 1024,
      'the fixture fullchain is larger than the limit',
    );
    const harness = await setUpHarness('certsync-filesize-', set.pems, {
      extraConfig: ['limits: { maxFileBytes: 1024 }'],
    });
    try {
      await harness.startServer();
      const bundle = await waitFor('the rejection in status', async () => {
        const candidate = (await harness.admin.getStatus()).bundles[0];
        return candidate?.lastRejected ? candidate : undefined;
      });
      assert.equal(bundle.currentVersion, 0);
      assert.match(
        bundle.lastRejected!.reason,
        /^file-too-large: .*fullchain\.pem is \d+ bytes, over limits\.maxFileBytes \(1024\)/,
      );
    } finally {
      await harness.destroy();
    }
  });
});
