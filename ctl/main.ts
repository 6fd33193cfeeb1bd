#!/usr/bin/env node
import * as grpc from '@grpc/grpc-js';
import { Command } from 'commander';
import { createClientTransport, CredentialFileError } from '../common/client-transport';
import { CERTSYNC_VERSION } from '../common/version';
import { AdminCallError, AdminClient } from './admin-client';
import { formatProof, formatRollout, formatStatusTable, isFleetInSync } from './status-table';

/** Exit codes scripts can rely on. */
const EXIT_OK = 0;
const EXIT_NOT_IN_SYNC = 1;
const EXIT_USAGE = 2;
const EXIT_UNREACHABLE = 3;
/** The server answered but refused the request (unknown bundle, nothing to reload, …). */
const EXIT_REFUSED = 4;

const program = new Command('certsyncctl')
  .description('Inspect a running certsync-server through its admin API.')
  // Not `--version`: `bundle` and `rollout` take `--version N` (a bundle version), and commander would
  // read a program-level `--version` anywhere on the line.
  .version(CERTSYNC_VERSION, '-V, --ctl-version', 'print the certsyncctl version')
  .option('-s, --server <host:port>', 'server address (env CERTSYNC_SERVER)', process.env['CERTSYNC_SERVER'] ?? '127.0.0.1:7443')
  .option('--json', 'print the raw response as JSON', false)
  .option('--ca-file <file>', 'CA that signed the server certificate (env CERTSYNC_CA_FILE)', process.env['CERTSYNC_CA_FILE'])
  .option('--token-file <file>', 'admin token file (env CERTSYNC_ADMIN_TOKEN_FILE)', process.env['CERTSYNC_ADMIN_TOKEN_FILE'])
  .option('--cert-file <file>', 'admin client certificate for mTLS (env CERTSYNC_CERT_FILE)', process.env['CERTSYNC_CERT_FILE'])
  .option('--key-file <file>', 'key of --cert-file (env CERTSYNC_KEY_FILE)', process.env['CERTSYNC_KEY_FILE'])
  .option('--server-name <name>', 'name to check the server certificate against (env CERTSYNC_SERVER_NAME)', process.env['CERTSYNC_SERVER_NAME'])
  .option('--insecure', 'plaintext, for a server with insecure: true (env CERTSYNC_INSECURE=1)', process.env['CERTSYNC_INSECURE'] === '1')
  .showHelpAfterError();

interface TransportFlags {
  server: string;
  caFile?: string;
  tokenFile?: string;
  certFile?: string;
  keyFile?: string;
  serverName?: string;
  insecure: boolean;
}

function client(): AdminClient {
  const flags = program.opts<TransportFlags>();
  const transport = createClientTransport({
    insecure: flags.insecure,
    ...(flags.caFile ? { caFile: flags.caFile } : {}),
    ...(flags.tokenFile ? { tokenFile: flags.tokenFile } : {}),
    ...(flags.certFile ? { certFile: flags.certFile } : {}),
    ...(flags.keyFile ? { keyFile: flags.keyFile } : {}),
    ...(flags.serverName ? { serverName: flags.serverName } : {}),
  });
  return new AdminClient(flags.server, transport);
}

function print(value: unknown, human: () => string): void {
  const json = program.opts<{ json: boolean }>().json;
  process.stdout.write(`${json ? JSON.stringify(value, null, 2) : human()}\n`);
}

program
  .command('status')
  .description('bundles, versions and the per-node sync table; exits 1 when the fleet is not in sync')
  .action(async () => {
    const status = await client().getStatus();
    print(status, () => formatStatusTable(status));
    process.exitCode = isFleetInSync(status) ? EXIT_OK : EXIT_NOT_IN_SYNC;
  });

program
  .command('nodes')
  .description('nodes the server has heard from')
  .action(async () => {
    const { nodes } = await client().listNodes();
    print(nodes, () =>
      nodes
        .map((node) => {
          const refused = node.duplicateRefusals > 0 ? `\trefused ${node.duplicateRefusals} duplicate(s), last from ${node.lastDuplicatePeer}` : '';
          return `${node.nodeId}\t${node.connected ? 'connected' : 'offline'}\t${node.hostname}\t${node.peer}\t${node.dir}${refused}`;
        })
        .join('\n') || '(no nodes)',
    );
  });

program
  .command('bundle')
  .description('metadata of one bundle version (never key bytes)')
  .argument('<name>', 'bundle name')
  .option('--version <n>', 'version (default: current)', (value) => parseInt(value, 10), 0)
  .action(async (name: string, options: { version: number }) => {
    const { bundle } = await client().getBundle(name, options.version);
    print(bundle, () => JSON.stringify(bundle, null, 2));
  });

program
  .command('reload')
  .description("run the bundle's reload targets for its current rollout now")
  .argument('<name>', 'bundle name')
  .option('--force', 'reload even though some expected nodes have not confirmed the version', false)
  .action(async (name: string, options: { force: boolean }) => {
    const { rollout } = await client().reload(name, options.force);
    print(rollout, () => (rollout ? `reload requested\n${formatRollout(rollout)}` : 'reload requested'));
  });

program
  .command('rollout')
  .description('send the current (or an earlier kept) version to every node again, then reload once all confirm')
  .argument('<name>', 'bundle name')
  .option('--version <n>', 'an earlier version to reinstate (default: current)', (value) => parseInt(value, 10), 0)
  .action(async (name: string, options: { version: number }) => {
    const { rollout } = await client().rollout(name, options.version);
    print(rollout, () => (rollout ? `rollout started\n${formatRollout(rollout)}` : 'rollout started'));
  });

program
  .command('history')
  .description("a bundle's recent rollouts, newest first, with their timelines")
  .argument('<name>', 'bundle name')
  .option('-n, --limit <n>', 'at most this many', (value) => parseInt(value, 10), 10)
  .action(async (name: string, options: { limit: number }) => {
    const { rollouts } = await client().listRollouts(name, options.limit);
    print(rollouts, () => rollouts.map((rollout) => formatRollout(rollout, { timeline: true })).join('\n\n') || '(no rollouts yet)');
  });

program
  .command('verify')
  .description('prove now that every replica serves the current certificate (and Vault is unsealed); exit 1 if not')
  .argument('<name>', 'bundle name')
  .action(async (name: string) => {
    const response = await client().verify(name);
    print(response, () => response.proofs.map(formatProof).join('\n'));
    process.exitCode = response.proofs.every((proof) => proof.ok) ? EXIT_OK : EXIT_NOT_IN_SYNC;
  });

const UNREACHABLE_CODES = new Set([grpc.status.UNAVAILABLE, grpc.status.DEADLINE_EXCEEDED, undefined]);

program.parseAsync().then(
  () => process.exit(process.exitCode ?? EXIT_OK),
  (error: unknown) => {
    process.stderr.write(`certsyncctl: ${error instanceof Error ? error.message : String(error)}\n`);
    if (error instanceof CredentialFileError) process.exit(EXIT_USAGE);
    if (!(error instanceof AdminCallError)) process.exit(EXIT_USAGE);
    process.exit(UNREACHABLE_CODES.has(error.code) ? EXIT_UNREACHABLE : EXIT_REFUSED);
  },
);
