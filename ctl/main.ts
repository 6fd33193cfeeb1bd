#!/usr/bin/env node
import * as grpc from '@grpc/grpc-js';
import { Command, CommanderError, InvalidArgumentError } from 'commander';
import { createClientTransport, CredentialFileError } from '../common/client-transport';
import type { RolloutInfo } from '../common/contract';
import { CERTSYNC_VERSION } from '../common/version';
import { readFileSync } from 'node:fs';
import { AdminCallError, AdminClient } from './admin-client';
import { RolloutWatchPrinter } from './rollout-watch';
import {
  formatBundle,
  formatProof,
  formatRollout,
  formatStatusTable,
  isFleetInSync,
} from './status-table';

/** Exit codes scripts can rely on. */
const EXIT_OK = 0;
const EXIT_NOT_IN_SYNC = 1;
const EXIT_USAGE = 2;
const EXIT_UNREACHABLE = 3;
/** The server answered but refused the request (unknown bundle, invalid import, paused, …). */
const EXIT_REFUSED = 4;
/** A rollout that has not finished: stalled, or still running when --timeout ran out. */
const EXIT_ROLLOUT_UNFINISHED = 5;

/** Exit code for a rollout's state: done 0; failed or superseded 1; anything else unfinished. */
function rolloutExitCode(state: string | undefined): number {
  if (state === 'done') return EXIT_OK;
  if (state === 'failed' || state === 'superseded') return EXIT_NOT_IN_SYNC;
  return EXIT_ROLLOUT_UNFINISHED;
}

/** A command-line value that must be a whole number ≥ 0 (commander calls it per option). */
function count(value: string): number {
  const parsed = Number(value);
  if (!Number.isInteger(parsed) || parsed < 0)
    throw new InvalidArgumentError(`expected a whole number ≥ 0, got "${value}"`);
  return parsed;
}

/** Reads a PEM file named on the command line; a missing file is a usage error. */
function readPemArgument(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    throw new CredentialFileError(
      `cannot read ${what} ${file}: ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
      file,
    );
  }
}

const program = new Command('certsyncctl')
  .description('Inspect a running certsync-server through its admin API.')
  // Not `--version`: `bundle` and `rollout` take `--version N` (a bundle version), and commander would
  // read a program-level `--version` anywhere on the line.
  .version(CERTSYNC_VERSION, '-V, --ctl-version', 'print the certsyncctl version')
  .option(
    '-s, --server <host:port>',
    'server address (env CERTSYNC_SERVER)',
    process.env['CERTSYNC_SERVER'] ?? '127.0.0.1:7443',
  )
  .option('--json', 'print the raw response as JSON', false)
  .option(
    '--ca-file <file>',
    'CA that signed the server certificate (env CERTSYNC_CA_FILE)',
    process.env['CERTSYNC_CA_FILE'],
  )
  .option(
    '--token-file <file>',
    'admin token file (env CERTSYNC_ADMIN_TOKEN_FILE)',
    process.env['CERTSYNC_ADMIN_TOKEN_FILE'],
  )
  .option(
    '--cert-file <file>',
    'admin client certificate for mTLS (env CERTSYNC_CERT_FILE)',
    process.env['CERTSYNC_CERT_FILE'],
  )
  .option(
    '--key-file <file>',
    'key of --cert-file (env CERTSYNC_KEY_FILE)',
    process.env['CERTSYNC_KEY_FILE'],
  )
  .option(
    '--server-name <name>',
    'name to check the server certificate against (env CERTSYNC_SERVER_NAME)',
    process.env['CERTSYNC_SERVER_NAME'],
  )
  .option(
    '--insecure',
    'plaintext, for a server with insecure: true (env CERTSYNC_INSECURE=1)',
    process.env['CERTSYNC_INSECURE'] === '1',
  )
  .showHelpAfterError()
  // Usage errors become exit code 2 (commander's own default is 1, which means "not in sync").
  .exitOverride();

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
  .description(
    'bundles, versions, the per-node sync table, the current rollout and days to expiry; exits 1 when not in sync',
  )
  .action(async () => {
    const status = await client().getStatus();
    print(status, () => formatStatusTable(status));
    process.exitCode = isFleetInSync(status) ? EXIT_OK : EXIT_NOT_IN_SYNC;
  });

program
  .command('nodes')
  .description(
    'nodes the server has heard from: connected since, or offline and last seen; host, address, folder',
  )
  .action(async () => {
    const { nodes } = await client().listNodes();
    print(
      nodes,
      () =>
        nodes
          .map((node) => {
            const refused =
              node.duplicateRefusals > 0
                ? `\trefused ${node.duplicateRefusals} duplicate(s), last from ${node.lastDuplicatePeer}`
                : '';
            const seen = node.connected
              ? `since ${node.connectedSince?.toISOString() ?? '?'}`
              : `last seen ${node.lastSeen?.toISOString() ?? 'never'}`;
            return `${node.nodeId}\t${node.connected ? 'connected' : 'offline'}\t${seen}\t${node.hostname}\t${node.peer}\t${node.dir}${refused}`;
          })
          .join('\n') || '(no nodes)',
    );
  });

const bundleCommand = program.command('bundle').description('bundle metadata');
bundleCommand
  .command('show')
  .description('metadata of one bundle version: files, digests, certificates (never key bytes)')
  .argument('<name>', 'bundle name')
  .option('--version <n>', 'version (default: current)', count, 0)
  .action(async (name: string, options: { version: number }) => {
    const { bundle } = await client().getBundle(name, options.version);
    print(bundle, () => (bundle ? formatBundle(bundle) : `bundle ${name}: no version`));
  });

program
  .command('history')
  .description(
    'recent rollouts with their timelines, newest first: of one bundle, or of every bundle',
  )
  .argument('[name]', 'bundle name (default: every bundle)')
  .option('-n, --limit <n>', 'at most this many per bundle', count, 10)
  .action(async (name: string | undefined, options: { limit: number }) => {
    const admin = client();
    const names = name ? [name] : (await admin.getStatus()).bundles.map((bundle) => bundle.name);
    const rollouts: RolloutInfo[] = [];
    for (const bundle of names)
      rollouts.push(...(await admin.listRollouts(bundle, options.limit)).rollouts);
    print(
      rollouts,
      () =>
        rollouts
          .map((rollout) => `${rollout.bundle}: ${formatRollout(rollout, { timeline: true })}`)
          .join('\n\n') || '(no rollouts yet)',
    );
  });

const rolloutCommand = program.command('rollout').description('follow or restart rollouts');
rolloutCommand
  .command('status')
  .description(
    "the bundle's current rollout; with --watch, its progress live until it ends (exit 0 done, 1 failed, 5 unfinished)",
  )
  .argument('<name>', 'bundle name')
  .option('-w, --watch', 'follow the rollout until it is done, failed or superseded', false)
  .option(
    '--next',
    'with --watch: wait for the next rollout to start (a renewal, import, rollback) and follow it',
    false,
  )
  .option(
    '--timeout <seconds>',
    'with --watch: stop after this long (exit 5); 0 waits forever',
    count,
    0,
  )
  .action(async (name: string, options: { watch: boolean; next: boolean; timeout: number }) => {
    const admin = client();
    const json = program.opts<{ json: boolean }>().json;
    if (!options.watch) {
      const bundle = (await admin.getStatus()).bundles.find((candidate) => candidate.name === name);
      if (!bundle)
        throw new AdminCallError(`no bundle named "${name}" is configured`, grpc.status.NOT_FOUND);
      print(bundle.rollout ?? null, () =>
        bundle.rollout ? formatRollout(bundle.rollout, { timeline: true }) : '(no rollout yet)',
      );
      process.exitCode = rolloutExitCode(bundle.rollout?.state);
      return;
    }
    const printer = new RolloutWatchPrinter(
      (line) => process.stdout.write(`${line}\n`),
      process.stdout.isTTY === true && !json,
    );
    let last: RolloutInfo | undefined;
    const ended = await admin.watchRollout(
      name,
      (event) => {
        last = event.rollout ?? last;
        if (json) process.stdout.write(`${JSON.stringify(event)}\n`);
        else printer.handle(event);
      },
      { next: options.next, timeoutMs: options.timeout * 1000 },
    );
    printer.finish();
    const state = last?.state;
    if (!json) {
      process.stdout.write(
        ended
          ? `rollout of version ${last?.version ?? '?'} ended: ${state?.toUpperCase() ?? '?'}${last?.reason ? ` — ${last.reason}` : ''}\n`
          : last
            ? `gave up watching after ${options.timeout}s: rollout is ${state?.toUpperCase() ?? '?'}\n`
            : `gave up watching after ${options.timeout}s: no rollout of ${name} started in that time\n`,
      );
    }
    process.exitCode = rolloutExitCode(ended ? state : undefined);
  });
rolloutCommand
  .command('restart')
  .description(
    'send the current (or an earlier kept) version to every node again, then reload once all confirm',
  )
  .argument('<name>', 'bundle name')
  .option('--version <n>', 'an earlier kept version to reinstate (default: current)', count, 0)
  .action(async (name: string, options: { version: number }) => {
    const { rollout } = await client().rollout(name, options.version);
    print(rollout, () =>
      rollout ? `rollout started\n${formatRollout(rollout)}` : 'rollout started',
    );
  });

program
  .command('reload')
  .description("run the bundle's reload targets for its current rollout now")
  .argument('<name>', 'bundle name')
  .option('--force', 'reload even though some expected nodes have not confirmed the version', false)
  .action(async (name: string, options: { force: boolean }) => {
    const { rollout } = await client().reload(name, options.force);
    print(rollout, () =>
      rollout ? `reload requested\n${formatRollout(rollout)}` : 'reload requested',
    );
  });

program
  .command('rollback')
  .description(
    'reinstate the previous version whose rollout finished done (or --to N) and roll it out',
  )
  .argument('<name>', 'bundle name')
  .option('--to <n>', 'the kept version to go back to', count, 0)
  .action(async (name: string, options: { to: number }) => {
    const { rollout } = await client().rollback(name, options.to);
    print(rollout, () =>
      rollout ? `rollback started\n${formatRollout(rollout)}` : 'rollback started',
    );
  });

program
  .command('pause')
  .description(
    'stop a bundle: its source is not read, nothing is distributed or reloaded until resume',
  )
  .argument('<name>', 'bundle name')
  .action(async (name: string) => {
    const response = await client().pause(name);
    print(response, () => `bundle ${name} paused`);
  });

program
  .command('resume')
  .description('resume a paused bundle: read its source again and roll out the newest version')
  .argument('<name>', 'bundle name')
  .action(async (name: string) => {
    const { rollout } = await client().resume(name);
    print(
      rollout ?? null,
      () => `bundle ${name} resumed${rollout ? `\n${formatRollout(rollout)}` : ''}`,
    );
  });

program
  .command('import')
  .description('push a certificate and key through the admin API; validated like a watched source')
  .argument('<name>', 'bundle name')
  .requiredOption('--cert <file>', 'PEM certificate (leaf first; may carry its issuers)')
  .requiredOption('--key <file>', 'PEM private key (sent only over the TLS channel)')
  .option('--chain <file>', 'PEM issuers')
  .action(async (name: string, options: { cert: string; key: string; chain?: string }) => {
    const pem = {
      cert: readPemArgument(options.cert, '--cert'),
      key: readPemArgument(options.key, '--key'),
      chain: options.chain ? readPemArgument(options.chain, '--chain') : Buffer.alloc(0),
    };
    const response = await client().import(name, pem);
    print(
      response,
      () =>
        `bundle ${name} version ${response.bundle?.version ?? '?'} imported${response.rollout ? `\n${formatRollout(response.rollout)}` : ''}`,
    );
  });

program
  .command('verify')
  .description(
    'prove now that every replica serves the current certificate (and Vault is unsealed); exit 1 if not',
  )
  .argument('<name>', 'bundle name')
  .action(async (name: string) => {
    const response = await client().verify(name);
    print(response, () => response.proofs.map(formatProof).join('\n'));
    process.exitCode = response.proofs.every((proof) => proof.ok) ? EXIT_OK : EXIT_NOT_IN_SYNC;
  });

const UNREACHABLE_CODES = new Set([
  grpc.status.UNAVAILABLE,
  // certsyncctl never cancels a call itself: a cancelled one was cut by a stopping server.
  grpc.status.CANCELLED,
  grpc.status.DEADLINE_EXCEEDED,
  undefined,
]);

program.parseAsync().then(
  () => process.exit(process.exitCode ?? EXIT_OK),
  (error: unknown) => {
    // commander printed its own message already.
    if (!(error instanceof CommanderError))
      process.stderr.write(
        `certsyncctl: ${error instanceof Error ? error.message : String(error)}\n`,
      );
    if (error instanceof CommanderError) process.exit(error.exitCode === 0 ? EXIT_OK : EXIT_USAGE);
    if (error instanceof CredentialFileError) process.exit(EXIT_USAGE);
    if (!(error instanceof AdminCallError)) process.exit(EXIT_USAGE);
    process.exit(UNREACHABLE_CODES.has(error.code) ? EXIT_UNREACHABLE : EXIT_REFUSED);
  },
);
