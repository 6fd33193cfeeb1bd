import type { AgentError } from '../common/contract';

/** Codes the agent invents itself; every other code is an errno name such as EACCES or ENOSPC. */
export type CertsyncErrorCode =
  | 'PATH_ESCAPE'
  | 'SYMLINK_TARGET'
  | 'DIGEST_MISMATCH'
  | 'DUPLICATE_TARGET'
  | 'INVALID_MODE'
  | 'NOT_A_FILE'
  | 'NOT_READABLE'
  | 'MODE_NOT_KEPT';

/**
 * Thrown when a bundle cannot be applied (or verified) on this node. It carries exactly what the
 * server needs in an ApplyReport: a code, an operator-facing message and the file to blame.
 */
export class ApplyError extends Error {
  override readonly name = 'ApplyError';

  constructor(
    readonly code: CertsyncErrorCode | (string & {}),
    message: string,
    /** Path relative to the agent's folder; empty when no single file is to blame. */
    readonly relativePath: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }

  /** The wire form sent back to the server. */
  toAgentError(): AgentError {
    return { code: this.code, message: this.message, path: this.relativePath };
  }
}

/**
 * Turns a failed file-system call into an ApplyError whose code is the errno name, so the server
 * (and the operator reading `certsyncctl status`) sees EACCES/ENOSPC/EROFS rather than "failed".
 */
export function applyErrorFromFileSystem(
  error: unknown,
  step: string,
  relativePath: string,
): ApplyError {
  if (error instanceof ApplyError) {
    return error;
  }
  const code = errnoCode(error) ?? 'EIO';
  const reason = error instanceof Error ? error.message : String(error);
  return new ApplyError(code, `${step} failed for ${relativePath}: ${reason}`, relativePath, {
    cause: error,
  });
}

/** The errno name of a Node file-system error, if it has one. */
export function errnoCode(error: unknown): string | undefined {
  if (typeof error === 'object' && error !== null && 'code' in error) {
    const code = (error as { code: unknown }).code;
    return typeof code === 'string' ? code : undefined;
  }
  return undefined;
}
