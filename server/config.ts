import { readFileSync } from 'node:fs';
import path from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';

/**
 * Thrown when the configuration cannot be used. The message names the file and the key path
 * (`bundles[0].files[1].mode`) so the operator knows exactly what to fix.
 */
export class ConfigError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConfigError';
  }
}

const DEFAULT_LISTEN = '0.0.0.0:7443';
const DEFAULT_STATE_DIR = '/var/lib/certsync';
const DEFAULT_SETTLE_MS = 500;
const DEFAULT_RESCAN_INTERVAL_MS = 60_000;
const DEFAULT_VERSIONS_KEPT = 10;
const DEFAULT_CONVERGE_TIMEOUT_MS = 300_000;
const DEFAULT_RELOAD_TIMEOUT_MS = 300_000;
const DEFAULT_SWARM_REFRESH_INTERVAL_MS = 10_000;
const DEFAULT_VERIFY_TIMEOUT_MS = 120_000;

/** Signals an agent may send to a service's containers (see agent/local-signaller.ts). */
export const RELOAD_SIGNALS = ['SIGHUP', 'SIGUSR1', 'SIGUSR2', 'SIGINT', 'SIGQUIT', 'SIGTERM', 'SIGWINCH'] as const;

const modeSchema = z
  .string()
  .regex(/^0?[0-7]{3}$/, 'must be an octal mode string such as "0644" or "0600"')
  .transform((text) => parseInt(text, 8));

/** A target must stay inside the agent's folder; the agent checks this again before writing. */
const targetSchema = z
  .string()
  .min(1)
  .refine(
    (target) =>
      !path.posix.isAbsolute(target) &&
      !target.includes('\0') &&
      !target.includes('\\') &&
      path.posix.normalize(target) === target &&
      !target.startsWith('../') &&
      target !== '..',
    'must be a relative path inside the agent folder (no "..", no leading "/")',
  );

/** Largest uid/gid Linux accepts; (2^32 - 1) itself means "no change" to chown. */
const MAX_OWNER_ID = 4_294_967_294;

/**
 * `"uid:gid"`, numeric only: user names differ between the agent's image and the image of the
 * service that reads the file (Vault's runs as uid 100), so only numbers mean the same on both.
 */
const ownerSchema = z
  .string()
  .regex(/^\d{1,10}:\d{1,10}$/, 'must be a numeric "uid:gid" such as "100:1000" (names are not accepted)')
  .transform((text) => {
    const [uid, gid] = text.split(':').map(Number) as [number, number];
    return { uid, gid };
  })
  .refine(({ uid, gid }) => uid <= MAX_OWNER_ID && gid <= MAX_OWNER_ID, `uid and gid must be at most ${MAX_OWNER_ID}`);

const bundleFileSchema = z.strictObject({
  source: z.string().min(1),
  target: targetSchema,
  mode: modeSchema.default(0o600),
  /** Optional; without it the agent keeps the owner of the file it replaces. */
  owner: ownerSchema.optional(),
});

const serviceNameSchema = z.string().regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, 'must be a Docker service name');
const reloadTimeoutSchema = z.number().int().min(1000).max(3_600_000).default(DEFAULT_RELOAD_TIMEOUT_MS);

const endpointSchema = z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'must be HOST:PORT');

/** How to prove a reload: the certificate each replica serves, and Vault's seal state. */
const verifySchema = z.strictObject({
  tls: z.strictObject({
    port: z.number().int().min(1).max(65_535),
    /** SNI sent to every replica. */
    serverName: z.string().min(1).optional(),
    /** Probe these instead of the service's task addresses (setups without Swarm, or a proxy). */
    endpoints: z.array(endpointSchema).min(1).optional(),
  }),
  vault: z
    .strictObject({
      /** Unseal key(s), one per line; without it a sealed replica fails the proof. */
      unsealKeyFile: z.string().min(1).optional(),
    })
    .optional(),
  timeoutMs: z.number().int().min(1000).max(3_600_000).default(DEFAULT_VERIFY_TIMEOUT_MS),
});

const reloadCommon = {
  service: serviceNameSchema,
  timeoutMs: reloadTimeoutSchema,
  verify: verifySchema.optional(),
  /** After a failed proof: put the previous version back (rollback) or leave everything (hold). */
  onFailure: z.enum(['hold', 'rollback']).default('hold'),
};

/** One service to reload once every expected node holds a new version; run in config order. */
const reloadTargetSchema = z.discriminatedUnion('action', [
  z.strictObject({ ...reloadCommon, action: z.literal('force-update') }),
  z.strictObject({ ...reloadCommon, action: z.literal('signal'), signal: z.enum(RELOAD_SIGNALS).default('SIGHUP') }),
]);

const bundleSchema = z.strictObject({
  name: z.string().regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be lower-case letters, digits, ".", "_" or "-"'),
  source: z.string().min(1),
  files: z.array(bundleFileSchema).min(1),
  expectNames: z.array(z.string().min(1)).default([]),
  reload: z.array(reloadTargetSchema).default([]),
});

const nodeIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a node ID');

const fleetSchema = z.discriminatedUnion('mode', [
  z.strictObject({ mode: z.literal('connected') }),
  z.strictObject({ mode: z.literal('static'), nodes: z.array(nodeIdSchema).min(1, 'list at least one node ID') }),
  z.strictObject({
    mode: z.literal('swarm'),
    agentService: serviceNameSchema,
    refreshIntervalMs: z.number().int().min(1000).max(3_600_000).default(DEFAULT_SWARM_REFRESH_INTERVAL_MS),
  }),
]);

const configSchema = z.strictObject({
  listen: z.string().regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'must be HOST:PORT').default(DEFAULT_LISTEN),
  stateDir: z.string().min(1).default(DEFAULT_STATE_DIR),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  settleMs: z.number().int().min(0).max(600_000).default(DEFAULT_SETTLE_MS),
  rescanIntervalMs: z.number().int().min(1000).max(86_400_000).default(DEFAULT_RESCAN_INTERVAL_MS),
  usePolling: z.boolean().default(false),
  versionsKept: z.number().int().min(2).max(1000).default(DEFAULT_VERSIONS_KEPT),
  convergeTimeoutMs: z.number().int().min(1000).max(86_400_000).default(DEFAULT_CONVERGE_TIMEOUT_MS),
  bundles: z.array(bundleSchema).min(1, 'at least one bundle must be configured'),
  fleet: fleetSchema.default({ mode: 'connected' }),
});

export type ServerConfig = Readonly<z.output<typeof configSchema>>;
export type BundleConfig = ServerConfig['bundles'][number];
export type BundleFileConfig = BundleConfig['files'][number];
export type FileOwnerConfig = NonNullable<BundleFileConfig['owner']>;
export type ReloadTargetConfig = BundleConfig['reload'][number];
export type VerifyConfig = NonNullable<ReloadTargetConfig['verify']>;
export type FleetConfig = ServerConfig['fleet'];

/** Overrides from flags or environment; they win over the file. */
export interface ConfigOverrides {
  listen?: string;
  stateDir?: string;
  logLevel?: string;
}

/** Validates a parsed config object (from YAML or code) and returns a frozen typed config. */
export function parseServerConfig(raw: unknown, origin = 'config'): ServerConfig {
  const result = configSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((issue) => `  ${formatKeyPath(issue.path)}: ${issue.message}`);
    throw new ConfigError(`${origin} is invalid:\n${problems.join('\n')}`);
  }

  const config = result.data;
  const names = new Set<string>();
  for (const [index, bundle] of config.bundles.entries()) {
    if (names.has(bundle.name)) {
      throw new ConfigError(`${origin} is invalid:\n  bundles[${index}].name: "${bundle.name}" is used twice`);
    }
    names.add(bundle.name);
    const targets = new Set(bundle.files.map((file) => file.target));
    if (targets.size !== bundle.files.length) {
      throw new ConfigError(`${origin} is invalid:\n  bundles[${index}].files: two files have the same target`);
    }
  }
  return deepFreeze(config);
}

/** Reads YAML from `file`, applies overrides, validates. */
export function loadServerConfig(file: string, overrides: ConfigOverrides = {}): ServerConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`, { cause: error });
  }

  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`config file ${file} is not valid YAML: ${(error as Error).message}`, { cause: error });
  }
  if (raw === null || typeof raw !== 'object' || Array.isArray(raw)) {
    throw new ConfigError(`config file ${file} must hold a YAML mapping at the top level`);
  }

  const merged: Record<string, unknown> = { ...(raw as Record<string, unknown>) };
  for (const [key, value] of Object.entries(overrides)) {
    if (value !== undefined) merged[key] = value;
  }
  return parseServerConfig(merged, `config file ${file}`);
}

function formatKeyPath(keyPath: ReadonlyArray<PropertyKey>): string {
  if (keyPath.length === 0) return '(top level)';
  return keyPath
    .map((part, index) => (typeof part === 'number' ? `[${part}]` : `${index === 0 ? '' : '.'}${String(part)}`))
    .join('');
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
