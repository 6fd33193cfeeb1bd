import { spawn, type ChildProcess } from 'node:child_process';
import { createWriteStream, promises as fs } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { SERVER_NODE_FLAGS } from '../../server/runtime-flags';

/**
 * Starts certsync's real entry points as child processes, from dist/ (after `npm run build`) or
 * from source through tsx (when this file itself runs from source).
 */
const RUNNING_FROM_SOURCE = __filename.endsWith('.ts');
export const PROJECT_ROOT = path.resolve(__dirname, RUNNING_FROM_SOURCE ? '../..' : '../../..');

export type EntryPoint = 'server' | 'agent' | 'ctl';

/** The server runs with the same Node flags as in its image and its bin, so tests measure that. */
export function entryCommand(entry: EntryPoint): { command: string; args: string[] } {
  const flags = entry === 'server' ? [...SERVER_NODE_FLAGS] : [];
  if (RUNNING_FROM_SOURCE) {
    return {
      command: process.execPath,
      args: [...flags, '--import', 'tsx', path.join(PROJECT_ROOT, entry, 'main.ts')],
    };
  }
  return {
    command: process.execPath,
    args: [...flags, path.join(PROJECT_ROOT, 'dist', entry, 'main.js')],
  };
}

/** A child process whose output goes to a log file, stopped by signal. */
export interface ManagedProcess {
  readonly child: ChildProcess;
  readonly logFile: string;
  /** Resolves with the exit code (or the signal name) once the process has ended. */
  readonly exited: Promise<number | string>;
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | string>;
  kill(): Promise<number | string>;
}

export async function startProcess(
  entry: EntryPoint,
  args: string[],
  logFile: string,
  env: NodeJS.ProcessEnv = {},
  nodeArgs: string[] = [],
): Promise<ManagedProcess> {
  const { command, args: prefix } = entryCommand(entry);
  await fs.mkdir(path.dirname(logFile), { recursive: true });
  const out = createWriteStream(logFile, { flags: 'a' });
  await new Promise((resolve) => out.once('open', resolve));
  const child = spawn(command, [...nodeArgs, ...prefix, ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
    stdio: ['ignore', out, out],
  });
  const exited = new Promise<number | string>((resolve) => {
    child.once('exit', (code, signal) => resolve(code ?? signal ?? 'unknown'));
  });
  const stop = async (signal: NodeJS.Signals = 'SIGTERM', timeoutMs = 5_000) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    const result = await exited;
    clearTimeout(timer);
    return result;
  };
  return { child, logFile, exited, stop, kill: () => stop('SIGKILL') };
}

/** Runs an entry point to completion and returns its exit code and output. */
export async function runToCompletion(
  entry: EntryPoint,
  args: string[],
  env: NodeJS.ProcessEnv = {},
) {
  const { command, args: prefix } = entryCommand(entry);
  const child = spawn(command, [...prefix, ...args], {
    cwd: PROJECT_ROOT,
    env: { ...process.env, ...env },
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const code = await new Promise<number>((resolve) =>
    child.once('exit', (exitCode) => resolve(exitCode ?? -1)),
  );
  return { code, stdout, stderr };
}

/** A loopback port that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() =>
        typeof address === 'object' && address
          ? resolve(address.port)
          : reject(new Error('no port')),
      );
    });
  });
}

/** Polls `probe` until it returns a value other than undefined, or throws after timeoutMs. */
export async function waitFor<T>(
  what: string,
  probe: () => Promise<T | undefined>,
  timeoutMs = 20_000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    try {
      const value = await probe();
      if (value !== undefined) return value;
    } catch (error) {
      lastError = error;
    }
    await sleep(intervalMs);
  }
  const detail = lastError instanceof Error ? ` (last error: ${lastError.message})` : '';
  throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}${detail}`);
}
