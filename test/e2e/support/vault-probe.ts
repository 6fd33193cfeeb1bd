import type { DockerEngine } from './docker-engine.js';

/** What one Vault stand-in task serves, seen from inside its own container. */
export interface VaultProbe {
  /** SHA-256 (lower-case hex) of the DER leaf certificate presented on port 8200. */
  readonly servedFingerprintSha256: string;
  readonly sealStatus: { type?: string; initialized?: boolean; sealed?: boolean };
}

/**
 * Runs inside the container (there is no route from the host into the overlay network): one TLS
 * handshake with 127.0.0.1:8200 for the served certificate, then GET /v1/sys/seal-status.
 * Trust is not checked on purpose: the point is which certificate is served, not who signed it.
 */
const PROBE_SCRIPT = `
const https = require('node:https');
const { createHash } = require('node:crypto');
const request = https.get({ host: '127.0.0.1', port: 8200, path: '/v1/sys/seal-status', rejectUnauthorized: false, agent: false }, (response) => {
  const raw = response.socket.getPeerCertificate().raw;
  let body = '';
  response.setEncoding('utf8').on('data', (chunk) => (body += chunk)).on('end', () => {
    process.stdout.write(JSON.stringify({ servedFingerprintSha256: createHash('sha256').update(raw).digest('hex'), sealStatus: JSON.parse(body) }));
  });
});
request.setTimeout(5000, () => request.destroy(new Error('timed out')));
request.on('error', (error) => { process.stderr.write(String(error)); process.exit(1); });
`;

/** Probes the stand-in in `containerId` on `engine` (the engine of the node the task runs on). */
export async function probeVault(engine: DockerEngine, containerId: string): Promise<VaultProbe> {
  const { stdout } = await engine.docker(['exec', containerId, 'node', '-e', PROBE_SCRIPT], {
    timeoutMs: 15_000,
  });
  return JSON.parse(stdout) as VaultProbe;
}
