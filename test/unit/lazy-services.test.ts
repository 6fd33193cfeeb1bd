import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import * as grpc from '@grpc/grpc-js';
import { service as healthDefinition } from 'grpc-health-check';
import { HEALTH_METHODS, HealthService } from '../../server/health-service';
import { resolveLazyService } from '../../server/lazy-service';
import { addReflection, REFLECTION_METHODS, registerReflection } from '../../server/reflection';
import { PROJECT_ROOT } from '../support/processes';

// Health and reflection are registered before their libraries are loaded: the declared methods
// must be exactly what the libraries add, and the first call must load and serve them.

test('the declared health and reflection methods are the ones the libraries add', () => {
  const health = resolveLazyService(HEALTH_METHODS, (registrar) =>
    new HealthService({}).register(registrar),
  );
  assert.deepEqual([...health.keys()].sort(), HEALTH_METHODS.map((method) => method.path).sort());
  const generatedDir = path.join(PROJECT_ROOT, 'common', 'gen');
  const reflection = resolveLazyService(REFLECTION_METHODS, (registrar) =>
    registerReflection(registrar, generatedDir),
  );
  assert.equal(reflection.size, 2);
});

test('a method the library adds but the declaration misses is refused', () => {
  assert.throws(
    () =>
      resolveLazyService(HEALTH_METHODS.slice(0, 2), (registrar) =>
        new HealthService({}).register(registrar),
      ),
    /not declared for lazy registration: \/grpc\.health\.v1\.Health\/List/,
  );
});

test('starting the server modules loads neither health, reflection nor metrics libraries', () => {
  const script = [
    `require(${JSON.stringify(path.join(PROJECT_ROOT, 'dist/server/app.js'))});`,
    'process.stdout.write(JSON.stringify(Object.keys(require.cache)));',
  ].join('\n');
  const result = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  assert.equal(result.status, 0, result.stderr);
  const loaded = (JSON.parse(result.stdout) as string[]).map((file) =>
    path.relative(PROJECT_ROOT, file),
  );
  for (const lazy of [
    'node_modules/grpc-health-check/',
    'node_modules/@grpc/reflection/',
    'node_modules/@grpc/proto-loader/',
    'node_modules/prom-client/',
    'dist/server/server-metrics.js',
  ]) {
    assert.equal(
      loaded.find((file) => file.startsWith(lazy)),
      undefined,
      `${lazy} is loaded at start`,
    );
  }
});

describe('health served on first call', () => {
  const server = new grpc.Server();
  const health = new HealthService({ '': 'NOT_SERVING', 'certsync.v1.AgentService': 'UNKNOWN' });
  let client: grpc.Client;

  before(async () => {
    health.addToServer(server);
    addReflection(server);
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync('127.0.0.1:0', grpc.ServerCredentials.createInsecure(), (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );
    client = new grpc.Client(`127.0.0.1:${port}`, grpc.credentials.createInsecure());
  });
  after(() => {
    client.close();
    server.forceShutdown();
  });

  const check = (service: string) => {
    const method = healthDefinition['Check'];
    assert.ok(method);
    return new Promise<{ code: grpc.status; status?: unknown }>((resolve) =>
      client.makeUnaryRequest(
        method.path,
        method.requestSerialize,
        method.responseDeserialize,
        { service },
        (error, response?: { status?: unknown }) =>
          resolve({ code: error?.code ?? grpc.status.OK, status: response?.status }),
      ),
    );
  };

  test('statuses set before and after the first call are served', async () => {
    health.setStatus('', 'SERVING');
    assert.deepEqual(await check(''), { code: grpc.status.OK, status: 'SERVING' });
    health.setStatus('', 'NOT_SERVING');
    assert.deepEqual(await check(''), { code: grpc.status.OK, status: 'NOT_SERVING' });
    assert.equal((await check('no.such.Service')).code, grpc.status.NOT_FOUND);
  });

  test('Watch streams the current status, then each change', async () => {
    const method = healthDefinition['Watch'];
    assert.ok(method);
    const call = client.makeServerStreamRequest(
      method.path,
      method.requestSerialize,
      method.responseDeserialize,
      { service: 'certsync.v1.AgentService' },
    );
    const seen: unknown[] = [];
    await new Promise<void>((resolve) => {
      call.on('data', (response: { status?: unknown }) => {
        seen.push(response.status);
        if (seen.length === 1) health.setStatus('certsync.v1.AgentService', 'SERVING');
        if (seen.length === 2) resolve();
      });
      call.on('error', () => undefined);
    });
    call.cancel();
    assert.deepEqual(seen, ['UNKNOWN', 'SERVING']);
  });
});
