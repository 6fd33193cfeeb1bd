import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readlink, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test, type TestContext } from 'node:test';

import { createCertbot } from '../support/certbot.js';
import { startPebble, type Pebble } from '../support/pebble.js';
import { checkTools } from '../support/tools.js';

// Self-test of the ACME harness alone: a real certbot against a real pebble must write and then
// renew the live/ → archive/ symlink tree that certsync-server watches.

const tools = checkTools(['pebble', 'certbot']);
const LINEAGE = 'example.test';
const DOMAINS = ['*.example.test', 'example.test'];
const TEST_NAME = 'certbot issues and renews a wildcard lineage from pebble';

test(TEST_NAME, { skip: tools.skip, timeout: 180_000 }, async (t) => {
  tools.require();
  // Kept when the test fails, so pebble.log and certbot's logs can be read.
  const workDir = await mkdtemp(join(tmpdir(), 'certsync-pebble-'));
  t.diagnostic(`work dir: ${workDir}`);

  const pebble = await timed(t, 'pebble start', () => startPebble(workDir));
  t.after(() => pebble.stop());
  const { directoryUrl, apiCaPath } = pebble;
  const certbot = createCertbot({ workDir, directoryUrl, apiCaPath });
  const fullchainLink = join(certbot.liveDir(LINEAGE), 'fullchain.pem');

  await timed(t, 'certbot issue', () => certbot.issue(LINEAGE, DOMAINS));
  assert.equal(await readlink(fullchainLink), `../../archive/${LINEAGE}/fullchain1.pem`);
  const issued = await readLeaf(fullchainLink);
  assert.deepEqual(dnsNames(issued), [...DOMAINS].sort());
  const intermediate = await readIntermediate(pebble);
  assert.ok(issued.verify(intermediate.publicKey), 'leaf not signed by pebble');

  await timed(t, 'certbot renew', () => certbot.renew());
  assert.equal(await readlink(fullchainLink), `../../archive/${LINEAGE}/fullchain2.pem`);
  const renewed = await readLeaf(fullchainLink);
  assert.notEqual(renewed.fingerprint256, issued.fingerprint256);
  assert.notEqual(renewed.serialNumber, issued.serialNumber);
  assert.deepEqual(dnsNames(renewed), [...DOMAINS].sort());

  await pebble.stop();
  await rm(workDir, { recursive: true, force: true });
});

/** Runs one phase and prints its duration as a test diagnostic, so timings show in CI logs. */
async function timed<T>(t: TestContext, phase: string, run: () => Promise<T>): Promise<T> {
  const startMs = performance.now();
  const result = await run();
  t.diagnostic(`${phase}: ${Math.round(performance.now() - startMs)} ms`);
  return result;
}

/** The first certificate of a PEM file: the leaf of a fullchain. */
async function readLeaf(path: string): Promise<X509Certificate> {
  return new X509Certificate(await readFile(path));
}

async function readIntermediate(pebble: Pebble): Promise<X509Certificate> {
  const [, intermediate] = (await pebble.fetchRoots()).split(/(?=-----BEGIN CERTIFICATE-----)/);
  assert.ok(intermediate, 'pebble returned no intermediate');
  return new X509Certificate(intermediate);
}

function dnsNames(certificate: X509Certificate): string[] {
  const names = certificate.subjectAltName?.split(', ') ?? [];
  return names.map((entry) => entry.replace(/^DNS:/, '')).sort();
}
