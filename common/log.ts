import pino, { type Logger } from 'pino';

export type { Logger };

/**
 * Field names that could ever carry key material. pino replaces them before a line is written, so
 * a mistake elsewhere still cannot put private key bytes into a log.
 */
const REDACTED_PATHS = ['content', '*.content', 'files[*].content', 'pem', '*.pem', 'key', '*.key'];

/** The root logger for one process; components take a child with `component` set. */
export function createRootLogger(level = process.env['CERTSYNC_LOG_LEVEL'] ?? 'info'): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  });
}

/** A silent logger for tests and library use. */
export function createSilentLogger(): Logger {
  return pino({ level: 'silent' });
}
