import { promises as fs } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { GetStatusResponse } from '../../common/contract';
import { AdminClient } from '../../ctl/admin-client';
import { freePort, runToCompletion, startProcess, waitFor, type ManagedProcess } from './processes';
import {
  adminTransportArgs,
  agentTransportArgs,
  clientTransport,
  createTransportFixture,
  serverTransportConfig,
  type TransportFixture,
  type TransportMode,
} from './transport-fixture';

/** The targets every harness bundle writes, and the modes it asks for. */
export const HARNESS_TARGETS = {
  fullchain: { target: 'STAR.example.test.full.crt', mode: 0o644 },
  privkey: { target: 'STAR.example.test_key.pem', mode: 0o600 },
} as const;

export interface FleetHarnessOptions {
  workDir?: string;
  /** The source folder the server watches (a certbot live/NAME folder). */
  liveDir: string;
  bundleName?: string;
  settleMs?: number;
  /** Extra top-level YAML lines (e.g. `fleet: { mode: static, nodes: [a, b] }`). */
  extraConfig?: string[];
  /** Extra YAML lines inside the bundle (e.g. a `reload:` list), indented by the caller. */
  extraBundleConfig?: string[];
  /** TLS with tokens by default; `mtls` for client certificates, `insecure` for plaintext. */
  transport?: TransportMode;
  /** Mode and owner per file, as YAML values (`"0640"`, `"100:1000"`); default modes as above. */
  fileSettings?: FileSettings;
}

export type FileSettings = Partial<
  Record<keyof typeof HARNESS_TARGETS, { mode?: string; owner?: string }>
>;

/** The `files:` lines of the harness bundle. */
function fileLines(settings: FileSettings = {}): string[] {
  return (Object.keys(HARNESS_TARGETS) as Array<keyof typeof HARNESS_TARGETS>).map((kind) => {
    const { target, mode } = HARNESS_TARGETS[kind];
    const chosen = settings[kind] ?? {};
    const owner = chosen.owner === undefined ? '' : `, owner: "${chosen.owner}"`;
    return `      - { source: ${kind}.pem, target: ${target}, mode: "${chosen.mode ?? `0${mode.toString(8)}`}"${owner} }`;
  });
}

/**
 * A real certsync-server and real agents as child processes on loopback, each agent with its own
 * folder, plus an admin client. Used by the integration tests (the demo wires the same parts).
 * Everything runs over TLS with an agent and an admin token unless `transport` says otherwise.
 */
export class FleetHarness {
  readonly admin: AdminClient;
  readonly agents = new Map<string, ManagedProcess>();
  server: ManagedProcess | undefined;

  private constructor(
    readonly workDir: string,
    readonly port: number,
    readonly configFile: string,
    readonly bundleName: string,
    readonly credentials: TransportFixture,
    readonly transport: TransportMode,
    private readonly options: FleetHarnessOptions,
  ) {
    this.admin = new AdminClient(
      `127.0.0.1:${port}`,
      clientTransport(credentials, transport, 'admin'),
      2_000,
    );
  }

  static async create(options: FleetHarnessOptions): Promise<FleetHarness> {
    const workDir =
      options.workDir ?? (await fs.mkdtemp(path.join(os.tmpdir(), 'certsync-fleet-')));
    const port = await freePort();
    const bundleName = options.bundleName ?? 'example';
    const configFile = path.join(workDir, 'certsync.yml');
    const transport = options.transport ?? 'tls';
    const credentials = await createTransportFixture(path.join(workDir, 'secrets'));
    const harness = new FleetHarness(
      workDir,
      port,
      configFile,
      bundleName,
      credentials,
      transport,
      options,
    );
    await harness.writeConfig(options.fileSettings);
    return harness;
  }

  /** (Re)writes the server's config; a running server reads it only when started again. */
  async writeConfig(fileSettings?: FileSettings): Promise<void> {
    const { options, port, bundleName, workDir, credentials, transport } = this;
    const config = [
      `listen: 127.0.0.1:${port}`,
      ...serverTransportConfig(credentials, transport),
      `stateDir: ${JSON.stringify(path.join(workDir, 'state'))}`,
      `settleMs: ${options.settleMs ?? 200}`,
      'logLevel: debug',
      ...(options.extraConfig ?? []),
      'bundles:',
      `  - name: ${bundleName}`,
      `    source: ${JSON.stringify(options.liveDir)}`,
      '    files:',
      ...fileLines(fileSettings),
      '    expectNames: ["*.example.test"]',
      ...(options.extraBundleConfig ?? []),
      '',
    ].join('\n');
    await fs.writeFile(this.configFile, config);
  }

  nodeDir(nodeId: string): string {
    return path.join(this.workDir, 'nodes', nodeId);
  }

  async startServer(): Promise<void> {
    this.server = await startProcess(
      'server',
      ['--config', this.configFile],
      path.join(this.workDir, 'logs', 'server.log'),
    );
    await waitFor(
      'the server to answer',
      async () => (await this.admin.getStatus()) ?? undefined,
      15_000,
    );
  }

  async startAgent(
    nodeId: string,
    dir = this.nodeDir(nodeId),
    extraArgs: string[] = [],
  ): Promise<ManagedProcess> {
    await fs.mkdir(dir, { recursive: true });
    const args = ['--server', `127.0.0.1:${this.port}`, '--dir', dir, '--node-id', nodeId];
    args.push(...agentTransportArgs(this.credentials, this.transport), ...extraArgs);
    const agent = await startProcess(
      'agent',
      args,
      path.join(this.workDir, 'logs', `agent-${nodeId}.log`),
    );
    this.agents.set(nodeId, agent);
    return agent;
  }

  /** Runs certsyncctl against this server with the admin credential; `args` follow the global flags. */
  runCtl(args: string[]) {
    return runToCompletion('ctl', [
      '--server',
      `127.0.0.1:${this.port}`,
      ...adminTransportArgs(this.credentials, this.transport),
      ...args,
    ]);
  }

  /** Waits until the bundle is at `version` and every listed node confirmed it. */
  async waitForConvergence(
    version: number,
    nodeIds: readonly string[],
    timeoutMs = 15_000,
  ): Promise<GetStatusResponse> {
    return waitFor(
      `nodes ${nodeIds.join(', ')} to hold version ${version}`,
      async () => {
        const status = await this.admin.getStatus();
        const bundle = status.bundles.find((candidate) => candidate.name === this.bundleName);
        if (bundle?.currentVersion !== version) return undefined;
        const done = nodeIds.every((nodeId) => {
          const node = bundle.nodes.find((candidate) => candidate.nodeId === nodeId);
          return node?.inSync && node.appliedVersion === version;
        });
        return done ? status : undefined;
      },
      timeoutMs,
    );
  }

  async stop(): Promise<void> {
    this.admin.close();
    await Promise.all([...this.agents.values()].map((agent) => agent.stop()));
    await this.server?.stop();
  }

  async destroy(): Promise<void> {
    await this.stop();
    if (!process.env['CERTSYNC_KEEP_TEST_DIRS'])
      await fs.rm(this.workDir, { recursive: true, force: true });
  }
}
