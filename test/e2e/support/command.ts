import { spawn, type ChildProcess } from 'node:child_process';

/** What a finished command printed and how it ended. */
export interface CommandResult {
  readonly code: number;
  readonly stdout: string;
  readonly stderr: string;
}

export interface CommandOptions {
  env?: NodeJS.ProcessEnv;
  /** Written to the command's stdin, which is then closed. */
  input?: string;
  timeoutMs?: number;
  /** Resolve with the result instead of throwing when the exit code is not 0. */
  allowFailure?: boolean;
}

/** Thrown when a harness command exits non-zero or times out; carries the end of its stderr. */
export class CommandError extends Error {
  constructor(
    readonly commandLine: string,
    readonly result: CommandResult,
  ) {
    super(`${commandLine} failed (exit ${result.code})\n${tail(result.stderr || result.stdout)}`);
    this.name = 'CommandError';
  }
}

const DEFAULT_TIMEOUT_MS = 120_000;
const TAIL_LINES = 20;

/** Runs one command to completion and collects its output. */
export function runCommand(
  command: string,
  args: readonly string[],
  options: CommandOptions = {},
): Promise<CommandResult> {
  const commandLine = [command, ...args].join(' ');
  const child = spawn(command, args, {
    env: { ...process.env, ...options.env },
    stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe'],
  });
  if (options.input !== undefined) child.stdin?.end(options.input);

  let stdout = '';
  let stderr = '';
  child.stdout?.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
  child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
  const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs ?? DEFAULT_TIMEOUT_MS);

  return new Promise((resolve, reject) => {
    child.once('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    child.once('close', (code, signal) => {
      clearTimeout(timer);
      const result = { code: code ?? (signal ? 128 : -1), stdout, stderr };
      if (result.code === 0 || options.allowFailure) resolve(result);
      else reject(new CommandError(commandLine, result));
    });
  });
}

/** Runs `producer | consumer` (e.g. `docker save | docker load`) and waits for both. */
export async function pipeCommands(
  producer: { command: string; args: readonly string[]; env?: NodeJS.ProcessEnv },
  consumer: { command: string; args: readonly string[]; env?: NodeJS.ProcessEnv },
  timeoutMs = DEFAULT_TIMEOUT_MS,
): Promise<void> {
  const from = spawn(producer.command, producer.args, {
    env: { ...process.env, ...producer.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const to = spawn(consumer.command, consumer.args, {
    env: { ...process.env, ...consumer.env },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  from.stdout.pipe(to.stdin);
  to.stdout.resume();
  const timer = setTimeout(() => {
    from.kill('SIGKILL');
    to.kill('SIGKILL');
  }, timeoutMs);

  const finished = (child: ChildProcess, line: string) => {
    let stderr = '';
    child.stderr?.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    return new Promise<void>((resolve, reject) => {
      child.once('error', reject);
      child.once('close', (code) => {
        if (code === 0) resolve();
        else reject(new CommandError(line, { code: code ?? -1, stdout: '', stderr }));
      });
    });
  };
  try {
    await Promise.all([
      finished(from, [producer.command, ...producer.args].join(' ')),
      finished(to, [consumer.command, ...consumer.args].join(' ')),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

function tail(text: string): string {
  return text.trimEnd().split('\n').slice(-TAIL_LINES).join('\n');
}
