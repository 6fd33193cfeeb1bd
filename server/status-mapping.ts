import { status, type ServiceError, Metadata } from '@grpc/grpc-js';
import type { Logger } from '../common/log';
import { PermissionDeniedError, UnauthenticatedError } from './caller-identity';
import { FleetUnavailableError, NodeNotExpectedError } from './expected-nodes';
import { DuplicateNodeError } from './fanout-hub';

/** Thrown by admin handlers when the named bundle or version does not exist. */
export class NotFoundError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'NotFoundError';
  }
}

/** Thrown when a request is malformed (missing name, bad node ID, wrong first message). */
export class InvalidRequestError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'InvalidRequestError';
  }
}

/** Thrown by an admin handler whose RPC is declared in the contract but not built yet. */
export class UnimplementedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnimplementedError';
  }
}

/** Thrown when a request cannot be carried out in the current state (e.g. nothing to reload). */
export class FailedPreconditionError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FailedPreconditionError';
  }
}

export interface GrpcStatusError {
  code: status;
  details: string;
  metadata: Metadata;
}

/**
 * The one place where errors become gRPC statuses. Known errors keep their message (they are
 * written for the operator and carry no secrets); anything else is logged once with its stack and
 * reaches the client only as a generic INTERNAL status.
 */
export function toGrpcStatus(
  error: unknown,
  log: Logger,
  context: Record<string, unknown> = {},
): Partial<ServiceError> & GrpcStatusError {
  const make = (code: status, details: string): GrpcStatusError => ({
    code,
    details,
    metadata: new Metadata(),
  });
  if (error instanceof UnauthenticatedError) return make(status.UNAUTHENTICATED, error.message);
  if (error instanceof PermissionDeniedError) return make(status.PERMISSION_DENIED, error.message);
  if (error instanceof NotFoundError) return make(status.NOT_FOUND, error.message);
  if (error instanceof InvalidRequestError) return make(status.INVALID_ARGUMENT, error.message);
  if (error instanceof DuplicateNodeError) return make(status.ALREADY_EXISTS, error.message);
  if (error instanceof NodeNotExpectedError) return make(status.PERMISSION_DENIED, error.message);
  if (error instanceof FleetUnavailableError) return make(status.UNAVAILABLE, error.message);
  if (error instanceof UnimplementedError) return make(status.UNIMPLEMENTED, error.message);
  if (error instanceof FailedPreconditionError)
    return make(status.FAILED_PRECONDITION, error.message);

  log.error({ ...context, err: error }, 'Unexpected error in request handler');
  return make(status.INTERNAL, 'internal error; see the certsync-server log');
}
