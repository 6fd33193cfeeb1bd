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
/** certbot swaps its four links within about a millisecond; 50 ms outlasts that many times. */
export const DEFAULT_SETTLE_MS = 50;
/**
 * How long a candidate that fails validation waits for the source to stay quiet before it is
 * recorded as rejected: twice the 1 s poll interval of `usePolling` (so a writer's next file is
 * seen first), and long enough for a script or a person copying files one by one. Nothing acts on
 * a rejection faster than that (it is a status line, a metric and a warn log).
 */
export const DEFAULT_REJECT_SETTLE_MS = 2000;
const DEFAULT_RESCAN_INTERVAL_MS = 60_000;
const DEFAULT_VERSIONS_KEPT = 10;
const DEFAULT_CONVERGE_TIMEOUT_MS = 300_000;
const DEFAULT_EXPIRY_WARNING_DAYS = 14;
const DEFAULT_LEASE_TTL_MS = 15_000;
const DEFAULT_RELOAD_TIMEOUT_MS = 300_000;
const DEFAULT_SWARM_REFRESH_INTERVAL_MS = 10_000;
const DEFAULT_VERIFY_TIMEOUT_MS = 120_000;
const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
const DEFAULT_MAX_FILES_PER_BUNDLE = 16;
/** Certificates and keys are a few KiB; anything near a mebibyte is not one. */
const DEFAULT_MAX_FILE_BYTES = 1024 * 1024;

/** Signals an agent may send to a service's containers (see agent/local-signaller.ts). */
export const RELOAD_SIGNALS = [
  'SIGHUP',
  'SIGUSR1',
  'SIGUSR2',
  'SIGINT',
  'SIGQUIT',
  'SIGTERM',
  'SIGWINCH',
] as const;

const modeSchema = z
  .string({
    // YAML reads an unquoted 0644 as the number 644, so a number here is almost always that.
    error: (issue) =>
      issue.input === undefined
        ? undefined
        : 'must be a quoted octal string such as "0644" or "0600" (unquoted, YAML reads 0644 as the number 644)',
  })
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
  .regex(
    /^\d{1,10}:\d{1,10}$/,
    'must be a numeric "uid:gid" such as "100:1000" (names are not accepted)',
  )
  .transform((text) => {
    const [uid, gid] = text.split(':').map(Number) as [number, number];
    return { uid, gid };
  })
  .refine(
    ({ uid, gid }) => uid <= MAX_OWNER_ID && gid <= MAX_OWNER_ID,
    `uid and gid must be at most ${MAX_OWNER_ID}`,
  );

const bundleFileSchema = z.strictObject({
  source: z.string().min(1),
  target: targetSchema,
  mode: modeSchema.default(0o600),
  /** Optional; without it the agent keeps the owner of the file it replaces. */
  owner: ownerSchema.optional(),
});

const serviceNameSchema = z
  .string()
  .regex(/^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$/, 'must be a Docker service name');
const reloadTimeoutSchema = z
  .number()
  .int()
  .min(1000)
  .max(3_600_000)
  .default(DEFAULT_RELOAD_TIMEOUT_MS);

const endpointSchema = z
  .string()
  .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'must be HOST:PORT');

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
  z.strictObject({
    ...reloadCommon,
    action: z.literal('signal'),
    signal: z.enum(RELOAD_SIGNALS).default('SIGHUP'),
  }),
]);

const bundleSchema = z.strictObject({
  name: z
    .string()
    .regex(/^[a-z0-9][a-z0-9._-]{0,62}$/, 'must be lower-case letters, digits, ".", "_" or "-"'),
  source: z.string().min(1),
  files: z.array(bundleFileSchema).min(1),
  expectNames: z.array(z.string().min(1)).default([]),
  /** The leaf's issuer must be in the bundle unless the leaf is self-signed (see README). */
  requireChain: z.boolean().default(true),
  /**
   * Where the source's symlinks may lead. Default: the letsencrypt folder for a `…/live/NAME`
   * source (certbot's links point into ../../archive/NAME), otherwise the source folder itself.
   */
  linkRoot: z.string().min(1).optional(),
  reload: z.array(reloadTargetSchema).default([]),
});

const hostPortSchema = z
  .string()
  .regex(/^[^\s:]+:\d{1,5}$|^\[[0-9a-fA-F:]+\]:\d{1,5}$/, 'must be HOST:PORT');

const nodeIdSchema = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/, 'must be a node ID');

const fleetSchema = z.discriminatedUnion('mode', [
  z.strictObject({ mode: z.literal('connected') }),
  z.strictObject({
    mode: z.literal('static'),
    nodes: z.array(nodeIdSchema).min(1, 'list at least one node ID'),
  }),
  z.strictObject({
    mode: z.literal('swarm'),
    agentService: serviceNameSchema,
    refreshIntervalMs: z
      .number()
      .int()
      .min(1000)
      .max(3_600_000)
      .default(DEFAULT_SWARM_REFRESH_INTERVAL_MS),
  }),
]);

/** The server's serving certificate, and the CA whose client certificates it accepts (mTLS). */
const tlsSchema = z.strictObject({
  certFile: z.string().min(1),
  keyFile: z.string().min(1),
  /** Enables client certificates; the role comes from the certificate's OU (see server/caller-identity.ts). */
  clientCaFile: z.string().min(1).optional(),
});

/** Bearer tokens, each in its own file (a Docker secret). */
const authSchema = z.strictObject({
  agentTokenFile: z.string().min(1).optional(),
  adminTokenFile: z.string().min(1).optional(),
});

const limitsSchema = z.strictObject({
  /** Largest gRPC message received or sent; a bundle push is one message. */
  maxMessageBytes: z
    .number()
    .int()
    .min(64 * 1024)
    .max(256 * 1024 * 1024)
    .default(DEFAULT_MAX_MESSAGE_BYTES),
  maxFilesPerBundle: z.number().int().min(1).max(1000).default(DEFAULT_MAX_FILES_PER_BUNDLE),
  /** Largest source file read into a bundle. */
  maxFileBytes: z
    .number()
    .int()
    .min(1024)
    .max(256 * 1024 * 1024)
    .default(DEFAULT_MAX_FILE_BYTES),
});

/** The plain-HTTP listener for /metrics, /healthz and /readyz; none when the key is absent. */
const metricsSchema = z.strictObject({
  listen: hostPortSchema,
});
/**
 * Where accepted versions and rollout history live: `local` (files under stateDir, the default)
 * or `swarm` (Docker configs in the swarm's replicated Raft store, see server/swarm-state-store.ts).
 */
const stateStoreSchema = z.discriminatedUnion('kind', [
  z.strictObject({ kind: z.literal('local') }),
  z.strictObject({
    kind: z.literal('swarm'),
    /** 32-byte AES-256-GCM key (64 hex characters or base64), a Docker secret mounted into the server's task. */
    keyFile: z.string().min(1),
    /** How long a server's lease lasts without renewal; a standby takes over after it expires. */
    leaseTtlMs: z.number().int().min(3000).max(600_000).default(DEFAULT_LEASE_TTL_MS),
    /** Names this server in the lease (default: env CERTSYNC_LEASE_HOLDER, else the hostname). */
    holderId: z.string().min(1).max(200).optional(),
  }),
]);

const settleWindowSchema = z.number().int().min(0).max(600_000);

const configFieldsSchema = z.strictObject({
  listen: hostPortSchema.default(DEFAULT_LISTEN),
  stateDir: z.string().min(1).default(DEFAULT_STATE_DIR),
  logLevel: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
  /** Quiet time after the last source event before the source is read and validated. */
  settleMs: settleWindowSchema.default(DEFAULT_SETTLE_MS),
  /**
   * Quiet time a candidate that fails validation waits before it is recorded as rejected; at
   * least settleMs. Default: the larger of DEFAULT_REJECT_SETTLE_MS and settleMs.
   */
  rejectSettleMs: settleWindowSchema.optional(),
  rescanIntervalMs: z.number().int().min(1000).max(86_400_000).default(DEFAULT_RESCAN_INTERVAL_MS),
  usePolling: z.boolean().default(false),
  versionsKept: z.number().int().min(2).max(1000).default(DEFAULT_VERSIONS_KEPT),
  convergeTimeoutMs: z
    .number()
    .int()
    .min(1000)
    .max(86_400_000)
    .default(DEFAULT_CONVERGE_TIMEOUT_MS),
  /** Warn (log, status, metric) when the current leaf expires within this many days. */
  expiryWarningDays: z.number().min(0).max(3650).default(DEFAULT_EXPIRY_WARNING_DAYS),
  metrics: metricsSchema.optional(),
  bundles: z.array(bundleSchema).min(1, 'at least one bundle must be configured'),
  stateStore: stateStoreSchema.default({ kind: 'local' }),
  fleet: fleetSchema.default({ mode: 'connected' }),
  tls: tlsSchema.optional(),
  /** Plaintext gRPC; must be asked for explicitly and is warned about at every start. */
  insecure: z.literal(true).optional(),
  auth: authSchema.default({}),
  limits: limitsSchema.default({
    maxMessageBytes: DEFAULT_MAX_MESSAGE_BYTES,
    maxFilesPerBundle: DEFAULT_MAX_FILES_PER_BUNDLE,
    maxFileBytes: DEFAULT_MAX_FILE_BYTES,
  }),
});

const configSchema = configFieldsSchema
  .superRefine((config, context) => {
    if (config.rejectSettleMs !== undefined && config.rejectSettleMs < config.settleMs) {
      context.addIssue({
        code: 'custom',
        path: ['rejectSettleMs'],
        message: `must be at least settleMs (${config.settleMs}): a failing candidate is read again only after the source has been quiet for settleMs`,
      });
    }
  })
  .transform((config) => ({
    ...config,
    rejectSettleMs: config.rejectSettleMs ?? Math.max(DEFAULT_REJECT_SETTLE_MS, config.settleMs),
  }));

export type ServerConfig = Readonly<z.output<typeof configSchema>>;
export type BundleConfig = ServerConfig['bundles'][number];
export type BundleFileConfig = BundleConfig['files'][number];
export type FileOwnerConfig = NonNullable<BundleFileConfig['owner']>;
export type ReloadTargetConfig = BundleConfig['reload'][number];
export type VerifyConfig = NonNullable<ReloadTargetConfig['verify']>;
export type FleetConfig = ServerConfig['fleet'];
export type TlsConfig = NonNullable<ServerConfig['tls']>;
export type AuthConfig = ServerConfig['auth'];
export type LimitsConfig = ServerConfig['limits'];
export type MetricsConfig = NonNullable<ServerConfig['metrics']>;
export type StateStoreConfig = ServerConfig['stateStore'];

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
    const problems = result.error.issues.map(
      (issue) => `  ${formatKeyPath(issue.path)}: ${issue.message}`,
    );
    throw new ConfigError(`${origin} is invalid:\n${problems.join('\n')}`);
  }

  const config = result.data;
  const transportProblem = transportProblemOf(config);
  if (transportProblem) throw new ConfigError(`${origin} is invalid:\n  ${transportProblem}`);
  const names = new Set<string>();
  /** target → the bundle that writes it: two bundles writing one file would overwrite each other. */
  const targetOwners = new Map<string, string>();
  for (const [index, bundle] of config.bundles.entries()) {
    if (names.has(bundle.name)) {
      throw new ConfigError(
        `${origin} is invalid:\n  bundles[${index}].name: "${bundle.name}" is used twice`,
      );
    }
    names.add(bundle.name);
    if (bundle.files.length > config.limits.maxFilesPerBundle) {
      const limit = config.limits.maxFilesPerBundle;
      throw new ConfigError(
        `${origin} is invalid:\n  bundles[${index}].files: ${bundle.files.length} files, more than limits.maxFilesPerBundle (${limit})`,
      );
    }
    const targets = new Set(bundle.files.map((file) => file.target));
    if (targets.size !== bundle.files.length) {
      throw new ConfigError(
        `${origin} is invalid:\n  bundles[${index}].files: two files have the same target`,
      );
    }
    for (const [fileIndex, file] of bundle.files.entries()) {
      const owner = targetOwners.get(file.target);
      if (owner !== undefined) {
        throw new ConfigError(
          `${origin} is invalid:\n  bundles[${index}].files[${fileIndex}].target: "${file.target}" is also written by bundle "${owner}"; each target belongs to one bundle`,
        );
      }
      targetOwners.set(file.target, bundle.name);
    }
  }
  return deepFreeze(config);
}

/**
 * The transport must be chosen: TLS with a credential for each role (a token file or client
 * certificates), or plaintext asked for by name. Returns the problem, naming the keys, or undefined.
 */
function transportProblemOf(config: z.output<typeof configSchema>): string | undefined {
  const { tls, insecure, auth, limits } = config;
  if (limits.maxFileBytes > limits.maxMessageBytes) {
    return `limits.maxFileBytes (${limits.maxFileBytes}) is larger than limits.maxMessageBytes (${limits.maxMessageBytes})`;
  }
  if (tls && insecure) return 'tls and insecure: true exclude each other; remove one';
  if (!tls && !insecure) {
    return 'tls: no transport chosen; set tls: { certFile, keyFile } (plus auth.agentTokenFile and auth.adminTokenFile, or tls.clientCaFile), or insecure: true for plaintext';
  }
  if (tls && !tls.clientCaFile) {
    const missing = [
      auth.agentTokenFile ? '' : 'auth.agentTokenFile',
      auth.adminTokenFile ? '' : 'auth.adminTokenFile',
    ].filter(Boolean);
    if (missing.length > 0) {
      return `${missing.join(', ')}: with tls every caller must authenticate; set ${missing.join(' and ')}, or tls.clientCaFile for client certificates`;
    }
  }
  if (auth.agentTokenFile && auth.agentTokenFile === auth.adminTokenFile) {
    return 'auth.adminTokenFile: must not be the agent token file; agents must not be able to call admin RPCs';
  }
  return undefined;
}

/** Reads YAML from `file`, applies overrides, validates. */
export function loadServerConfig(file: string, overrides: ConfigOverrides = {}): ServerConfig {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (error) {
    throw new ConfigError(`cannot read config file ${file}: ${(error as Error).message}`, {
      cause: error,
    });
  }

  let raw: unknown;
  try {
    raw = parseYaml(text);
  } catch (error) {
    throw new ConfigError(`config file ${file} is not valid YAML: ${(error as Error).message}`, {
      cause: error,
    });
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
    .map((part, index) =>
      typeof part === 'number' ? `[${part}]` : `${index === 0 ? '' : '.'}${String(part)}`,
    )
    .join('');
}

function deepFreeze<T>(value: T): T {
  if (value && typeof value === 'object') {
    for (const inner of Object.values(value)) deepFreeze(inner);
    Object.freeze(value);
  }
  return value;
}
