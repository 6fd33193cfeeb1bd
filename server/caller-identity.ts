import { createHash, timingSafeEqual } from 'node:crypto';
import type { PeerCertificate } from 'node:tls';
import type { Metadata } from '@grpc/grpc-js';

/** Who may call what: agents hold Sync streams, admins call AdminService. */
export type CallerRole = 'agent' | 'admin';

/** The subject OU a client certificate carries for each role (`openssl req -subj "/OU=…/CN=…"`). */
export const CERTIFICATE_ROLE_OU: Readonly<Record<CallerRole, string>> = {
  agent: 'certsync-agent',
  admin: 'certsync-admin',
};

/** Thrown when a call carries no credential certsync accepts (no token, wrong token, no trusted certificate). */
export class UnauthenticatedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UnauthenticatedError';
  }
}

/** Thrown when a caller is known but its role may not call the method (an agent calling admin RPCs). */
export class PermissionDeniedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'PermissionDeniedError';
  }
}

/** The configured tokens, kept only as SHA-256 digests. */
export interface TokenDigests {
  readonly agent?: Buffer;
  readonly admin?: Buffer;
}

/** What the transport tells about the peer: a client certificate Node verified against tls.clientCaFile. */
export interface PeerAuthContext {
  readonly sslPeerCertificate?: PeerCertificate;
}

/** Digests both sides first, so the comparison is constant-time and length-independent. */
export function tokenDigest(token: string): Buffer {
  return createHash('sha256').update(token, 'utf8').digest();
}

/**
 * The roles a call proves: from a bearer token (`authorization: Bearer …`) and from a verified
 * client certificate's OU. A token that is present but matches no configured token is refused
 * outright, even next to a good certificate, so a stale or mistyped secret never goes unnoticed.
 */
export function identifyCaller(
  metadata: Metadata,
  auth: PeerAuthContext,
  tokens: TokenDigests,
): Set<CallerRole> {
  const roles = new Set<CallerRole>();
  const header = metadata.get('authorization');
  if (header.length > 1) throw new UnauthenticatedError('more than one authorization header');
  if (header.length === 1) {
    const match = /^Bearer\s+(\S+)\s*$/i.exec(String(header[0]));
    if (!match?.[1])
      throw new UnauthenticatedError('authorization metadata must be "Bearer <token>"');
    const presented = tokenDigest(match[1]);
    // Both comparisons always run, so timing does not tell which role a token almost matched.
    const isAgent = tokens.agent !== undefined && timingSafeEqual(presented, tokens.agent);
    const isAdmin = tokens.admin !== undefined && timingSafeEqual(presented, tokens.admin);
    if (!isAgent && !isAdmin) throw new UnauthenticatedError('the bearer token is not accepted');
    if (isAgent) roles.add('agent');
    if (isAdmin) roles.add('admin');
  }
  const certificateRole = roleOfCertificate(auth.sslPeerCertificate);
  if (certificateRole) roles.add(certificateRole);
  return roles;
}

/** The role named by a verified client certificate's subject OU, if any. */
export function roleOfCertificate(
  certificate: PeerCertificate | undefined,
): CallerRole | undefined {
  const unit: unknown = certificate?.subject?.OU;
  const units = Array.isArray(unit) ? unit : [unit];
  const roles = (Object.keys(CERTIFICATE_ROLE_OU) as CallerRole[]).filter((role) =>
    units.includes(CERTIFICATE_ROLE_OU[role]),
  );
  // A certificate naming both roles is ambiguous; it gets neither.
  return roles.length === 1 ? roles[0] : undefined;
}
