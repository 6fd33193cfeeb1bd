import { createPrivateKey, X509Certificate } from 'node:crypto';
import { ServerCredentials } from '@grpc/grpc-js';
import { readCredentialFile, readTokenFile } from '../common/client-transport';
import type { Logger } from '../common/log';
import type { AccessPolicy } from './access-policy';
import { tokenDigest, type CallerRole, type TokenDigests } from './caller-identity';
import { ConfigError, type AuthConfig, type ServerConfig, type TlsConfig } from './config';

/** The server's side of the transport: how it listens and who may call what. */
export interface ServerTransport {
  readonly credentials: ServerCredentials;
  readonly policy: AccessPolicy;
}

/**
 * TLS credentials that ask for a client certificate without requiring one. grpc-js's createSsl
 * either never asks (checkClientCertificate false) or refuses every connection without a
 * certificate, which would shut out token callers, health probes and reflection. Here Node
 * verifies a presented certificate against the client CA and grpc-js hands only a verified one to
 * the access interceptor (getAuthContext is empty for an unverified peer).
 */
class OptionalClientCertificateCredentials extends ServerCredentials {
  constructor(cert: Buffer, key: Buffer, clientCa: Buffer | undefined) {
    super(
      { requestCert: clientCa !== undefined, rejectUnauthorized: false },
      { cert: [cert], key: [key], ...(clientCa ? { ca: clientCa } : {}) },
    );
  }

  override _equals(other: ServerCredentials): boolean {
    return this === other;
  }
}

/**
 * Reads the serving certificate, key, client CA and token files named in the config and builds
 * the credentials and access policy. Errors name the file and the key, never the content. Logs
 * a warning for plaintext at every start.
 */
export function loadServerTransport(
  config: Pick<ServerConfig, 'tls' | 'insecure' | 'auth'>,
  log: Logger,
): ServerTransport {
  const tokens = loadTokens(config.auth);
  const hasClientCa = Boolean(config.tls?.clientCaFile);
  const openRoles = new Set<CallerRole>();
  if (!tokens.agent && !hasClientCa) openRoles.add('agent');
  if (!tokens.admin && !hasClientCa) openRoles.add('admin');

  if (!config.tls) {
    log.warn(
      { insecure: true, unauthenticatedRoles: [...openRoles] },
      'INSECURE: gRPC is plaintext (insecure: true); tokens and certificate bytes cross the network unencrypted. Set tls for production',
    );
    return { credentials: ServerCredentials.createInsecure(), policy: { tokens, openRoles } };
  }
  return { credentials: loadTlsCredentials(config.tls), policy: { tokens, openRoles } };
}

function loadTokens(auth: AuthConfig): TokenDigests {
  const read = (file: string | undefined, key: string) => {
    if (!file) return undefined;
    try {
      return tokenDigest(readTokenFile(file, key));
    } catch (error) {
      throw new ConfigError((error as Error).message, { cause: error });
    }
  };
  const agent = read(auth.agentTokenFile, 'auth.agentTokenFile');
  const admin = read(auth.adminTokenFile, 'auth.adminTokenFile');
  if (agent && admin && agent.equals(admin)) {
    throw new ConfigError(
      'auth.agentTokenFile and auth.adminTokenFile hold the same token; agents could call admin RPCs',
    );
  }
  return { ...(agent ? { agent } : {}), ...(admin ? { admin } : {}) };
}

function loadTlsCredentials(tls: TlsConfig): ServerCredentials {
  const read = (file: string, key: string) => {
    try {
      return readCredentialFile(file, key);
    } catch (error) {
      throw new ConfigError((error as Error).message, { cause: error });
    }
  };
  const cert = read(tls.certFile, 'tls.certFile');
  const key = read(tls.keyFile, 'tls.keyFile');
  const clientCa = tls.clientCaFile ? read(tls.clientCaFile, 'tls.clientCaFile') : undefined;

  let leaf: X509Certificate;
  try {
    leaf = new X509Certificate(cert);
  } catch (error) {
    throw new ConfigError(`tls.certFile ${tls.certFile} does not hold a PEM certificate`, {
      cause: error,
    });
  }
  let matches: boolean;
  try {
    matches = leaf.checkPrivateKey(createPrivateKey(key));
  } catch (error) {
    throw new ConfigError(
      `tls.keyFile ${tls.keyFile} does not hold an unencrypted PEM private key`,
      { cause: error },
    );
  }
  if (!matches)
    throw new ConfigError(
      `tls.keyFile ${tls.keyFile} does not match the certificate in tls.certFile ${tls.certFile}`,
    );
  if (clientCa) {
    try {
      new X509Certificate(clientCa);
    } catch (error) {
      throw new ConfigError(
        `tls.clientCaFile ${tls.clientCaFile} does not hold a PEM certificate`,
        { cause: error },
      );
    }
  }
  return new OptionalClientCertificateCredentials(cert, key, clientCa);
}
