#!/usr/bin/env -S node --max-semi-space-size=1
import { Command } from 'commander';
import { chooseLogFormat, createRootLogger, isLogFormat } from '../common/log';
import { CERTSYNC_VERSION } from '../common/version';
import { startServerApp } from './app';
import { ConfigError, loadServerConfig } from './config';

async function main(): Promise<void> {
  const program = new Command('certsync-server')
    .description(
      'Watches renewed certificates, validates them and streams them to certsync agents.',
    )
    .version(CERTSYNC_VERSION)
    .requiredOption(
      '-c, --config <file>',
      'YAML config file (env CERTSYNC_CONFIG)',
      process.env['CERTSYNC_CONFIG'],
    )
    .option(
      '--listen <host:port>',
      'override the listen address (env CERTSYNC_LISTEN)',
      process.env['CERTSYNC_LISTEN'],
    )
    .option(
      '--state-dir <dir>',
      'override stateDir (env CERTSYNC_STATE_DIR)',
      process.env['CERTSYNC_STATE_DIR'],
    )
    .option(
      '--log-level <level>',
      'override logLevel (env CERTSYNC_LOG_LEVEL)',
      process.env['CERTSYNC_LOG_LEVEL'],
    )
    .option(
      '--log-format <format>',
      'json or pretty; default pretty on a terminal, else json (env CERTSYNC_LOG_FORMAT)',
      process.env['CERTSYNC_LOG_FORMAT'],
    )
    // A usage error (missing --config, unknown flag) exits 2 like a config error; help and
    // --version exit 0.
    .exitOverride((error) => process.exit(error.exitCode === 0 ? 0 : 2))
    .parse();
  const flags = program.opts<{
    config: string;
    listen?: string;
    stateDir?: string;
    logLevel?: string;
    logFormat?: string;
  }>();
  if (flags.logFormat !== undefined && !isLogFormat(flags.logFormat)) {
    process.stderr.write(
      `certsync-server: --log-format ${JSON.stringify(flags.logFormat)} is not json or pretty\n`,
    );
    process.exit(2);
  }

  let config;
  try {
    config = loadServerConfig(flags.config, {
      listen: flags.listen,
      stateDir: flags.stateDir,
      logLevel: flags.logLevel,
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      process.stderr.write(`certsync-server: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }

  const log = createRootLogger(
    config.logLevel,
    chooseLogFormat(flags.logFormat, process.stdout.isTTY === true),
  );
  let app;
  try {
    app = await startServerApp(config, log, {
      // Another server holds the swarm state now: exit so Swarm restarts this one as a standby.
      onLeaseLost: () => process.exit(1),
    });
  } catch (error) {
    if (error instanceof ConfigError) {
      log.fatal({ err: { message: error.message } }, 'Configuration not usable');
      process.stderr.write(`certsync-server: ${error.message}\n`);
      process.exit(2);
    }
    throw error;
  }
  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info({ signal }, 'Shutting down');
    app.stop().then(
      () => process.exit(0),
      (error: unknown) => {
        log.error({ err: error }, 'Shutdown failed');
        process.exit(1);
      },
    );
  };
  process.on('SIGTERM', () => stop('SIGTERM'));
  process.on('SIGINT', () => stop('SIGINT'));
}

main().catch((error: unknown) => {
  process.stderr.write(
    `certsync-server: ${error instanceof Error ? error.message : String(error)}\n`,
  );
  process.exit(1);
});
