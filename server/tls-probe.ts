import { X509Certificate } from 'node:crypto';
import https from 'node:https';
import tls from 'node:tls';

/** What one TLS endpoint serves. */
export interface ServedCertificate {
  fingerprintSha256: string;
  notAfter: Date;
}

/** Thrown when a replica serves a certificate other than the one certsync may talk to. */
export class UnexpectedCertificateError extends Error {
  constructor(endpoint: string, expected: string, served: string) {
    super(
      `${endpoint} serves leaf ${served.slice(0, 16)}…, not the expected ${expected.slice(0, 16)}…`,
    );
    this.name = 'UnexpectedCertificateError';
  }
}

/** Splits HOST:PORT (IPv6 in brackets) for the socket APIs. */
export function splitEndpoint(endpoint: string): { host: string; port: number } {
  const match = /^\[?([^\]]+)\]?:(\d+)$/.exec(endpoint);
  if (!match) throw new Error(`endpoint "${endpoint}" is not HOST:PORT`);
  return { host: match[1]!, port: Number(match[2]) };
}

function servedBy(socket: tls.TLSSocket): ServedCertificate {
  const raw = socket.getPeerX509Certificate();
  if (!raw) throw new Error('no certificate was presented');
  return { fingerprintSha256: fingerprintOf(raw), notAfter: new Date(raw.validTo) };
}

/** Lower-case hex SHA-256 of a certificate's DER, the form certsync uses everywhere. */
export function fingerprintOf(certificate: X509Certificate): string {
  return certificate.fingerprint256.replaceAll(':', '').toLowerCase();
}

/**
 * Connects to `endpoint` with `serverName` as SNI and returns the leaf it serves. The chain is not
 * verified here: the caller compares the fingerprint with the bundle's own leaf, a stricter check.
 */
export function probeServedCertificate(
  endpoint: string,
  serverName: string | undefined,
  timeoutMs: number,
): Promise<ServedCertificate> {
  const { host, port } = splitEndpoint(endpoint);
  return new Promise((resolve, reject) => {
    const socket = tls.connect({
      host,
      port,
      servername: serverName,
      rejectUnauthorized: false,
      timeout: timeoutMs,
    });
    socket.once('secureConnect', () => {
      try {
        resolve(servedBy(socket));
      } catch (error) {
        reject(error);
      } finally {
        socket.end();
      }
    });
    socket.once('timeout', () =>
      socket.destroy(new Error(`no TLS handshake within ${timeoutMs} ms`)),
    );
    socket.once('error', reject);
  });
}

/**
 * One HTTPS request whose body is only written once the server has shown the expected leaf: an
 * unseal key is never sent to a replica serving anything else. Resolves with the status and the
 * parsed JSON body.
 */
export function pinnedJsonRequest(
  endpoint: string,
  options: {
    serverName: string | undefined;
    expectedFingerprint: string;
    method: 'GET' | 'PUT';
    path: string;
    body?: unknown;
    timeoutMs: number;
  },
): Promise<{ status: number; body: unknown }> {
  const { host, port } = splitEndpoint(endpoint);
  const payload = options.body === undefined ? undefined : JSON.stringify(options.body);
  return new Promise((resolve, reject) => {
    const request = https.request({
      host,
      port,
      servername: options.serverName,
      method: options.method,
      path: options.path,
      rejectUnauthorized: false,
      agent: false,
      timeout: options.timeoutMs,
      headers: payload
        ? { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }
        : {},
    });
    request.once('socket', (socket: tls.TLSSocket) => {
      socket.once('secureConnect', () => {
        const served = servedBy(socket).fingerprintSha256;
        if (served !== options.expectedFingerprint) {
          request.destroy(
            new UnexpectedCertificateError(endpoint, options.expectedFingerprint, served),
          );
          return;
        }
        request.end(payload);
      });
    });
    request.once('timeout', () =>
      request.destroy(new Error(`no answer within ${options.timeoutMs} ms`)),
    );
    request.once('error', reject);
    request.once('response', (response) => {
      let text = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (text += chunk));
      response.once('end', () => {
        try {
          resolve({
            status: response.statusCode ?? 0,
            body: text ? (JSON.parse(text) as unknown) : undefined,
          });
        } catch {
          reject(
            new Error(
              `${options.method} ${options.path} answered ${response.statusCode} with a body that is not JSON`,
            ),
          );
        }
      });
    });
  });
}
