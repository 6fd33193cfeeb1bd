import { spawn, type ChildProcess } from 'node:child_process';
import { createHash, generateKeyPairSync, randomBytes, sign, type KeyObject } from 'node:crypto';
import { closeSync, openSync } from 'node:fs';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { get } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { requireTool } from './tools.js';

/** A running pebble ACME CA on loopback, owned by one test. */
export interface Pebble {
  /** The ACME directory URL to give certbot as `--server`. */
  readonly directoryUrl: string;
  /** PEM of the CA that signed pebble's API certificate: what an ACME client must trust. */
  readonly apiCaPath: string;
  /** pebble's stdout and stderr, for reading after a failure. */
  readonly logPath: string;
  /** Stops pebble (SIGTERM, then SIGKILL); safe to call twice. */
  stop(): Promise<void>;
  /** PEM of the root then the intermediate pebble signs with; both change at every start. */
  fetchRoots(): Promise<string>;
}

const STARTUP_TIMEOUT_MS = 15_000;
const STOP_TIMEOUT_MS = 5_000;
const POLL_INTERVAL_MS = 100;
const REQUEST_TIMEOUT_MS = 2_000;
const START_ATTEMPTS = 3;

/** Thrown when pebble exits or does not answer during startup; carries its log tail. */
export class PebbleStartError extends Error {
  constructor(
    message: string,
    readonly logTail: string,
    options?: ErrorOptions,
  ) {
    super(`${message}\n--- pebble log tail ---\n${logTail}`, options);
    this.name = 'PebbleStartError';
  }
}

/**
 * Starts pebble with a fresh API certificate and config under `workDir/pebble`, on free loopback
 * ports, with challenge validation switched off, and resolves once its directory answers.
 */
export async function startPebble(workDir: string): Promise<Pebble> {
  const pebbleBin = requireTool('pebble');
  const dir = join(workDir, 'pebble');
  await mkdir(dir, { recursive: true });
  const tls = await writeApiCertificate(dir);

  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnFreePorts(pebbleBin, dir, tls);
    } catch (error) {
      // Free ports are picked by binding and releasing them, so another process can take one
      // before pebble binds it. Retry on that race only; every other failure is real.
      const lostPortRace =
        error instanceof PebbleStartError && /address already in use/.test(error.logTail);
      if (!lostPortRace || attempt >= START_ATTEMPTS) throw error;
    }
  }
}

interface ApiCertificate {
  caPath: string;
  certPath: string;
  keyPath: string;
}

async function startOnFreePorts(pebbleBin: string, dir: string, tls: ApiCertificate) {
  const [listenPort, managementPort, httpPort, tlsPort] = await findFreePorts(4);
  const directoryUrl = `https://127.0.0.1:${listenPort}/dir`;
  const managementUrl = `https://127.0.0.1:${managementPort}`;
  const configPath = join(dir, 'pebble-config.json');
  const logPath = join(dir, 'pebble.log');
  const config = {
    pebble: {
      listenAddress: `127.0.0.1:${listenPort}`,
      managementListenAddress: `127.0.0.1:${managementPort}`,
      certificate: tls.certPath,
      privateKey: tls.keyPath,
      // Unused while PEBBLE_VA_ALWAYS_VALID=1, but pebble requires them; free ports keep a
      // future test that does validate from colliding with anything.
      httpPort,
      tlsPort,
      ocspResponderURL: '',
      externalAccountBindingRequired: false,
    },
  };
  await writeFile(configPath, JSON.stringify(config, null, 2));

  const ca = await readFile(tls.caPath, 'utf8');
  const child = spawnPebble(pebbleBin, configPath, logPath);
  try {
    await waitUntilAnswering(child, directoryUrl, ca, logPath);
  } catch (error) {
    await stopProcess(child);
    throw error;
  }

  return {
    directoryUrl,
    apiCaPath: tls.caPath,
    logPath,
    stop: () => stopProcess(child),
    async fetchRoots() {
      const root = await fetchPem(`${managementUrl}/roots/0`, ca);
      const intermediate = await fetchPem(`${managementUrl}/intermediates/0`, ca);
      return `${root}\n${intermediate}\n`;
    },
  };
}

function spawnPebble(pebbleBin: string, configPath: string, logPath: string): ChildProcess {
  // Output goes straight to a file: no pipe for this process to drain, and the log survives us.
  const logFd = openSync(logPath, 'w');
  const child = spawn(pebbleBin, ['-config', configPath], {
    stdio: ['ignore', logFd, logFd],
    env: {
      ...process.env,
      PEBBLE_VA_ALWAYS_VALID: '1',
      PEBBLE_VA_NOSLEEP: '1',
      // pebble rejects 5% of valid nonces by default to exercise client retries; certbot then
      // logs badNonce retries and, with bad luck, gives up. Tests want a CA that just works.
      PEBBLE_WFE_NONCEREJECT: '0',
      // By default pebble reuses a valid authorization only half the time, so a renewal took
      // either ~1.8 s or ~2.8 s (certbot polls a pending authorization once a second). Always
      // reusing, as Let's Encrypt does within 30 days, makes renewals steady at ~2 s.
      PEBBLE_AUTHZREUSE: '100',
    },
  });
  closeSync(logFd);

  // A test that crashes before stop() must not leave pebble running and holding its ports.
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  child.once('exit', () => process.removeListener('exit', killOnExit));
  return child;
}

async function waitUntilAnswering(child: ChildProcess, url: string, ca: string, logPath: string) {
  const deadline = Date.now() + STARTUP_TIMEOUT_MS;
  let lastError: unknown;

  while (Date.now() < deadline) {
    if (child.exitCode !== null || child.signalCode !== null) {
      const status = child.exitCode ?? child.signalCode;
      throw new PebbleStartError(`pebble exited during startup (${status})`, await tail(logPath));
    }
    try {
      const response = await httpsGet(url, ca);
      if (response.status === 200) return;
      lastError = new Error(`HTTP ${response.status} from ${url}`);
    } catch (error) {
      lastError = error;
    }
    await sleep(POLL_INTERVAL_MS);
  }
  throw new PebbleStartError(
    `pebble did not answer at ${url} within ${STARTUP_TIMEOUT_MS} ms`,
    await tail(logPath),
    { cause: lastError },
  );
}

async function stopProcess(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;

  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), STOP_TIMEOUT_MS);
  await exited;
  clearTimeout(timer);
}

/** Binds `count` ephemeral loopback ports at once (so they differ), then releases them. */
async function findFreePorts(count: number): Promise<number[]> {
  const servers = Array.from({ length: count }, () => createServer());
  const ports = await Promise.all(
    servers.map(
      (server) =>
        new Promise<number>((resolve, reject) => {
          server.once('error', reject);
          server.listen(0, '127.0.0.1', () => {
            const address = server.address();
            if (address === null || typeof address === 'string') reject(new Error('no port'));
            else resolve(address.port);
          });
        }),
    ),
  );
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

function httpsGet(url: string, ca: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    // agent: false so no keep-alive socket outlives the request and holds the test process open.
    const request = get(url, { ca, agent: false, timeout: REQUEST_TIMEOUT_MS }, (response) => {
      let body = '';
      response.setEncoding('utf8');
      response.on('data', (chunk: string) => (body += chunk));
      response.on('end', () => resolve({ status: response.statusCode ?? 0, body }));
      response.on('error', reject);
    });
    request.on('timeout', () => request.destroy(new Error(`timed out requesting ${url}`)));
    request.on('error', reject);
  });
}

async function fetchPem(url: string, ca: string): Promise<string> {
  const response = await httpsGet(url, ca);
  if (response.status !== 200) throw new Error(`HTTP ${response.status} from ${url}`);
  return response.body.trim();
}

async function tail(path: string, lines = 30): Promise<string> {
  const text = await readFile(path, 'utf8').catch(() => '');
  return text.trimEnd().split('\n').slice(-lines).join('\n');
}

// --- pebble's API certificate -------------------------------------------------------------
//
// Made with node:crypto alone: @peculiar/x509 throws at import unless a Reflect metadata polyfill
// is loaded first (the project does not depend on one), and openssl may be absent. The two
// certificates (a CA, and a localhost/127.0.0.1 leaf it signs) are DER-encoded by hand with only
// what TLS verifiers check, all ECDSA P-256 / SHA-256. Checked with `openssl verify -x509_strict`,
// Go (pebble loads them), Python (certbot) and Node.

const OID = {
  commonName: '2.5.4.3',
  ecdsaWithSha256: '1.2.840.10045.4.3.2',
  subjectKeyIdentifier: '2.5.29.14',
  keyUsage: '2.5.29.15',
  subjectAltName: '2.5.29.17',
  basicConstraints: '2.5.29.19',
  authorityKeyIdentifier: '2.5.29.35',
  extendedKeyUsage: '2.5.29.37',
  serverAuth: '1.3.6.1.5.5.7.3.1',
};
const CERT_LIFETIME_MS = 7 * 24 * 3600 * 1000;

/** Writes `api-ca.pem`, `api-cert.pem` and `api-key.pem` for pebble's HTTPS listeners. */
async function writeApiCertificate(dir: string): Promise<ApiCertificate> {
  const caKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const leafKeys = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const caKeyId = keyIdentifier(caKeys.publicKey);

  const caCert = signCertificate({
    subject: 'certsync test pebble API CA',
    issuer: 'certsync test pebble API CA',
    publicKey: caKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      extension(OID.basicConstraints, true, sequence(boolean(true))),
      extension(OID.keyUsage, true, bitString(Buffer.from([0x06]), 1)), // keyCertSign, cRLSign
      extension(OID.subjectKeyIdentifier, false, octetString(caKeyId)),
    ],
  });
  const leafCert = signCertificate({
    subject: 'localhost',
    issuer: 'certsync test pebble API CA',
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      extension(OID.basicConstraints, true, sequence()),
      extension(OID.keyUsage, true, bitString(Buffer.from([0x80]), 7)), // digitalSignature
      extension(OID.extendedKeyUsage, false, sequence(objectId(OID.serverAuth))),
      extension(OID.authorityKeyIdentifier, false, sequence(tlv(0x80, caKeyId))),
      extension(
        OID.subjectAltName,
        false,
        sequence(tlv(0x82, Buffer.from('localhost')), tlv(0x87, Buffer.from([127, 0, 0, 1]))),
      ),
    ],
  });

  const paths = {
    caPath: join(dir, 'api-ca.pem'),
    certPath: join(dir, 'api-cert.pem'),
    keyPath: join(dir, 'api-key.pem'),
  };
  await writeFile(paths.caPath, toPem('CERTIFICATE', caCert));
  // The chain lets clients that were handed only the leaf still build a path to the CA.
  await writeFile(paths.certPath, toPem('CERTIFICATE', leafCert) + toPem('CERTIFICATE', caCert));
  await writeFile(paths.keyPath, leafKeys.privateKey.export({ type: 'pkcs8', format: 'pem' }), {
    mode: 0o600,
  });
  return paths;
}

interface CertificateParams {
  subject: string;
  issuer: string;
  publicKey: KeyObject;
  signingKey: KeyObject;
  extensions: Buffer[];
}

function signCertificate(params: CertificateParams): Buffer {
  const algorithm = sequence(objectId(OID.ecdsaWithSha256));
  const now = Date.now();
  const tbs = sequence(
    tlv(0xa0, integer(Buffer.from([2]))), // version v3
    integer(serialNumber()),
    algorithm,
    name(params.issuer),
    sequence(utcTime(new Date(now - 3600_000)), utcTime(new Date(now + CERT_LIFETIME_MS))),
    name(params.subject),
    params.publicKey.export({ type: 'spki', format: 'der' }),
    tlv(0xa3, sequence(...params.extensions)),
  );
  const signature = sign('sha256', tbs, params.signingKey); // DER ECDSA-Sig-Value, as X.509 wants
  return sequence(tbs, algorithm, bitString(signature, 0));
}

/** 16 random bytes, positive, with no leading zero byte: Go rejects non-minimal DER integers. */
function serialNumber(): Buffer {
  const bytes = randomBytes(16);
  bytes[0] = ((bytes[0] ?? 0) & 0x7f) | 0x01;
  return bytes;
}

function keyIdentifier(publicKey: KeyObject): Buffer {
  return createHash('sha1')
    .update(publicKey.export({ type: 'spki', format: 'der' }))
    .digest();
}

function toPem(label: string, der: Buffer): string {
  const lines = der.toString('base64').match(/.{1,64}/g) ?? [];
  return `-----BEGIN ${label}-----\n${lines.join('\n')}\n-----END ${label}-----\n`;
}

function tlv(tag: number, ...contents: Buffer[]): Buffer {
  const body = Buffer.concat(contents);
  if (body.length < 0x80) return Buffer.concat([Buffer.from([tag, body.length]), body]);
  const length: number[] = [];
  for (let rest = body.length; rest > 0; rest >>>= 8) length.unshift(rest & 0xff);
  return Buffer.concat([Buffer.from([tag, 0x80 | length.length, ...length]), body]);
}

const sequence = (...items: Buffer[]) => tlv(0x30, ...items);
const boolean = (value: boolean) => tlv(0x01, Buffer.from([value ? 0xff : 0x00]));
const octetString = (bytes: Buffer) => tlv(0x04, bytes);
const bitString = (bytes: Buffer, unusedBits: number) =>
  tlv(0x03, Buffer.from([unusedBits]), bytes);
const integer = (bytes: Buffer) =>
  tlv(0x02, (bytes[0] ?? 0) & 0x80 ? Buffer.concat([Buffer.from([0]), bytes]) : bytes);
const name = (commonName: string) =>
  sequence(tlv(0x31, sequence(objectId(OID.commonName), tlv(0x0c, Buffer.from(commonName)))));
const extension = (oid: string, critical: boolean, value: Buffer) =>
  sequence(objectId(oid), ...(critical ? [boolean(true)] : []), octetString(value));

function utcTime(date: Date): Buffer {
  // YYMMDDHHMMSSZ; UTCTime is the required form for dates before 2050.
  const text = date.toISOString().replace(/[-:T]/g, '').slice(2, 14) + 'Z';
  return tlv(0x17, Buffer.from(text));
}

function objectId(dotted: string): Buffer {
  const [first = 0, second = 0, ...rest] = dotted.split('.').map(Number);
  const bytes = [first * 40 + second];
  for (const arc of rest) {
    const base128 = [arc & 0x7f];
    for (let value = arc >>> 7; value > 0; value >>>= 7) base128.unshift((value & 0x7f) | 0x80);
    bytes.push(...base128);
  }
  return tlv(0x06, Buffer.from(bytes));
}
