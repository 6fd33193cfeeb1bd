#!/usr/bin/env node
import { CommanderError } from 'commander';
import { chooseLogFormat, createRootLogger } from '../common/log';
import { createAgent } from './agent';
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

  const logger = createRootLogger(config.logLevel, chooseLogFormat(config.logFormat, process.stdout.isTTY === true));
  let agent;
  try {
    agent = createAgent(config, logger);
  } catch (error) {
    logger.fatal({ err: error }, 'Agent not started');
    return 1;
  }
  const stopRequested = new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });

  try {
    await agent.start();
  } catch (error) {
    logger.fatal({ err: error }, 'Agent not started');
    return 1;
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

main().then(
  (exitCode) => process.exit(exitCode),
  (error: unknown) => {
    process.stderr.write(`certsync-agent: unexpected failure: ${String(error)}\n`);
    process.exit(1);
  },
);
