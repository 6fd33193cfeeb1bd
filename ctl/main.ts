#!/usr/bin/env node
import { Command } from 'commander';
import { CERTSYNC_VERSION } from '../common/version';
import { AdminCallError, AdminClient } from './admin-client';
import { formatStatusTable, isFleetInSync } from './status-table';

/** Exit codes scripts can rely on. */
const EXIT_OK = 0;
const EXIT_NOT_IN_SYNC = 1;
const EXIT_USAGE = 2;
const EXIT_UNREACHABLE = 3;

const program = new Command('certsyncctl')
  .description('Inspect a running certsync-server through its admin API.')
  .version(CERTSYNC_VERSION)
  .option('-s, --server <host:port>', 'server address (env CERTSYNC_SERVER)', process.env['CERTSYNC_SERVER'] ?? '127.0.0.1:7443')
  .option('--json', 'print the raw response as JSON', false)
  .showHelpAfterError();

function client(): AdminClient {
  return new AdminClient(program.opts<{ server: string }>().server);
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
        .map((node) => `${node.nodeId}\t${node.connected ? 'connected' : 'offline'}\t${node.hostname}\t${node.peer}\t${node.dir}`)
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

program.parseAsync().then(
  () => process.exit(process.exitCode ?? EXIT_OK),
  (error: unknown) => {
    process.stderr.write(`certsyncctl: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(error instanceof AdminCallError ? EXIT_UNREACHABLE : EXIT_USAGE);
  },
);
