import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type LocalDocker, LocalSignaller } from '../../agent/local-signaller';
import type { SignalledContainer } from '../../common/contract';
import { createSilentLogger } from '../../common/log';

const REQUEST = { requestId: 'r1', service: 'web', signal: 'SIGHUP', bundle: 'b', version: 1 };

/** Docker errors that a real engine cannot be made to return on demand. */
function httpError(statusCode: number, message: string): Error {
  return Object.assign(new Error(`(HTTP code ${statusCode}) ${message}`), { statusCode });
}

function container(name: string): SignalledContainer {
  return { containerId: `id-${name}`, containerName: name, taskId: `task-${name}` };
}

/** A fake engine: lists `containers`, fails the kill of any container named in `failures`. */
function fakeDocker(containers: SignalledContainer[], failures: Record<string, Error>) {
  const killed: string[] = [];
  const docker: LocalDocker = {
    listServiceContainers: async () => containers,
    async signalContainer(containerId) {
      const failure = failures[containerId];
      if (failure) throw failure;
      killed.push(containerId);
    },
  };
  return { docker, killed };
}

function signaller(docker: LocalDocker): LocalSignaller {
  const logger = createSilentLogger();
  return new LocalSignaller({ docker, socketPath: '/run/docker.sock', logger });
}

describe('LocalSignaller', () => {
  it('signals the other containers when one kill fails, and names the failed one', async () => {
    const found = [container('web.1'), container('web.2'), container('web.3')];
    const { docker, killed } = fakeDocker(found, { 'id-web.2': httpError(500, 'cgroup gone') });

    const report = await signaller(docker).signal(REQUEST);

    assert.equal(report.ok, false);
    assert.equal(report.error?.code, 'SIGNAL_FAILED');
    const message = report.error?.message ?? '';
    assert.match(message, /SIGHUP not delivered to web\.2 \(.*cgroup gone\) of service web/);
    assert.deepEqual(killed, ['id-web.1', 'id-web.3']);
    const names = report.containers.map((entry) => entry.containerName);
    assert.deepEqual(names, ['web.1', 'web.3']);
  });

  it('reports an API error while listing as DOCKER_ERROR, not as a missing socket', async () => {
    const docker: LocalDocker = {
      listServiceContainers: async () => Promise.reject(httpError(500, 'daemon busy')),
      signalContainer: async () => undefined,
    };

    const report = await signaller(docker).signal(REQUEST);

    assert.equal(report.error?.code, 'DOCKER_ERROR');
    assert.match(report.error?.message ?? '', /listing web: .*daemon busy/);
  });

  it('answers ok with no containers when the service runs none on this node', async () => {
    const { docker } = fakeDocker([], {});

    const report = await signaller(docker).signal(REQUEST);

    assert.deepEqual(report, { requestId: 'r1', ok: true, containers: [], error: undefined });
  });
});
