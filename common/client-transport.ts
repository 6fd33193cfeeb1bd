import { readFileSync } from 'node:fs';
import { credentials, Metadata, type ChannelCredentials, type ChannelOptions } from '@grpc/grpc-js';

/**
 * How a client (agent or certsyncctl) reaches certsync-server: TLS with a trust anchor, optional
 * client certificate (mTLS), a bearer token, or plaintext when the operator asked for it.
 */
export interface ClientTransportSettings {
  /** Plaintext gRPC; only for a server started with `insecure: true`. */
  readonly insecure?: boolean;
  /** PEM CA that signed the server's certificate; the system roots when absent. */
  readonly caFile?: string;
  /** Client certificate and key (PEM) for mTLS. */
  readonly certFile?: string;
  readonly keyFile?: string;
  /** A file holding the bearer token (a Docker secret); surrounding whitespace is ignored. */
  readonly tokenFile?: string;
  /** Name to check the server's certificate against (and send as SNI) instead of the host. */
  readonly serverName?: string;
}

/** What a gRPC client needs: channel credentials, extra channel options and per-call metadata. */
export interface ClientTransport {
  readonly credentials: ChannelCredentials;
  readonly channelOptions: ChannelOptions;
  /** Fresh metadata for one call, carrying the bearer token when there is one. */
  metadata(): Metadata;
}

/**
 * Thrown when a credential file cannot be used. The message names the file and the flag, never
 * the file's content.
 */
export class CredentialFileError extends Error {
  constructor(
    message: string,
    readonly path: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
    this.name = 'CredentialFileError';
  }
}

/** Tokens shorter than this are refused: they are guessable. */
export const MIN_TOKEN_LENGTH = 16;

/** Reads a token file (a Docker secret): trimmed, at least MIN_TOKEN_LENGTH, one line. */
export function readTokenFile(file: string, what: string): string {
  const token = readCredentialFile(file, what).toString('utf8').trim();
  if (token.length < MIN_TOKEN_LENGTH) {
    throw new CredentialFileError(
      `${what} ${file} holds a token shorter than ${MIN_TOKEN_LENGTH} characters`,
      file,
    );
  }
  if (/\s/.test(token)) {
    throw new CredentialFileError(
      `${what} ${file} holds whitespace inside the token; put one token on one line`,
      file,
    );
  }
  return token;
}

/** Reads a credential file; the error names the file and what it is for. */
export function readCredentialFile(file: string, what: string): Buffer {
  try {
    return readFileSync(file);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? 'EIO';
    throw new CredentialFileError(`cannot read ${what} ${file}: ${code}`, file, { cause: error });
  }
}

/** Builds the client side of the transport from files; throws CredentialFileError. */
export function createClientTransport(settings: ClientTransportSettings): ClientTransport {
  const token = settings.tokenFile ? readTokenFile(settings.tokenFile, 'token file') : undefined;
  const metadata = () => {
    const result = new Metadata();
    if (token) result.set('authorization', `Bearer ${token}`);
    return result;
  };
  if (settings.insecure) {
    return { credentials: credentials.createInsecure(), channelOptions: {}, metadata };
  }

  if (Boolean(settings.certFile) !== Boolean(settings.keyFile)) {
    const file = settings.certFile ?? settings.keyFile ?? '';
    throw new CredentialFileError(
      'a client certificate needs both --cert-file and --key-file',
      file,
    );
  }
  const ca = settings.caFile ? readCredentialFile(settings.caFile, 'CA file') : null;
  const key = settings.keyFile ? readCredentialFile(settings.keyFile, 'client key file') : null;
  const cert = settings.certFile
    ? readCredentialFile(settings.certFile, 'client certificate file')
    : null;
  const channelOptions: ChannelOptions = settings.serverName
    ? {
        'grpc.ssl_target_name_override': settings.serverName,
        'grpc.default_authority': settings.serverName,
      }
    : {};
  return { credentials: credentials.createSsl(ca, key, cert), channelOptions, metadata };
}
