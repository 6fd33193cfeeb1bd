import { Command } from 'commander';
import { hostname } from 'node:os';
import * as path from 'node:path';
import type { ClientTransportSettings } from '../common/client-transport';
import { isLogFormat, type LogFormat } from '../common/log';
import { readAgentVersion } from './agent-version';
import {
  type BackoffPolicy,
  DEFAULT_APPLY_RETRY_POLICY,
  DEFAULT_BACKOFF_POLICY,
  type RetryPolicy,
} from './backoff';

/**
 * The node IDs certsync-server accepts in a hello. Checked here too so a bad ID fails at start with
 * a clear message instead of as an endless reconnect loop of rejected hellos.
 */
const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/;

/** Where Docker listens on a Linux node, and where the agent's bind mount should put it. */
export const DEFAULT_DOCKER_SOCKET = '/var/run/docker.sock';

const DOCKER_SOCKET_HELP = `Docker socket for signal reloads, default ${DEFAULT_DOCKER_SOCKET}`;

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/** Everything the agent needs to run, validated and frozen. */
export interface AgentConfig {
  /** certsync-server as HOST:PORT. */
  readonly serverAddress: string;
  /** Absolute path of the folder the agent keeps in sync. */
  readonly dir: string;
  readonly nodeId: string;
  readonly logLevel: LogLevel;
  readonly agentVersion: string;
  readonly reconnect: BackoffPolicy;
  /** How long to give the channel to reach READY before the attempt counts as failed. */
  readonly connectTimeoutMs: number;
  /** gRPC keepalive: ping after this much silence, drop the connection if no answer in time. */
  readonly keepaliveTimeMs: number;
  readonly keepaliveTimeoutMs: number;
  /** File events are gathered this long before managed files are re-read. */
  readonly driftDebounceMs: number;
  /** Managed files are also re-read this often, in case the OS dropped a file event. */
  readonly driftRecheckIntervalMs: number;
  /** How a bundle the node could not write (a disk error, a link in the way) is retried. */
  readonly applyRetry: RetryPolicy;
  /** The node's Docker socket, used only to signal a service's containers for a reload. */
  readonly dockerSocketPath: string;
  /** TLS trust, client certificate, token file, or plaintext; files are read at start. */
  readonly transport: ClientTransportSettings;
  /** Largest message accepted from the server (a bundle push is one); match limits.maxMessageBytes. */
  readonly maxMessageBytes: number;
  /** `HOST:PORT` of the plain-HTTP /metrics, /healthz, /readyz listener; none when absent. */
  readonly metricsListen?: string | undefined;
  /** json or pretty; absent: pretty on a terminal, else json. */
  readonly logFormat?: LogFormat | undefined;
}

/** Default of --max-message-bytes, the same as the server's limits.maxMessageBytes default. */
export const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/** The settings with a sensible default; tests override them to run fast. */
export type AgentTuning = Omit<AgentConfig, 'serverAddress' | 'dir' | 'nodeId' | 'transport'>;

/** Thrown when flags and environment do not make a usable config; the message names both. */
export class ConfigError extends Error {
  override readonly name = 'ConfigError';
}

/** Builds a frozen config from the required settings plus defaults for the rest. */
export function createAgentConfig(
  settings: Pick<AgentConfig, 'serverAddress' | 'dir' | 'nodeId' | 'transport'> &
    Partial<AgentTuning>,
): AgentConfig {
  const config: AgentConfig = {
    logLevel: 'info',
    maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    agentVersion: readAgentVersion(),
    reconnect: DEFAULT_BACKOFF_POLICY,
    connectTimeoutMs: 10_000,
    keepaliveTimeMs: 30_000,
    keepaliveTimeoutMs: 10_000,
    driftDebounceMs: 200,
    driftRecheckIntervalMs: 5 * 60_000,
    applyRetry: DEFAULT_APPLY_RETRY_POLICY,
    ...settings,
    dir: path.resolve(settings.dir),
    dockerSocketPath: path.resolve(settings.dockerSocketPath ?? DEFAULT_DOCKER_SOCKET),
  };
  return Object.freeze({
    ...config,
    reconnect: Object.freeze({ ...config.reconnect }),
    applyRetry: Object.freeze({ ...config.applyRetry }),
    transport: Object.freeze({ ...config.transport }),
  });
}

/**
 * Parses the agent's command line (without the node and script arguments) and environment.
 * Flags win over environment variables. Help, version and unknown flags surface as commander's
 * CommanderError (already printed); a missing or malformed setting as ConfigError.
 */
export function parseAgentConfig(
  args: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): AgentConfig {
  const agentVersion = readAgentVersion();
  const program = new Command('certsync-agent')
    .description('Keeps a folder on this node in sync with the bundles certsync-server pushes.')
    .version(agentVersion)
    .option('--server <host:port>', 'certsync-server address (env CERTSYNC_SERVER)')
    .option('--dir <path>', 'folder to keep in sync (env CERTSYNC_DIR)')
    .option('--node-id <id>', 'node identity, default the hostname (env CERTSYNC_NODE_ID)')
    .option('--log-level <level>', `one of ${LOG_LEVELS.join(', ')} (env CERTSYNC_LOG_LEVEL)`)
    .option('--docker-socket <path>', `${DOCKER_SOCKET_HELP} (env CERTSYNC_DOCKER_SOCKET)`)
    .option('--ca-file <file>', 'CA of the server certificate (env CERTSYNC_CA_FILE)')
    .option('--token-file <file>', 'agent token file (env CERTSYNC_TOKEN_FILE)')
    .option('--cert-file <file>', 'client certificate for mTLS (env CERTSYNC_CERT_FILE)')
    .option('--key-file <file>', 'key of --cert-file (env CERTSYNC_KEY_FILE)')
    .option(
      '--server-name <name>',
      'name the server certificate must carry (env CERTSYNC_SERVER_NAME)',
    )
    .option('--insecure', 'plaintext, for a server with insecure: true (env CERTSYNC_INSECURE=1)')
    .option(
      '--max-message-bytes <n>',
      'largest push accepted, default 4 MiB (env CERTSYNC_MAX_MESSAGE_BYTES)',
    )
    .option(
      '--metrics-listen <host:port>',
      'serve /metrics, /healthz, /readyz over plain HTTP (env CERTSYNC_METRICS_LISTEN)',
    )
    .option(
      '--log-format <format>',
      'json or pretty; default pretty on a terminal (env CERTSYNC_LOG_FORMAT)',
    )
    .allowExcessArguments(false)
    .exitOverride();
  program.parse([...args], { from: 'user' });
  const flags = program.opts<
    Record<
      | 'server'
      | 'dir'
      | 'nodeId'
      | 'logLevel'
      | 'dockerSocket'
      | 'caFile'
      | 'tokenFile'
      | 'certFile'
      | 'keyFile'
      | 'serverName'
      | 'maxMessageBytes'
      | 'metricsListen'
      | 'logFormat',
      string | undefined
    > & { insecure?: boolean }
  >();

  const serverAddress = required(flags.server ?? env['CERTSYNC_SERVER'], 'server');
  if (!isHostPort(serverAddress)) {
    const shown = JSON.stringify(serverAddress);
    throw new ConfigError(`--server ${shown} is not HOST:PORT (from --server or CERTSYNC_SERVER)`);
  }
  const dir = required(flags.dir ?? env['CERTSYNC_DIR'], 'dir');
  const nodeId = nonEmpty(flags.nodeId ?? env['CERTSYNC_NODE_ID']) ?? hostname();
  if (!NODE_ID_PATTERN.test(nodeId)) {
    const rule = 'up to 128 letters, digits, ".", "_" or "-", starting with a letter or digit';
    const source = 'from --node-id, CERTSYNC_NODE_ID or the hostname';
    throw new ConfigError(`node ID ${JSON.stringify(nodeId)} is not valid: ${rule} (${source})`);
  }
  const logLevel = nonEmpty(flags.logLevel ?? env['CERTSYNC_LOG_LEVEL']) ?? 'info';
  if (!isLogLevel(logLevel)) {
    const levels = LOG_LEVELS.join(', ');
    const source = 'from --log-level or CERTSYNC_LOG_LEVEL';
    throw new ConfigError(
      `--log-level ${JSON.stringify(logLevel)} is not one of ${levels} (${source})`,
    );
  }
  const dockerSocketPath =
    nonEmpty(flags.dockerSocket ?? env['CERTSYNC_DOCKER_SOCKET']) ?? DEFAULT_DOCKER_SOCKET;
  const metricsListen = nonEmpty(flags.metricsListen ?? env['CERTSYNC_METRICS_LISTEN']);
  if (metricsListen !== undefined && !isHostPort(metricsListen)) {
    const shown = JSON.stringify(metricsListen);
    throw new ConfigError(
      `--metrics-listen ${shown} is not HOST:PORT (from --metrics-listen or CERTSYNC_METRICS_LISTEN)`,
    );
  }
  const logFormat = nonEmpty(flags.logFormat ?? env['CERTSYNC_LOG_FORMAT']);
  if (logFormat !== undefined && !isLogFormat(logFormat)) {
    const shown = JSON.stringify(logFormat);
    throw new ConfigError(
      `--log-format ${shown} is not json or pretty (from --log-format or CERTSYNC_LOG_FORMAT)`,
    );
  }
  return createAgentConfig({
    serverAddress,
    dir,
    nodeId,
    logLevel,
    agentVersion,
    dockerSocketPath,
    transport: parseTransport(flags, env),
    maxMessageBytes: parseMaxMessageBytes(
      flags.maxMessageBytes ?? env['CERTSYNC_MAX_MESSAGE_BYTES'],
    ),
    metricsListen,
    logFormat,
  });
}

/**
 * TLS unless --insecure; a credential (token or client certificate) is required with TLS, so a
 * forgotten secret fails at start instead of as an endless loop of refused streams.
 */
function parseTransport(
  flags: Partial<Record<'caFile' | 'tokenFile' | 'certFile' | 'keyFile' | 'serverName', string>> & {
    insecure?: boolean;
  },
  env: Readonly<Record<string, string | undefined>>,
): ClientTransportSettings {
  const pick = (flag: string | undefined, envName: string) => nonEmpty(flag ?? env[envName]);
  const settings = {
    insecure: flags.insecure === true || env['CERTSYNC_INSECURE'] === '1',
    caFile: pick(flags.caFile, 'CERTSYNC_CA_FILE'),
    tokenFile: pick(flags.tokenFile, 'CERTSYNC_TOKEN_FILE'),
    certFile: pick(flags.certFile, 'CERTSYNC_CERT_FILE'),
    keyFile: pick(flags.keyFile, 'CERTSYNC_KEY_FILE'),
    serverName: pick(flags.serverName, 'CERTSYNC_SERVER_NAME'),
  };
  if (Boolean(settings.certFile) !== Boolean(settings.keyFile)) {
    throw new ConfigError(
      'a client certificate needs both --cert-file and --key-file (or CERTSYNC_CERT_FILE and CERTSYNC_KEY_FILE)',
    );
  }
  if (!settings.insecure && !settings.tokenFile && !settings.certFile) {
    throw new ConfigError(
      'no credential: pass --token-file (or CERTSYNC_TOKEN_FILE) or --cert-file/--key-file; --insecure only for a plaintext server',
    );
  }
  return Object.fromEntries(
    Object.entries(settings).filter(([, value]) => value !== undefined && value !== false),
  );
}

function parseMaxMessageBytes(value: string | undefined): number {
  const text = nonEmpty(value);
  if (text === undefined) return DEFAULT_MAX_MESSAGE_BYTES;
  const bytes = Number(text);
  if (!Number.isInteger(bytes) || bytes < 64 * 1024) {
    throw new ConfigError(
      `--max-message-bytes ${JSON.stringify(text)} is not a whole number of at least 65536 (from --max-message-bytes or CERTSYNC_MAX_MESSAGE_BYTES)`,
    );
  }
  return bytes;
}

/** The flag and environment variable behind each required setting, for error messages. */
const REQUIRED_SETTINGS = {
  server: { flag: '--server HOST:PORT', envName: 'CERTSYNC_SERVER' },
  dir: { flag: '--dir PATH', envName: 'CERTSYNC_DIR' },
} as const;

function required(value: string | undefined, setting: keyof typeof REQUIRED_SETTINGS): string {
  const present = nonEmpty(value);
  if (present === undefined) {
    const { flag, envName } = REQUIRED_SETTINGS[setting];
    throw new ConfigError(`missing ${setting} setting: pass ${flag} or set ${envName}`);
  }
  return present;
}

function nonEmpty(value: string | undefined): string | undefined {
  const trimmed = value?.trim();
  return trimmed ? trimmed : undefined;
}

/** HOST:PORT with a DNS name, IPv4 address or bracketed IPv6 address and a port 1-65535. */
function isHostPort(value: string): boolean {
  const match = /^(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/.exec(value);
  const port = Number(match?.[2]);
  return match !== null && port >= 1 && port <= 65_535;
}

function isLogLevel(value: string): value is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(value);
}
