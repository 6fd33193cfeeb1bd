import { randomBytes } from 'node:crypto';
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { createClientTransport, type ClientTransport } from '../../common/client-transport';
import { createRootCa, issueClientCertificate, issueLeaf } from './pki';

/** The name the loopback server certificate carries and clients check (also 127.0.0.1 as IP SAN). */
export const LOOPBACK_SERVER_NAME = 'localhost';

/**
 * Everything a loopback run needs for TLS with tokens: a CA, a server certificate for localhost
 * and 127.0.0.1, an agent token and an admin token, and (for mTLS) a client CA with an agent and an
 * admin certificate. All made in code (no openssl) and written 0600 into `dir`.
 */
export interface TransportFixture {
  readonly dir: string;
  readonly caFile: string;
  readonly serverCertFile: string;
  readonly serverKeyFile: string;
  readonly agentTokenFile: string;
  readonly adminTokenFile: string;
  readonly clientCaFile: string;
  readonly agentCertFile: string;
  readonly agentKeyFile: string;
  readonly adminCertFile: string;
  readonly adminKeyFile: string;
}

/** Which transport a loopback server runs: TLS with tokens (default), TLS with client certificates, plaintext. */
export type TransportMode = 'tls' | 'mtls' | 'insecure';

/**
 * Makes the fixture in `dir`. `serverDnsNames` are extra DNS names for the server certificate,
 * e.g. `server` for agents that dial the stack's service name.
 */
export async function createTransportFixture(
  dir: string,
  options: { serverDnsNames?: string[] } = {},
): Promise<TransportFixture> {
  await fs.mkdir(dir, { recursive: true, mode: 0o700 });
  const write = async (name: string, content: string) => {
    const file = path.join(dir, name);
    await fs.writeFile(file, content, { mode: 0o600 });
    return file;
  };
  const ca = await createRootCa({ commonName: 'certsync test transport CA' });
  const dnsNames = [LOOPBACK_SERVER_NAME, ...(options.serverDnsNames ?? [])];
  const server = await issueLeaf(ca, {
    commonName: 'certsync-server',
    dnsNames,
    ipAddresses: ['127.0.0.1'],
  });
  const clientCa = await createRootCa({ commonName: 'certsync test client CA' });
  const agent = await issueClientCertificate(clientCa, {
    commonName: 'agent',
    organizationalUnit: 'certsync-agent',
  });
  const admin = await issueClientCertificate(clientCa, {
    commonName: 'admin',
    organizationalUnit: 'certsync-admin',
  });
  return {
    dir,
    caFile: await write('ca.pem', ca.certPem),
    serverCertFile: await write('server.crt', server.certPem),
    serverKeyFile: await write('server.key', server.keyPem),
    agentTokenFile: await write('agent.token', `${randomBytes(32).toString('hex')}\n`),
    adminTokenFile: await write('admin.token', `${randomBytes(32).toString('hex')}\n`),
    clientCaFile: await write('client-ca.pem', clientCa.certPem),
    agentCertFile: await write('agent.crt', agent.certPem),
    agentKeyFile: await write('agent.key', agent.keyPem),
    adminCertFile: await write('admin.crt', admin.certPem),
    adminKeyFile: await write('admin.key', admin.keyPem),
  };
}

/** The server config lines (YAML, top level) for `mode`. */
export function serverTransportConfig(fixture: TransportFixture, mode: TransportMode): string[] {
  if (mode === 'insecure') return ['insecure: true'];
  const clientCa = mode === 'mtls' ? `, clientCaFile: ${JSON.stringify(fixture.clientCaFile)}` : '';
  return [
    `tls: { certFile: ${JSON.stringify(fixture.serverCertFile)}, keyFile: ${JSON.stringify(fixture.serverKeyFile)}${clientCa} }`,
    ...(mode === 'tls'
      ? [
          `auth: { agentTokenFile: ${JSON.stringify(fixture.agentTokenFile)}, adminTokenFile: ${JSON.stringify(fixture.adminTokenFile)} }`,
        ]
      : []),
  ];
}

/** certsync-agent flags for `mode` (the agent's own credential). */
export function agentTransportArgs(fixture: TransportFixture, mode: TransportMode): string[] {
  if (mode === 'insecure') return ['--insecure'];
  const trust = ['--ca-file', fixture.caFile, '--server-name', LOOPBACK_SERVER_NAME];
  if (mode === 'mtls')
    return [...trust, '--cert-file', fixture.agentCertFile, '--key-file', fixture.agentKeyFile];
  return [...trust, '--token-file', fixture.agentTokenFile];
}

/** certsyncctl flags for `mode` (the admin credential). */
export function adminTransportArgs(fixture: TransportFixture, mode: TransportMode): string[] {
  if (mode === 'insecure') return ['--insecure'];
  const trust = ['--ca-file', fixture.caFile, '--server-name', LOOPBACK_SERVER_NAME];
  if (mode === 'mtls')
    return [...trust, '--cert-file', fixture.adminCertFile, '--key-file', fixture.adminKeyFile];
  return [...trust, '--token-file', fixture.adminTokenFile];
}

/** An in-process client transport holding `role`'s credential (or none), trusting the fixture CA. */
export function clientTransport(
  fixture: TransportFixture,
  mode: TransportMode,
  role: 'agent' | 'admin' | 'none' = 'admin',
): ClientTransport {
  if (mode === 'insecure') return createClientTransport({ insecure: true });
  const trust = { caFile: fixture.caFile, serverName: LOOPBACK_SERVER_NAME };
  if (role === 'none') return createClientTransport(trust);
  if (mode === 'mtls') {
    const [certFile, keyFile] =
      role === 'agent'
        ? [fixture.agentCertFile, fixture.agentKeyFile]
        : [fixture.adminCertFile, fixture.adminKeyFile];
    return createClientTransport({ ...trust, certFile, keyFile });
  }
  return createClientTransport({ ...trust, tokenFile: tokenFileOf(fixture, role) });
}

function tokenFileOf(fixture: TransportFixture, role: 'agent' | 'admin'): string {
  return role === 'agent' ? fixture.agentTokenFile : fixture.adminTokenFile;
}
