import { spawn } from 'node:child_process';
import { join } from 'node:path';

import { requireTool } from './tools.js';

/** Where certbot runs and which ACME CA it talks to; every folder it writes is under workDir. */
export interface CertbotOptions {
  workDir: string;
  /** The ACME directory, e.g. pebble's `directoryUrl`. */
  directoryUrl: string;
  /** PEM of the CA that signed the ACME server's own HTTPS certificate. */
  apiCaPath: string;
}

/** A real certbot confined to one test's folders; lineages land in `configDir/live/<name>`. */
export interface Certbot {
  /** certbot's `--config-dir`: holds `live/`, `archive/` and `renewal/`. */
  readonly configDir: string;
  /** The `live/<name>` folder of a lineage, whose files are symlinks into `archive/<name>`. */
  liveDir(name: string): string;
  /** Issues a new lineage `name` for `domains` (wildcards allowed); links point at `…1.pem`. */
  issue(name: string, domains: readonly string[]): Promise<void>;
  /** Renews every lineage (or only `name`) now, moving the links on to the next `…N.pem`. */
  renew(name?: string): Promise<void>;
}

/** Thrown when certbot exits non-zero or runs too long; carries the end of its stderr. */
export class CertbotError extends Error {
  constructor(
    readonly args: readonly string[],
    readonly exitStatus: number | string,
    readonly stderrTail: string,
  ) {
    const command = args[0] ?? '';
    super(`certbot ${command} failed (${exitStatus})\n--- certbot stderr tail ---\n${stderrTail}`);
    this.name = 'CertbotError';
  }
}

const RUN_TIMEOUT_MS = 120_000;
const STDERR_TAIL_LINES = 25;

/** Builds a certbot runner against an ACME CA under test; nothing runs until issue or renew. */
export function createCertbot(options: CertbotOptions): Certbot {
  const certbotBin = requireTool('certbot');
  const configDir = join(options.workDir, 'certbot', 'etc');
  const folderArgs = [
    `--config-dir=${configDir}`,
    `--work-dir=${join(options.workDir, 'certbot', 'work')}`,
    `--logs-dir=${join(options.workDir, 'certbot', 'logs')}`,
    '--non-interactive',
  ];
  const run = (args: string[]) => runCertbot(certbotBin, args, options.apiCaPath);

  return {
    configDir,
    liveDir: (name) => join(configDir, 'live', name),
    async issue(name, domains) {
      await run([
        'certonly',
        ...folderArgs,
        `--server=${options.directoryUrl}`,
        '--agree-tos',
        '--email=certsync-test@example.test',
        '--no-eff-email',
        // A DNS challenge answered by a hook that does nothing: pebble runs with
        // PEBBLE_VA_ALWAYS_VALID=1, and DNS is the only challenge type allowed for wildcards.
        '--manual',
        '--preferred-challenges=dns',
        '--manual-auth-hook=/bin/true',
        `--cert-name=${name}`,
        `--domains=${domains.join(',')}`,
      ]);
    },
    async renew(name) {
      await run([
        'renew',
        ...folderArgs,
        '--force-renewal',
        // Without it, certbot renew run without a terminal first sleeps up to 8 minutes.
        '--no-random-sleep-on-renew',
        ...(name === undefined ? [] : [`--cert-name=${name}`]),
      ]);
    },
  };
}

function runCertbot(certbotBin: string, args: string[], apiCaPath: string): Promise<void> {
  const child = spawn(certbotBin, args, {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      ...process.env,
      // certbot's HTTP client (requests) verifies the ACME server against this bundle only.
      REQUESTS_CA_BUNDLE: apiCaPath,
      NO_PROXY: '127.0.0.1,localhost',
    },
  });

  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (chunk: string) => (stderr += chunk));
  let timedOut = false;
  const timer = setTimeout(() => {
    timedOut = true;
    child.kill('SIGKILL');
  }, RUN_TIMEOUT_MS);

  return new Promise((resolve, reject) => {
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      if (code === 0) return resolve();
      const status = timedOut ? `killed after ${RUN_TIMEOUT_MS} ms` : (code ?? signal ?? 'unknown');
      const tail = stderr.trimEnd().split('\n').slice(-STDERR_TAIL_LINES).join('\n');
      reject(new CertbotError(args, status, tail));
    });
  });
}
