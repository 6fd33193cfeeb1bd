import * as grpc from '@grpc/grpc-js';
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import * as path from 'node:path';
import { afterEach, beforeEach, describe, it } from 'node:test';
import { type Agent, createAgent } from '../../agent/agent';
import { attemptAfterDisconnect, backoffDelayMs } from '../../agent/backoff';
import { createAgentConfig } from '../../agent/config';
import {
  type AgentHello,
  AgentServiceService,
  type AgentServiceServer,
  type ApplyReport,
  type BundleFile,
  type BundlePush,
  type DriftReport,
  type SignalReport,
  type SignalRequest,
  type SyncRequest,
  type SyncResponse,
} from '../../common/contract';
import { sha256Hex } from '../../common/digest';
import { createSilentLogger } from '../../common/log';

const WAIT_TIMEOUT_MS = 5000;

/** What the agent can send, by the oneof case that carries it. */
interface AgentMessages {
  hello: AgentHello;
  applyReport: ApplyReport;
  driftReport: DriftReport;
  signalReport: SignalReport;
}
type Kind = keyof AgentMessages;

/** One message received, with the number of the stream (1, 2, ...) that carried it. */
interface Received<K extends Kind = Kind> {
  readonly kind: K;
  readonly value: AgentMessages[K];
  readonly stream: number;
  /** Arrival order across all streams and kinds. */
  readonly seq: number;
}

/**
 * A real grpc-js server speaking AgentService, which records what agents send and lets the test
 * push bundles down the latest stream.
 */
class TestServer {
  private server: grpc.Server | undefined;
  private readonly calls: Array<grpc.ServerDuplexStream<SyncRequest, SyncResponse>> = [];
  private readonly inbox: Received[] = [];
  private readonly waiters: Array<() => void> = [];
  private received = 0;
  port = 0;

  async start(port = 0): Promise<void> {
    const server = new grpc.Server();
    const implementation: AgentServiceServer = { sync: (call) => this.onSync(call) };
    server.addService(AgentServiceService, implementation);
    this.port = await new Promise<number>((resolve, reject) => {
      server.bindAsync(
        `127.0.0.1:${port}`,
        grpc.ServerCredentials.createInsecure(),
        (error, bound) => (error ? reject(error) : resolve(bound)),
      );
    });
    this.server = server;
  }

  stop(): void {
    this.server?.forceShutdown();
    this.server = undefined;
  }

  get streamCount(): number {
    return this.calls.length;
  }

  push(push: BundlePush): void {
    const call = this.calls.at(-1);
    assert.ok(call, 'no agent stream to push on');
    call.write({ message: { $case: 'push', value: push } });
  }

  signal(request: SignalRequest): void {
    const call = this.calls.at(-1);
    assert.ok(call, 'no agent stream to signal on');
    call.write({ message: { $case: 'signal', value: request } });
  }

  /** The next unconsumed message of this kind (and matching `accept`), waiting if needed. */
  async next<K extends Kind>(
    kind: K,
    accept: (value: AgentMessages[K]) => boolean = () => true,
  ): Promise<Received<K>> {
    const deadline = Date.now() + WAIT_TIMEOUT_MS;
    const isWanted = (item: Received): item is Received<K> =>
      item.kind === kind && accept(item.value as AgentMessages[K]);
    for (;;) {
      const found = this.inbox.find(isWanted);
      if (found !== undefined) {
        this.inbox.splice(this.inbox.indexOf(found), 1);
        return found;
      }
      const remainingMs = deadline - Date.now();
      assert.ok(remainingMs > 0, `timed out waiting for ${kind}`);
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, remainingMs);
        this.waiters.push(() => {
          clearTimeout(timer);
          resolve();
        });
      });
    }
  }

  pending(kind: Kind): number {
    return this.inbox.filter((item) => item.kind === kind).length;
  }

  private onSync(call: grpc.ServerDuplexStream<SyncRequest, SyncResponse>): void {
    const stream = this.calls.push(call);
    call.on('data', (request: SyncRequest) => {
      const message = request.message;
      if (message === undefined) return;
      this.received += 1;
      this.inbox.push({ kind: message.$case, value: message.value, stream, seq: this.received });
      this.waiters.splice(0).forEach((wake) => wake());
    });
    call.on('end', () => call.end());
    call.on('error', () => undefined);
  }
}

function bundleFile(target: string, text: string, mode = 0o600): BundleFile {
  const content = Buffer.from(text);
  return {
    target,
    mode,
    sha256: sha256Hex(content),
    size: content.length,
    content,
    owner: undefined,
  };
}

function fullPush(version: number, files: BundleFile[]): BundlePush {
  return { bundle: 'web', version, files, manifestOnly: false };
}

function signalRequest(requestId: string, signal: string): SignalRequest {
  return { requestId, service: 'cssig_web', signal, bundle: 'web', version: 1 };
}

async function diskDigest(file: string): Promise<string> {
  return sha256Hex(await readFile(file));
}

describe('certsync-agent against a real gRPC server', () => {
  let root: string;
  let dir: string;
  let server: TestServer;
  let agent: Agent | undefined;

  beforeEach(async () => {
    root = await mkdtemp(path.join(tmpdir(), 'certsync-agent-'));
    dir = path.join(root, 'ssl');
    await mkdir(dir);
    server = new TestServer();
    await server.start();
  });

  afterEach(async () => {
    await agent?.stop();
    agent = undefined;
    server.stop();
    await rm(root, { recursive: true, force: true });
  });

  async function startAgent(): Promise<Agent> {
    const config = createAgentConfig({
      serverAddress: `127.0.0.1:${server.port}`,
      dir,
      nodeId: 'node-1',
      transport: { insecure: true },
      reconnect: { initialDelayMs: 20, maxDelayMs: 200, healthyAfterMs: 1000 },
      driftDebounceMs: 50,
      dockerSocketPath: path.join(root, 'no-such-docker.sock'),
    });
    agent = createAgent(config, createSilentLogger());
    await agent.start();
    return agent;
  }

  it('says hello with the digests of the files already in the folder', async () => {
    await mkdir(path.join(dir, 'nested'));
    await writeFile(path.join(dir, 'cert.pem'), 'CERT', { mode: 0o644 });
    await writeFile(path.join(dir, 'nested/key.pem'), 'KEY', { mode: 0o600 });
    await writeFile(path.join(dir, '.key.pem.certsync-abc123.tmp'), 'stale');
    await symlink(path.join(dir, 'cert.pem'), path.join(dir, 'link.pem'));

    await startAgent();
    const { value: hello } = await server.next('hello');

    assert.equal(hello.nodeId, 'node-1');
    assert.equal(hello.dir, dir);
    assert.match(hello.agentVersion, /^\d+\.\d+\.\d+/);
    assert.deepEqual(hello.files, [
      { path: 'cert.pem', sha256: sha256Hex('CERT'), size: 4, mode: 0o644 },
      { path: 'nested/key.pem', sha256: sha256Hex('KEY'), size: 3, mode: 0o600 },
    ]);
  });

  it('writes a push to disk and reports the digests it reads back', async () => {
    await startAgent();
    await server.next('hello');

    server.push(
      fullPush(1, [bundleFile('cert.pem', 'CERT-1', 0o644), bundleFile('key.pem', 'KEY-1')]),
    );
    const { value: report } = await server.next('applyReport');

    assert.equal(report.ok, true, report.error?.message);
    assert.equal(report.filesWritten, 2);
    assert.deepEqual(
      report.files.map((file) => [file.path, file.sha256]),
      [
        ['cert.pem', await diskDigest(path.join(dir, 'cert.pem'))],
        ['key.pem', await diskDigest(path.join(dir, 'key.pem'))],
      ],
    );
    assert.equal(await readFile(path.join(dir, 'key.pem'), 'utf8'), 'KEY-1');
    assert.equal((await stat(path.join(dir, 'key.pem'))).mode & 0o7777, 0o600);
  });

  it('answers a manifest-only push from disk, asking for content when bytes differ', async () => {
    await writeFile(path.join(dir, 'cert.pem'), 'CERT-1');
    await startAgent();
    await server.next('hello');
    const manifestOf = (file: BundleFile): BundleFile => ({ ...file, content: Buffer.alloc(0) });

    server.push({
      bundle: 'web',
      version: 1,
      manifestOnly: true,
      files: [manifestOf(bundleFile('cert.pem', 'CERT-1'))],
    });
    const { value: matching } = await server.next('applyReport');
    server.push({
      bundle: 'web',
      version: 2,
      manifestOnly: true,
      files: [manifestOf(bundleFile('cert.pem', 'CERT-2'))],
    });
    const { value: differing } = await server.next('applyReport');

    assert.equal(matching.ok, true);
    assert.equal(matching.filesWritten, 0);
    assert.equal(differing.ok, false);
    assert.equal(differing.error?.code, 'DIGEST_MISMATCH');
    assert.equal(differing.error?.path, 'cert.pem');
    assert.equal(await readFile(path.join(dir, 'cert.pem'), 'utf8'), 'CERT-1');
  });

  it('reports a refused push with the error code and leaves the folder alone', async () => {
    await startAgent();
    await server.next('hello');

    server.push(fullPush(1, [bundleFile('../outside.pem', 'X')]));
    const { value: report } = await server.next('applyReport');

    assert.equal(report.ok, false);
    assert.equal(report.error?.code, 'PATH_ESCAPE');
    await assert.rejects(stat(path.join(root, 'outside.pem')), { code: 'ENOENT' });
  });

  it('reports drift of a managed file and restores it when the server pushes again', async () => {
    await startAgent();
    await server.next('hello');
    const files = [bundleFile('cert.pem', 'CERT-1', 0o644), bundleFile('key.pem', 'KEY-1')];
    server.push(fullPush(1, files));
    assert.equal((await server.next('applyReport')).value.ok, true);

    await writeFile(path.join(dir, 'key.pem'), 'TAMPERED');
    const { value: drift } = await server.next('driftReport');

    assert.equal(drift.bundle, 'web');
    assert.equal(drift.version, 1);
    const key = drift.files.find((file) => file.path === 'key.pem');
    assert.equal(key?.sha256, sha256Hex('TAMPERED'));

    server.push(fullPush(1, files));
    const { value: repaired } = await server.next('applyReport');
    assert.equal(repaired.ok, true);
    assert.equal(repaired.filesWritten, 1);
    assert.equal(await readFile(path.join(dir, 'key.pem'), 'utf8'), 'KEY-1');

    // The agent's own rewrite must not come back as drift.
    await new Promise((resolve) => setTimeout(resolve, 300));
    assert.equal(server.pending('driftReport'), 0);

    await rm(path.join(dir, 'cert.pem'));
    const { value: deleted } = await server.next('driftReport');
    assert.equal(deleted.files.find((file) => file.path === 'cert.pem')?.sha256, '');
  });

  it('answers a signal with DOCKER_UNAVAILABLE when the Docker socket is missing', async () => {
    await startAgent();
    await server.next('hello');

    server.signal(signalRequest('req-1', 'SIGHUP'));
    const { value: report } = await server.next('signalReport');

    assert.equal(report.requestId, 'req-1');
    assert.equal(report.ok, false);
    assert.equal(report.error?.code, 'DOCKER_UNAVAILABLE');
    assert.ok(report.error?.message.includes(path.join(root, 'no-such-docker.sock')));
    assert.match(report.error?.message ?? '', /bind-mount the node's Docker socket/);
    assert.deepEqual(report.containers, []);
  });

  it('refuses a signal that is not a reload signal before asking Docker', async () => {
    await startAgent();
    await server.next('hello');

    server.signal(signalRequest('req-2', 'SIGKILL'));
    const { value: report } = await server.next('signalReport');

    assert.equal(report.ok, false);
    assert.equal(report.error?.code, 'INVALID_SIGNAL');
    assert.match(report.error?.message ?? '', /"SIGKILL".*SIGHUP/);
  });

  it('answers a signal only after the push queued before it is written', async () => {
    await startAgent();
    await server.next('hello');
    const big = 'X'.repeat(512 * 1024);

    server.push(fullPush(1, [bundleFile('cert.pem', big), bundleFile('key.pem', 'KEY-1')]));
    server.signal(signalRequest('req-3', 'SIGHUP'));
    const signalled = await server.next('signalReport');
    const applied = await server.next('applyReport');

    assert.equal(applied.value.ok, true, applied.value.error?.message);
    assert.ok(applied.seq < signalled.seq, 'the signal report overtook the apply report');
  });

  it('keeps files while the server is away and says hello again after it returns', async () => {
    await startAgent();
    const first = await server.next('hello');
    server.push(fullPush(1, [bundleFile('cert.pem', 'CERT-1')]));
    await server.next('applyReport');
    const port = server.port;

    server.stop();
    await waitFor(() => agent?.connectionState !== 'connected');
    assert.equal(await readFile(path.join(dir, 'cert.pem'), 'utf8'), 'CERT-1');
    await server.start(port);
    const second = await server.next('hello', (hello) => hello.nodeId === 'node-1');

    assert.ok(second.stream > first.stream);
    assert.deepEqual(second.value.files, [
      { path: 'cert.pem', sha256: sha256Hex('CERT-1'), size: 6, mode: 0o600 },
    ]);
    await waitFor(() => agent?.connectionState === 'connected');
  });
});

describe('reconnect backoff', () => {
  const policy = { initialDelayMs: 250, maxDelayMs: 30_000, healthyAfterMs: 60_000 };

  it('grows the jitter window exponentially up to the cap', () => {
    const almostOne = () => 0.999_999;
    const ceilings = [0, 1, 2, 3, 7, 8, 200].map((attempt) =>
      backoffDelayMs(attempt, policy, almostOne),
    );
    assert.deepEqual(ceilings, [249, 499, 999, 1999, 29_999, 29_999, 29_999]);
    assert.equal(
      backoffDelayMs(5, policy, () => 0),
      0,
    );
  });

  it('resets the attempt counter only after a healthy connection', () => {
    assert.equal(attemptAfterDisconnect(6, undefined, policy), 6);
    assert.equal(attemptAfterDisconnect(6, 59_999, policy), 6);
    assert.equal(attemptAfterDisconnect(6, 60_000, policy), 0);
  });
});

async function waitFor(condition: () => boolean): Promise<void> {
  const deadline = Date.now() + WAIT_TIMEOUT_MS;
  while (!condition()) {
    assert.ok(Date.now() < deadline, 'timed out waiting for condition');
    await new Promise((resolve) => setTimeout(resolve, 10));
  }
}
