import type { Metadata } from '@grpc/grpc-js';
import {
  identifyCaller,
  PermissionDeniedError,
  UnauthenticatedError,
  type CallerRole,
  type PeerAuthContext,
  type TokenDigests,
} from './caller-identity';

/**
 * Services anyone may call: health (for probes and load balancers) and server reflection (the
 * schema only, no data). Everything else needs a role.
 */
export const OPEN_SERVICES: readonly string[] = [
  'grpc.health.v1.Health',
  'grpc.reflection.v1.ServerReflection',
  'grpc.reflection.v1alpha.ServerReflection',
];

/** The role each certsync service needs. A service in neither list is refused to everyone. */
export const SERVICE_ROLES: Readonly<Record<string, CallerRole>> = {
  'certsync.v1.AgentService': 'agent',
  'certsync.v1.AdminService': 'admin',
};

/** Who may call what; built once from the configured credentials. */
export interface AccessPolicy {
  readonly tokens: TokenDigests;
  /**
   * Roles that have no credential configured at all, so every caller holds them. Only possible
   * with `insecure: true`; with TLS the config refuses to start without a credential per role.
   */
  readonly openRoles: ReadonlySet<CallerRole>;
}

/** The service part of a gRPC path (`/certsync.v1.AdminService/GetStatus` → `certsync.v1.AdminService`). */
export function serviceOfPath(methodPath: string): string {
  return methodPath.split('/')[1] ?? '';
}

/**
 * Decides one call: resolves when it may go on, throws UnauthenticatedError (no or unknown
 * credential) or PermissionDeniedError (a known caller of the wrong role). A pure decision over
 * the path, the metadata and what TLS verified.
 */
export function authorizeCall(
  policy: AccessPolicy,
  methodPath: string,
  metadata: Metadata,
  auth: PeerAuthContext,
): void {
  const service = serviceOfPath(methodPath);
  if (OPEN_SERVICES.includes(service)) return;
  const required = SERVICE_ROLES[service];
  if (!required) throw new PermissionDeniedError(`${methodPath} is not open to any caller`);
  if (policy.openRoles.has(required)) return;

  const roles = identifyCaller(metadata, auth, policy.tokens);
  if (roles.has(required)) return;
  if (roles.size === 0) {
    throw new UnauthenticatedError(
      `${methodPath} needs the ${required} credential: send "authorization: Bearer <token>" or a client certificate with OU=certsync-${required}`,
    );
  }
  throw new PermissionDeniedError(
    `${methodPath} needs the ${required} role; this caller is ${[...roles].join(', ')}`,
  );
}
