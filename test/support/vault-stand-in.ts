import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, promises as fs } from 'node:fs';
import path from 'node:path';
import { freePort, waitFor } from './processes';

/** The stand-in's source; the e2e image and the loopback tests run the same file. */
export const VAULT_STAND_IN_SCRIPT = path.resolve(
  __dirname,
  __filename.endsWith('.ts') ? '..' : '../../..',
  'test/e2e/fixtures/vault-stand-in/server.js',
);

/** A Vault stand-in process on loopback (see the script's header for what it imitates). */
export interface LocalVaultStandIn {
  readonly endpoint: string;
  readonly logFile: string;
  readonly child: ChildProcess;
  /** Log lines parsed as JSON. */
  events(): Promise<Array<Record<string, unknown>>>;
  stop(): Promise<void>;
}

export async function startLocalVaultStandIn(options: {
  tlsDir: string;
  logFile: string;
  certName: string;
  keyName: string;
  env?: NodeJS.ProcessEnv;
}): Promise<LocalVaultStandIn> {
  const port = await freePort();
  await fs.mkdir(path.dirname(options.logFile), { recursive: true });
  const out = createWriteStream(options.logFile, { flags: 'a' });
  await new Promise((resolve) => out.once('open', resolve));
  const child = spawn(process.execPath, [VAULT_STAND_IN_SCRIPT], {
    env: {
      ...process.env,
      VAULT_TLS_DIR: options.tlsDir,
      VAULT_TLS_CERT_NAME: options.certName,
      VAULT_TLS_KEY_NAME: options.keyName,
      VAULT_PORT: String(port),
      ...options.env,
    },
    stdio: ['ignore', out, out],
  });
  const exited = new Promise((resolve) => child.once('exit', resolve));
  const events = async () =>
    (await fs.readFile(options.logFile, 'utf8'))
      .split('\n')
      .filter((line) => line.startsWith('{'))
      .map((line) => JSON.parse(line) as Record<string, unknown>);
  await waitFor(
    'the Vault stand-in to serve',
    async () =>
      (await events()).some((event) => event['msg'] === 'Serving certificate') ? true : undefined,
    10_000,
  );
  return {
    endpoint: `127.0.0.1:${port}`,
    logFile: options.logFile,
    child,
    events,
    async stop() {
      if (child.exitCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
}
