import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLocalDocker, LocalSignaller } from '../../agent/local-signaller';
import { AgentServiceService } from '../../common/contract';
import { createSilentLogger } from '../../common/log';
import { createAccessInterceptor } from '../../server/access-interceptor';
import { createAgentService } from '../../server/agent-service';
import { FanoutHub } from '../../server/fanout-hub';
import { Fleet } from '../../server/fleet';
import { createExpectedNodes } from '../../server/expected-nodes';
import { loadServerTransport } from '../../server/server-transport';
import { SignalDispatcher } from '../../server/signal-dispatcher';
import { VersionStore } from '../../server/version-store';
import { checkDockerEngine, type DockerEngine, startDockerEngine } from '../support/docker-engine';
import { startProcess, waitFor, type ManagedProcess } from '../support/processes';
import { agentTransportArgs, createTransportFixture } from '../support/transport-fixture';

const engineCheck = checkDockerEngine();
const IMAGE = 'cssig-busybox:1';
const WEB_SERVICE = 'cssig_web';
const OTHER_SERVICE = 'cssig_other';
const RELOAD = { service: WEB_SERVICE, signal: 'SIGHUP', bundle: 'example', version: 1 };

/**
 * A signal reload end to end on a real dockerd: the server-side dispatcher (in-process, over the
 * real AgentService on loopback) asks a real certsync-agent process, which signals containers
 * through the engine's socket. Known limit: the server's own reload config does not trigger it
 * here yet; app.ts has to wire the dispatcher in first.
 */
describe('signal reload through a real agent and real dockerd', { skip: engineCheck.skip }, () => {
  let engine: DockerEngine | undefined;
  let workDir: string;
  let grpcServer: grpc.Server | undefined;
  let agent: ManagedProcess | undefined;
  let dispatcher: SignalDispatcher;
  let hub: FanoutHub;

  /** Starts a container labelled like a Swarm task whose shell logs every SIGHUP to a file. */
  async function runTaskContainer(service: string, taskId: string): Promise<string> {
    const outDir = path.join(workDir, service);
    await fs.mkdir(outDir, { recursive: true });
    const script =
      'trap "echo hup >> /out/hups" HUP; echo ready > /out/ready; while :; do sleep 0.2; done';
    const name = `${service}.1.${taskId}`;
    await engine?.docker([
      ...['run', '-d', '--network', 'none', '--name', name],
      ...['--label', `com.docker.swarm.service.name=${service}`],
      ...['--label', `com.docker.swarm.task.id=${taskId}`],
      ...['-v', `${outDir}:/out`, IMAGE, 'sh', '-c', script],
    ]);
    await waitForText(path.join(outDir, 'ready'));
    return name;
  }

  before(async () => {
    engineCheck.require();
    const startedAt = Date.now();
    workDir = await fs.mkdtemp(path.join(os.tmpdir(), 'cssig-signal-'));
    engine = await startDockerEngine('cssig-engine');
    await engine.importBusyboxImage(IMAGE);
    await runTaskContainer(WEB_SERVICE, 'task-web-1');
    await runTaskContainer(OTHER_SERVICE, 'task-other-1');
    const readyMs = Date.now() - startedAt;
    process.stdout.write(`# engine, image and two containers ready in ${readyMs} ms\n`);

    const log = createSilentLogger();
    const store = await VersionStore.open(path.join(workDir, 'state'), [], 2, log);
    const fleet = new Fleet();
    hub = new FanoutHub(store, fleet, [], log);
    dispatcher = new SignalDispatcher(hub, log);
    const expectedNodes = createExpectedNodes(
      { mode: 'connected' },
      { fleet, docker: () => assert.fail('no Docker API here'), log },
    );
    // The real transport: TLS, the agent token, the access interceptor.
    const secrets = await createTransportFixture(path.join(workDir, 'secrets'));
    const transport = loadServerTransport(
      {
        tls: { certFile: secrets.serverCertFile, keyFile: secrets.serverKeyFile },
        auth: { agentTokenFile: secrets.agentTokenFile, adminTokenFile: secrets.adminTokenFile },
      },
      log,
    );
    grpcServer = new grpc.Server({
      interceptors: [createAccessInterceptor(transport.policy, log)],
    });
    grpcServer.addService(
      AgentServiceService,
      createAgentService(hub, expectedNodes, dispatcher, log),
    );
    const port = await new Promise<number>((resolve, reject) =>
      grpcServer?.bindAsync('127.0.0.1:0', transport.credentials, (error, bound) =>
        error ? reject(error) : resolve(bound),
      ),
    );

    const nodeDir = path.join(workDir, 'node-1');
    await fs.mkdir(nodeDir);
    const args = ['--server', `127.0.0.1:${port}`, '--dir', nodeDir, '--node-id', 'node-1'];
    args.push('--docker-socket', engine.socketPath, '--log-level', 'debug');
    args.push(...agentTransportArgs(secrets, 'tls'));
    agent = await startProcess('agent', args, path.join(workDir, 'agent-node-1.log'));
    const connected = async () => hub.connectedNodeIds().includes('node-1') || undefined;
    await waitFor('node-1 to connect', connected, 10_000);
  });

  after(async () => {
    await agent?.stop();
    grpcServer?.forceShutdown();
    await engine?.stop();
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS']) {
      await fs.rm(workDir, { recursive: true, force: true });
    }
  });

  it('signals the service containers on the node and only those', async () => {
    const target = { ...RELOAD, timeoutMs: 10_000 };
    const startedAt = Date.now();
    const outcomes = await dispatcher.signalNodes(['node-1', 'node-away'], target);
    const elapsedMs = Date.now() - startedAt;

    const containers = ['cssig_web.1.task-web-1'];
    assert.deepEqual(outcomes[0], { nodeId: 'node-1', ok: true, containers });
    assert.equal(outcomes[1]?.ok, false);
    assert.match(outcomes[1]?.error ?? '', /not connected/);
    assert.equal(await waitForText(path.join(workDir, WEB_SERVICE, 'hups')), 'hup\n');
    // The other service's shell would have written by now (it wakes every 200 ms).
    await sleep(600);
    assert.equal(await fileText(path.join(workDir, OTHER_SERVICE, 'hups')), '');
    const agentLog = await fs.readFile(agent?.logFile ?? '', 'utf8');
    assert.match(agentLog, /"msg":"Service signalled"/);
    process.stdout.write(`# signal round trip ${elapsedMs} ms\n`);
  });

  it('skips a container that vanished between the list and the kill', async () => {
    const name = await runTaskContainer(WEB_SERVICE, 'task-web-2');
    const real = createLocalDocker(engine?.socketPath ?? '');
    let listed: string[] = [];
    const racing = {
      async listServiceContainers(service: string) {
        const found = await real.listServiceContainers(service);
        listed = found.map((container) => container.containerName).sort();
        await engine?.docker(['rm', '-f', name]); // Swarm replaced the task meanwhile
        return found;
      },
      signalContainer: real.signalContainer,
    };
    const socketPath = engine?.socketPath ?? '';
    const logger = createSilentLogger();
    const signaller = new LocalSignaller({ docker: racing, socketPath, logger });

    const report = await signaller.signal({ ...RELOAD, requestId: 'r1' });

    assert.deepEqual(listed, ['cssig_web.1.task-web-1', name]);
    assert.equal(report.ok, true, report.error?.message);
    assert.deepEqual(
      report.containers.map((container) => [container.containerName, container.taskId]),
      [['cssig_web.1.task-web-1', 'task-web-1']],
    );
  });
});

async function fileText(file: string): Promise<string> {
  return fs.readFile(file, 'utf8').catch(() => '');
}

/** The file's text once it has any. */
function waitForText(file: string): Promise<string> {
  return waitFor(`text in ${file}`, async () => (await fileText(file)) || undefined, 5_000);
}
