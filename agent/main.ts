#!/usr/bin/env node
import { CommanderError } from 'commander';
import { chooseLogFormat, createRootLogger } from '../common/log';
import { AgentStartError, createAgent } from './agent';
import { type AgentConfig, ConfigError, parseAgentConfig } from './config';

/** Past this, a stop that hangs (a wedged disk, say) gives way to a non-zero exit. */
const STOP_TIMEOUT_MS = 10_000;
const EXIT_USAGE = 2;

/** certsync-agent: read config, build the agent, run it until SIGTERM or SIGINT. */
async function main(): Promise<number> {
  let config: AgentConfig;
  try {
    config = parseAgentConfig(process.argv.slice(2), process.env);
  } catch (error) {
    if (error instanceof CommanderError) {
      return error.exitCode;
    }
    if (error instanceof ConfigError) {
      process.stderr.write(`certsync-agent: ${error.message}\n`);
      return EXIT_USAGE;
    }
    throw error;
  }

  const logger = createRootLogger(
    config.logLevel,
    chooseLogFormat(config.logFormat, process.stdout.isTTY === true),
  );
  let agent;
  try {
    agent = createAgent(config, logger);
  } catch (error) {
    return reportStartFailure(logger, error);
  }
  const stopRequested = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });

  try {
    await agent.start();
  } catch (error) {
    return reportStartFailure(logger, error);
  }
  const signal = await stopRequested;
  logger.info({ signal }, 'Shutdown requested');

  const stopTimer = setTimeout(() => {
    logger.error({ stopTimeoutMs: STOP_TIMEOUT_MS }, 'Shutdown timed out');
    process.exit(1);
  }, STOP_TIMEOUT_MS);
  stopTimer.unref();
  await agent.stop();
  return 0;
}

/**
 * A start the operator can fix (a missing folder or credential file) is one log line and one
 * plain stderr line, exit 2; anything else is logged with its stack, exit 1.
 */
function reportStartFailure(logger: ReturnType<typeof createRootLogger>, error: unknown): number {
  if (error instanceof AgentStartError) {
    logger.fatal({ reason: error.message }, 'Agent not started');
    process.stderr.write(`certsync-agent: ${error.message}\n`);
    return EXIT_USAGE;
  }
  logger.fatal({ err: error }, 'Agent not started');
  return 1;
}

main().then(
  (exitCode) => process.exit(exitCode),
  (error: unknown) => {
    process.stderr.write(`certsync-agent: unexpected failure: ${String(error)}\n`);
    process.exit(1);
  },
);
