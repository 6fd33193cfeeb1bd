/**
 * The services the e2e reloads and proves, and the bundles that feed them. All three run the
 * Vault STAND-IN image (test/e2e/fixtures/vault-stand-in — not Vault), each set up for one way a
 * reload can go:
 * - `vault`: deploy/certsync.yml's own bundle; force-updated, so every replica restarts and comes
 *   back sealed, and certsync unseals it with the key(s) from the `vault_unseal_key` secret;
 * - `web`: reloaded with SIGHUP through the agents, so no replica restarts or seals; later told to
 *   ignore SIGHUP (keep serving the old leaf), which must fail the proof and roll every node back;
 * - `hold`: ignores SIGHUP from the start, with `onFailure: hold`: a renewal fails its proof and
 *   certsync leaves everything as it is.
 * `web` and `hold` come from their own certbot lineages, so renewing one never touches the others.
 */

/** The Docker secret the stack mounts into the server (deploy/docker-stack.yml) and the stand-ins. */
export const UNSEAL_SECRET = 'vault_unseal_key';
export const UNSEAL_KEY_FILE = `/run/secrets/${UNSEAL_SECRET}`;
/** Shares needed to unseal each stand-in, out of the keys in the secret. */
export const UNSEAL_THRESHOLD = 2;
export const UNSEAL_KEY_COUNT = 3;

/** One stand-in service and the bundle that reloads it. */
export interface StandIn {
  /** The bundle name in the server config. */
  readonly bundle: string;
  /** The certbot lineage (`live/<lineage>`) the bundle reads. */
  readonly lineage: string;
  readonly domains: readonly string[];
  readonly service: string;
  readonly replicas: number;
  /** Target file names in the node folder; the stand-in serves these. */
  readonly certTarget: string;
  readonly keyTarget: string;
  /** Starts sealed, with the unseal secret mounted (a restart seals it again). */
  readonly sealed: boolean;
  /** Keeps serving the certificate it started with when sent SIGHUP. */
  readonly ignoreSighup: boolean;
}

export const STAND_INS = {
  vault: {
    bundle: 'iklim-co',
    lineage: 'iklim.co',
    domains: ['*.iklim.co', 'iklim.co'],
    service: 'iklimco_vault',
    replicas: 2,
    certTarget: 'STAR.iklim.co.full.crt',
    keyTarget: 'STAR.iklim.co_key.pem',
    sealed: true,
    ignoreSighup: false,
  },
  web: {
    bundle: 'web',
    lineage: 'web.iklim.co',
    domains: ['web.iklim.co'],
    service: 'iklimco_web',
    replicas: 2,
    certTarget: 'web.iklim.co.crt',
    keyTarget: 'web.iklim.co_key.pem',
    sealed: true,
    ignoreSighup: false,
  },
  hold: {
    bundle: 'hold',
    lineage: 'hold.iklim.co',
    domains: ['hold.iklim.co'],
    service: 'iklimco_hold',
    replicas: 1,
    certTarget: 'hold.iklim.co.crt',
    keyTarget: 'hold.iklim.co_key.pem',
    sealed: false,
    ignoreSighup: true,
  },
} as const satisfies Record<string, StandIn>;

/** A failing proof waits this long before giving up; short, so the failure tests stay quick. */
export const FAILING_PROOF_TIMEOUT_MS = 20_000;

/**
 * The server-config bundles for `web` and `hold`, added by the e2e next to deploy/certsync.yml's
 * own `iklim-co` (which is used unchanged).
 */
export function extraBundles(): Array<Record<string, unknown>> {
  const files = (standIn: StandIn) => [
    { source: 'fullchain.pem', target: standIn.certTarget, mode: '0644' },
    { source: 'privkey.pem', target: standIn.keyTarget, mode: '0600' },
  ];
  const { web, hold } = STAND_INS;
  return [
    {
      name: web.bundle,
      source: `/letsencrypt/live/${web.lineage}`,
      files: files(web),
      expectNames: [...web.domains],
      reload: [
        {
          service: web.service,
          action: 'signal',
          signal: 'SIGHUP',
          timeoutMs: 30_000,
          verify: {
            tls: { port: 8200, serverName: web.domains[0] },
            vault: { unsealKeyFile: UNSEAL_KEY_FILE },
            timeoutMs: FAILING_PROOF_TIMEOUT_MS,
          },
          onFailure: 'rollback',
        },
      ],
    },
    {
      name: hold.bundle,
      source: `/letsencrypt/live/${hold.lineage}`,
      files: files(hold),
      expectNames: [...hold.domains],
      reload: [
        {
          service: hold.service,
          action: 'signal',
          signal: 'SIGHUP',
          timeoutMs: 30_000,
          verify: {
            tls: { port: 8200, serverName: hold.domains[0] },
            timeoutMs: FAILING_PROOF_TIMEOUT_MS,
          },
          onFailure: 'hold',
        },
      ],
    },
  ];
}

/** `docker service create` arguments (after the name) that set up one stand-in. */
export function standInServiceArgs(standIn: StandIn): string[] {
  const env = (name: string, value: string) => ['--env', `${name}=${value}`];
  return [
    '--replicas',
    String(standIn.replicas),
    ...env('VAULT_TLS_CERT_NAME', standIn.certTarget),
    ...env('VAULT_TLS_KEY_NAME', standIn.keyTarget),
    ...(standIn.sealed
      ? [
          '--secret',
          UNSEAL_SECRET,
          ...env('VAULT_STAND_IN_UNSEAL_KEYS_FILE', UNSEAL_KEY_FILE),
          ...env('VAULT_STAND_IN_THRESHOLD', String(UNSEAL_THRESHOLD)),
        ]
      : []),
    ...(standIn.ignoreSighup ? env('VAULT_STAND_IN_IGNORE_SIGHUP', '1') : []),
  ];
}
