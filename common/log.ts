import pino, { type Logger } from 'pino';

export type { Logger };

/** How log lines are written: one JSON object a line, or pino-pretty's coloured text. */
export type LogFormat = 'json' | 'pretty';

export const LOG_FORMATS: readonly LogFormat[] = ['json', 'pretty'];

/**
 * Field names that could ever carry key material. pino replaces them before a line is written, so
 * a mistake elsewhere still cannot put private key bytes into a log.
 */
const REDACTED_PATHS = ['content', '*.content', 'files[*].content', 'pem', '*.pem', 'key', '*.key'];

/** True when `value` names a log format. */
export function isLogFormat(value: string): value is LogFormat {
  return (LOG_FORMATS as readonly string[]).includes(value);
}

/**
 * The format to use: the one asked for (flag or `CERTSYNC_LOG_FORMAT`), else pretty when stdout
 * is a terminal and JSON otherwise (containers, pipes, log collectors).
 */
export function chooseLogFormat(requested: string | undefined, stdoutIsTty: boolean): LogFormat {
  if (requested !== undefined && isLogFormat(requested)) return requested;
  return stdoutIsTty ? 'pretty' : 'json';
}

/** The root logger for one process; components take a child with `component` set. */
export function createRootLogger(
  level = process.env['CERTSYNC_LOG_LEVEL'] ?? 'info',
  format: LogFormat = chooseLogFormat(
    process.env['CERTSYNC_LOG_FORMAT'],
    process.stdout.isTTY === true,
  ),
): Logger {
  return pino({
    level,
    base: { pid: process.pid },
    redact: { paths: REDACTED_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
    // pino-pretty runs in pino's worker thread, which cannot see whether stdout is a terminal, so
    // colour is decided here. The redaction above happens before pino-pretty sees a line.
    ...(format === 'pretty'
      ? {
          transport: {
            target: 'pino-pretty',
            options: { colorize: wantsColour(), translateTime: 'SYS:HH:MM:ss.l' },
          },
        }
      : {}),
  });
}

/** Colour on a terminal, unless NO_COLOR is set (https://no-color.org). */
function wantsColour(): boolean {
  return process.stdout.isTTY === true && !process.env['NO_COLOR'];
}

/** A silent logger for tests and library use. */
export function createSilentLogger(): Logger {
  return pino({ level: 'silent' });
}
