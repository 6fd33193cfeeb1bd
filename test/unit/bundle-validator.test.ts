import assert from 'node:assert/strict';
import { createPublicKey, X509Certificate } from 'node:crypto';
import { before, describe, test } from 'node:test';

import { sha256Hex } from '../../common/digest';
import {
  BundleValidationError,
  validateBundle,
  type CandidateFile,
  type ValidatedBundle,
} from '../../server/bundle-validator';
import {
  createIntermediateCa,
  createRootCa,
  createWildcardSet,
  encodeEcParameters,
  encodePrivateKey,
  issueLeaf,
  type IssuedCertificate,
  type PrivateKeyFormat,
} from '../support/pki';

type WildcardSet = Awaited<ReturnType<typeof createWildcardSet>>;

const SOURCE_DIR = '/etc/letsencrypt/live/example.test';
const DAY_MS = 24 * 60 * 60 * 1000;

function candidate(source: string, content: string | Buffer): CandidateFile {
  return {
    source,
    path: `${SOURCE_DIR}/${source}`,
    target: `/certs/${source}`,
    mode: source.startsWith('privkey') ? 0o600 : 0o644,
    content: Buffer.isBuffer(content) ? content : Buffer.from(content),
  };
}

function fullchainBundle(set: WildcardSet, privkey = set.pems.privkey): CandidateFile[] {
  return [candidate('fullchain.pem', set.pems.fullchain), candidate('privkey.pem', privkey)];
}

function validate(
  files: CandidateFile[],
  expectNames: string[] = [],
  now = new Date(),
  requireChain = true,
): ValidatedBundle {
  return validateBundle(files, { expectNames, now, requireChain });
}

/** Runs a validation that must fail and returns the error after checking its reason. */
function rejection(run: () => unknown, reason: string): BundleValidationError {
  try {
    run();
  } catch (error) {
    assert.ok(
      error instanceof BundleValidationError,
      `expected BundleValidationError: ${String(error)}`,
    );
    assert.equal(error.reason, reason, error.message);
    return error;
  }
  assert.fail(`expected a '${reason}' rejection, but the bundle was accepted`);
}

/** Every 12-character run of base64 in a PEM; no error text may contain any of them. */
function base64Windows(pem: string): string[] {
  const windows: string[] = [];
  for (const line of pem.split('\n').filter((text) => /^[A-Za-z0-9+/=]{12,}$/.test(text))) {
    for (let start = 0; start + 12 <= line.length; start += 4)
      windows.push(line.slice(start, start + 12));
  }
  return windows;
}

function assertNoKeyMaterial(error: BundleValidationError, keyPems: string[]): void {
  const texts = [error.message, error.cause instanceof Error ? error.cause.message : ''];
  for (const window of keyPems.flatMap(base64Windows)) {
    for (const text of texts)
      assert.ok(!text.includes(window), `error text contains key base64: ${text}`);
  }
}

describe('validateBundle', () => {
  let ec: WildcardSet;
  let rsa: WildcardSet;
  let ed25519: WildcardSet;
  let other: WildcardSet;

  before(async () => {
    [ec, rsa, ed25519, other] = await Promise.all([
      createWildcardSet(),
      createWildcardSet({ keyType: 'rsa' }),
      createWildcardSet({ keyType: 'ed25519' }),
      createWildcardSet({ domain: 'other.test' }),
    ]);
  });

  describe('accepts', () => {
    test('an EC wildcard fullchain + privkey with the right leaf summary and chain', () => {
      const result = validate(fullchainBundle(ec), [
        'example.test',
        'www.example.test',
        '*.example.test',
      ]);

      const leafX509 = new X509Certificate(ec.leaf.certPem);
      assert.equal(result.leaf.fingerprintSha256, ec.leaf.fingerprintSha256);
      assert.equal(
        result.leaf.fingerprintSha256,
        leafX509.fingerprint256.replaceAll(':', '').toLowerCase(),
      );
      assert.equal(result.leaf.subject, 'CN=*.example.test');
      assert.equal(result.leaf.issuer, 'CN=certsync test intermediate CA');
      assert.deepEqual(result.leaf.dnsNames, ['*.example.test', 'example.test']);
      assert.equal(result.leaf.serial, leafX509.serialNumber.toLowerCase());
      assert.equal(result.leaf.notAfter.getTime(), new Date(leafX509.validTo).getTime());
      assert.equal(result.leaf.notBefore.getTime(), new Date(leafX509.validFrom).getTime());
      assert.deepEqual(
        result.chain.map((summary) => summary.fingerprintSha256),
        [ec.intermediate.fingerprintSha256],
      );
      assert.equal(result.chain[0]?.issuer, 'CN=certsync test root CA');
      assert.equal(result.keyType, 'ec P-256');
      assert.deepEqual(result.warnings, []);
    });

    test('the cert.pem + chain.pem + privkey.pem layout', () => {
      const files = [
        candidate('cert.pem', ec.pems.cert),
        candidate('chain.pem', ec.pems.chain),
        candidate('privkey.pem', ec.pems.privkey),
      ];
      const result = validate(files, ['example.test']);

      assert.equal(result.leaf.fingerprintSha256, ec.leaf.fingerprintSha256);
      assert.deepEqual(
        result.chain.map((summary) => summary.fingerprintSha256),
        [ec.intermediate.fingerprintSha256],
      );
      assert.deepEqual(result.warnings, []);
    });

    test('cert.pem next to fullchain.pem, taking the chain from the fullchain', () => {
      const files = [
        candidate('cert.pem', ec.pems.cert),
        candidate('fullchain.pem', ec.pems.fullchain),
        candidate('privkey.pem', ec.pems.privkey),
      ];
      const result = validate(files);

      assert.equal(result.leaf.fingerprintSha256, ec.leaf.fingerprintSha256);
      assert.equal(result.chain.length, 1);
    });

    const keyEncodings: Array<{
      name: string;
      set: () => WildcardSet;
      format: PrivateKeyFormat;
      keyType: string;
      ecParameters?: boolean;
    }> = [
      { name: 'RSA PKCS#1', set: () => rsa, format: 'pkcs1', keyType: 'rsa 2048' },
      { name: 'RSA PKCS#8', set: () => rsa, format: 'pkcs8', keyType: 'rsa 2048' },
      { name: 'EC SEC1', set: () => ec, format: 'sec1', keyType: 'ec P-256' },
      {
        name: 'EC SEC1 after EC PARAMETERS',
        set: () => ec,
        format: 'sec1',
        keyType: 'ec P-256',
        ecParameters: true,
      },
      { name: 'EC PKCS#8', set: () => ec, format: 'pkcs8', keyType: 'ec P-256' },
      { name: 'Ed25519 PKCS#8', set: () => ed25519, format: 'pkcs8', keyType: 'ed25519' },
    ];
    for (const encoding of keyEncodings) {
      test(`a ${encoding.name} private key`, () => {
        const set = encoding.set();
        const key = set.leaf.privateKey;
        const privkey =
          (encoding.ecParameters ? encodeEcParameters(key) : '') +
          encodePrivateKey(key, encoding.format);
        const result = validate(fullchainBundle(set, privkey), ['example.test']);

        assert.equal(result.keyType, encoding.keyType);
        assert.equal(result.leaf.fingerprintSha256, set.leaf.fingerprintSha256);
      });
    }

    test('a bundle without a key, assuming the first certificate is the leaf and warning', () => {
      const result = validate([candidate('fullchain.pem', ec.pems.fullchain)]);

      assert.equal(result.leaf.fingerprintSha256, ec.leaf.fingerprintSha256);
      assert.equal(result.keyType, 'ec P-256');
      assert.equal(result.warnings.length, 1);
      assert.match(result.warnings[0] ?? '', /no private key in the bundle/);
    });
  });

  describe('warns', () => {
    test('about a leaf with no intermediate that is not self-signed, with requireChain off', () => {
      const result = validate(
        [candidate('cert.pem', ec.pems.cert), candidate('privkey.pem', ec.pems.privkey)],
        [],
        new Date(),
        false,
      );

      assert.equal(result.chain.length, 0);
      assert.equal(result.warnings.length, 1);
      assert.match(result.warnings[0] ?? '', /missing intermediate\?/);
    });

    test('not about a self-signed certificate on its own', async () => {
      const selfSigned = await createRootCa({ commonName: 'self.example.test' });
      const result = validate([
        candidate('cert.pem', selfSigned.certPem),
        candidate('privkey.pem', selfSigned.keyPem),
      ]);

      assert.deepEqual(result.warnings, []);
    });

    test('nothing and keeps an empty chain for a self-signed cert repeated in two files', async () => {
      const selfSigned = await createRootCa({ commonName: 'self.example.test' });
      const files = [
        candidate('cert.pem', selfSigned.certPem),
        candidate('fullchain.pem', selfSigned.certPem),
        candidate('privkey.pem', selfSigned.keyPem),
      ];
      const result = validate(files);

      assert.deepEqual(result.chain, []);
      assert.deepEqual(result.warnings, []);
    });

    test('about a leaf that expires within 7 days', () => {
      const notAfter = new Date(new X509Certificate(ec.leaf.certPem).validTo);
      const result = validate(fullchainBundle(ec), [], new Date(notAfter.getTime() - 3 * DAY_MS));

      assert.equal(result.warnings.length, 1);
      assert.match(
        result.warnings[0] ?? '',
        new RegExp(`expires soon, at ${notAfter.toISOString()}`),
      );
    });

    test('about text outside blocks and CRLF line endings, naming the file', () => {
      const fullchain = `Bag Attributes\n${ec.pems.fullchain}`.replaceAll('\n', '\r\n');
      const result = validate(
        fullchainBundle(ec).map((file) =>
          file.source === 'fullchain.pem' ? candidate('fullchain.pem', fullchain) : file,
        ),
      );

      assert.deepEqual(result.warnings, [
        `${SOURCE_DIR}/fullchain.pem: text outside PEM blocks at line(s) 1`,
        `${SOURCE_DIR}/fullchain.pem: CRLF line endings`,
      ]);
    });
  });

  describe('rejects', () => {
    test('a key that does not match the certificate, naming SPKI, fingerprint and paths', () => {
      const error = rejection(
        () => validate(fullchainBundle(ec, other.pems.privkey)),
        'key-mismatch',
      );

      const keySpki = createPublicKey(other.leaf.privateKey).export({
        type: 'spki',
        format: 'der',
      });
      assert.ok(error.message.includes(sha256Hex(keySpki).slice(0, 16)), error.message);
      assert.ok(error.message.includes(ec.leaf.fingerprintSha256), error.message);
      assert.ok(error.message.includes(`${SOURCE_DIR}/privkey.pem`), error.message);
      assert.ok(error.message.includes(`${SOURCE_DIR}/fullchain.pem`), error.message);
      assert.equal(error.path, `${SOURCE_DIR}/privkey.pem`);
      assertNoKeyMaterial(error, [other.pems.privkey, ec.pems.privkey]);
    });

    test('an empty file, naming its path', () => {
      const files = [candidate('fullchain.pem', ec.pems.fullchain), candidate('privkey.pem', '')];
      const error = rejection(() => validate(files), 'empty-file');

      assert.equal(error.path, `${SOURCE_DIR}/privkey.pem`);
      assert.ok(error.message.startsWith(`${SOURCE_DIR}/privkey.pem is empty (`), error.message);
    });

    test('a file holding only whitespace as empty', () => {
      const files = [candidate('fullchain.pem', '\n\n'), candidate('privkey.pem', ec.pems.privkey)];

      rejection(() => validate(files), 'empty-file');
    });

    test('a fullchain truncated inside its second block', () => {
      const fullchain = ec.pems.fullchain;
      const cut = fullchain.slice(0, ec.pems.cert.length + 100);
      const error = rejection(
        () =>
          validate(
            fullchainBundle(ec).map((file) =>
              file.source === 'fullchain.pem' ? candidate('fullchain.pem', cut) : file,
            ),
          ),
        'pem-invalid',
      );

      assert.equal(error.path, `${SOURCE_DIR}/fullchain.pem`);
      assert.match(
        error.message,
        /block 'CERTIFICATE' starting at line \d+ is not terminated \(file truncated\?\)/,
      );
    });

    test('a private key truncated inside its block, without echoing the key', () => {
      const cut = ec.pems.privkey.slice(0, 80);
      const error = rejection(() => validate(fullchainBundle(ec, cut)), 'pem-invalid');

      assert.match(
        error.message,
        /privkey\.pem: block 'PRIVATE KEY' starting at line 1 is not terminated/,
      );
      assertNoKeyMaterial(error, [ec.pems.privkey]);
    });

    test('a file with no PEM blocks at all', () => {
      const error = rejection(() => validate(fullchainBundle(ec, 'not a key\n')), 'pem-invalid');

      assert.match(error.message, /no PEM blocks/);
    });

    test('a fullchain with the leaf after its intermediate, naming both certificates', () => {
      const files = fullchainBundle(ec).map((file) =>
        file.source === 'fullchain.pem'
          ? candidate('fullchain.pem', ec.pems.chain + ec.pems.cert)
          : file,
      );
      const error = rejection(() => validate(files), 'leaf-not-first');

      assert.ok(error.message.includes(ec.intermediate.fingerprintSha256), error.message);
      assert.ok(error.message.includes(ec.leaf.fingerprintSha256), error.message);
      assert.ok(error.message.includes('CN=certsync test intermediate CA'), error.message);
      assert.ok(error.message.includes('CN=*.example.test'), error.message);
      assert.match(error.message, /List the leaf first/);
    });

    test('a fullchain without a key in the wrong order, naming both certificates', () => {
      const files = [candidate('fullchain.pem', ec.pems.chain + ec.pems.cert)];
      const error = rejection(() => validate(files), 'chain-invalid');

      assert.ok(error.message.includes(ec.intermediate.fingerprintSha256), error.message);
      assert.ok(error.message.includes(ec.leaf.fingerprintSha256), error.message);
      assert.match(error.message, /is not issued by/);
    });

    test('a leaf whose issuer is in no file of the bundle', () => {
      const files = [
        candidate('cert.pem', ec.pems.cert),
        candidate('privkey.pem', ec.pems.privkey),
      ];
      const error = rejection(() => validate(files), 'chain-incomplete');

      assert.ok(error.message.includes(ec.leaf.fingerprintSha256), error.message);
      assert.match(error.message, /issued by 'CN=certsync test intermediate CA'/);
    });

    /** The leaf with one bit of its signature flipped: same names and key, bad signature. */
    function tamperedLeafPem(set: WildcardSet): string {
      const der = Buffer.from(new X509Certificate(set.leaf.certPem).raw);
      der[der.length - 1] = (der[der.length - 1] ?? 0) ^ 0x01;
      return new X509Certificate(der).toString();
    }

    test('a leaf whose signature does not verify against the intermediate after it', () => {
      const files = fullchainBundle(ec).map((file) =>
        file.source === 'fullchain.pem'
          ? candidate('fullchain.pem', tamperedLeafPem(ec) + ec.pems.chain)
          : file,
      );
      const error = rejection(() => validate(files), 'chain-invalid');

      assert.match(error.message, /has a signature that does not verify against/);
    });

    test('a cert.pem whose signature does not verify against chain.pem', () => {
      const files = [
        candidate('cert.pem', tamperedLeafPem(ec)),
        candidate('chain.pem', ec.pems.chain),
        candidate('privkey.pem', ec.pems.privkey),
      ];
      const error = rejection(() => validate(files), 'chain-invalid');

      assert.match(
        error.message,
        /has a signature that does not verify against .* in \/etc\/letsencrypt\/live\/example\.test\/chain\.pem/,
      );
    });

    test('a fullchain whose intermediate did not issue the leaf', () => {
      const files = fullchainBundle(ec).map((file) =>
        file.source === 'fullchain.pem'
          ? candidate('fullchain.pem', ec.pems.cert + other.pems.chain)
          : file,
      );

      rejection(() => validate(files), 'chain-invalid');
    });

    test('an expired leaf, with the dates in ISO form', async () => {
      const notAfter = new Date(Date.now() - DAY_MS);
      const expired = await createWildcardSet({ notAfter });
      const error = rejection(() => validate(fullchainBundle(expired)), 'expired');

      const expectedNotAfter = new Date(Math.floor(notAfter.getTime() / 1000) * 1000).toISOString();
      assert.ok(error.message.includes(`expired at ${expectedNotAfter}`), error.message);
    });

    test('a leaf checked at a time past its notAfter', () => {
      const later = new Date(Date.now() + 100 * DAY_MS);

      rejection(() => validate(fullchainBundle(ec), [], later), 'expired');
    });

    test('a leaf that is not valid yet', () => {
      const notBefore = new Date(new X509Certificate(ec.leaf.certPem).validFrom);
      const error = rejection(
        () => validate(fullchainBundle(ec), [], new Date(notBefore.getTime() - 60_000)),
        'not-yet-valid',
      );

      assert.ok(
        error.message.includes(`not valid until ${notBefore.toISOString()}`),
        error.message,
      );
    });

    test('expected names the leaf does not cover, listing them and the SANs present', () => {
      const error = rejection(
        () => validate(fullchainBundle(ec), ['example.test', 'other.test', 'a.b.example.test']),
        'names-missing',
      );

      assert.match(
        error.message,
        /does not cover other\.test, a\.b\.example\.test \(its DNS names: \*\.example\.test, example\.test\)/,
      );
    });

    const encryptedFormats: Array<{
      name: string;
      set: () => WildcardSet;
      format: PrivateKeyFormat;
    }> = [
      { name: 'PKCS#8 encrypted', set: () => ec, format: 'pkcs8-encrypted' },
      { name: 'legacy encrypted SEC1', set: () => ec, format: 'legacy-encrypted' },
      { name: 'legacy encrypted PKCS#1', set: () => rsa, format: 'legacy-encrypted' },
    ];
    for (const encrypted of encryptedFormats) {
      test(`a ${encrypted.name} key, asking for an unencrypted one`, () => {
        const set = encrypted.set();
        const privkey = encodePrivateKey(set.leaf.privateKey, encrypted.format);
        const error = rejection(() => validate(fullchainBundle(set, privkey)), 'encrypted-key');

        assert.match(error.message, /supply an unencrypted key/);
        assert.equal(error.path, `${SOURCE_DIR}/privkey.pem`);
        assertNoKeyMaterial(error, [privkey]);
      });
    }

    test("certbot's four files caught half-way: new cert.pem and key, old fullchain.pem", async () => {
      const renewed = await issueLeaf(ec.intermediate, {
        commonName: '*.example.test',
        dnsNames: ['*.example.test'],
      });
      const files = [
        candidate('cert.pem', renewed.certPem),
        candidate('privkey.pem', renewed.keyPem),
        candidate('chain.pem', ec.pems.chain),
        candidate('fullchain.pem', ec.pems.fullchain),
      ];
      const error = rejection(() => validate(files), 'files-disagree');
      assert.match(error.message, /fullchain\.pem starts with the leaf .*different renewals/);
      assert.ok(error.message.includes(ec.leaf.fingerprintSha256), 'names the old leaf');
      assert.ok(error.message.includes(renewed.fingerprintSha256), 'names the new leaf');
      // Once certbot has swapped the last link the same files are one renewal again.
      const finished = [
        ...files.slice(0, 3),
        candidate('fullchain.pem', renewed.certPem + ec.pems.chain),
      ];
      assert.equal(validate(finished).leaf.fingerprintSha256, renewed.fingerprintSha256);
    });

    test('a chain.pem from another CA next to cert.pem and fullchain.pem', () => {
      const files = [
        candidate('cert.pem', ec.pems.cert),
        candidate('privkey.pem', ec.pems.privkey),
        candidate('chain.pem', other.pems.chain),
        candidate('fullchain.pem', ec.pems.fullchain),
      ];
      const error = rejection(() => validate(files), 'files-disagree');
      assert.match(
        error.message,
        /chain\.pem starts with the CA certificate .*not in the leaf's issuer chain/,
      );
    });

    test('a new cert.pem from another intermediate next to the old chain.pem', async () => {
      // Let's Encrypt signs each order with one of several intermediates; a chain.pem left from
      // the last renewal then belongs to another issuer, by name or (re-keyed) by key only.
      const renamed = await createIntermediateCa(ec.root, { commonName: 'another intermediate' });
      const rekeyed = await createIntermediateCa(ec.root);
      for (const issuer of [renamed, rekeyed]) {
        const leaf = await issueLeaf(issuer, { dnsNames: ['*.example.test'] });
        const files = [
          candidate('cert.pem', leaf.certPem),
          candidate('chain.pem', ec.pems.chain),
          candidate('privkey.pem', leaf.keyPem),
        ];
        const error = rejection(() => validate(files, [], new Date(), false), 'files-disagree');
        assert.match(error.message, /chain\.pem starts with the CA certificate/);
      }
    });

    test('an old cert.pem and key next to a fullchain.pem from the next renewal', async () => {
      const next = await issueLeaf(ec.intermediate, {
        commonName: '*.example.test',
        dnsNames: ['*.example.test'],
      });
      const files = [
        candidate('cert.pem', ec.pems.cert),
        candidate('privkey.pem', ec.pems.privkey),
        candidate('fullchain.pem', next.certPem + ec.pems.chain),
      ];
      const error = rejection(() => validate(files), 'files-disagree');
      assert.ok(error.message.includes(next.fingerprintSha256), 'names the stray leaf');
    });

    test('two private keys in one bundle', () => {
      const files = [
        candidate('fullchain.pem', ec.pems.fullchain + ec.pems.privkey),
        candidate('privkey.pem', ec.pems.privkey),
      ];
      const error = rejection(() => validate(files), 'multiple-private-keys');

      assertNoKeyMaterial(error, [ec.pems.privkey]);
    });

    test('a bundle with a key but no certificate', () => {
      rejection(() => validate([candidate('privkey.pem', ec.pems.privkey)]), 'no-certificate');
    });

    test('a key block that does not decode as a key, without echoing it', () => {
      const garbage = Buffer.alloc(48, 7).toString('base64');
      const privkey = `-----BEGIN PRIVATE KEY-----\n${garbage}\n-----END PRIVATE KEY-----\n`;
      const error = rejection(() => validate(fullchainBundle(ec, privkey)), 'key-invalid');

      assert.ok(!error.message.includes(garbage.slice(0, 12)), error.message);
    });
  });

  describe('expected-name coverage', () => {
    let leafIssuer: IssuedCertificate;
    before(async () => {
      leafIssuer = await createIntermediateCa(await createRootCa());
    });

    async function covered(sans: string[], expected: string): Promise<boolean> {
      const leaf = await issueLeaf(leafIssuer, { dnsNames: sans });
      try {
        validate(
          [
            candidate('fullchain.pem', leaf.certPem + leafIssuer.certPem),
            candidate('privkey.pem', leaf.keyPem),
          ],
          [expected],
        );
        return true;
      } catch (error) {
        if (error instanceof BundleValidationError && error.reason === 'names-missing')
          return false;
        throw error;
      }
    }

    const cases: Array<[sans: string[], expected: string, isCovered: boolean]> = [
      [['*.example.test'], 'www.example.test', true],
      [['*.example.test'], 'WWW.Example.TEST', true],
      [['*.EXAMPLE.test'], 'api.example.test', true],
      [['*.example.test'], 'a.b.example.test', false],
      [['*.example.test'], 'example.test', false],
      [['*.example.test'], '*.example.test', true],
      [['www.example.test'], '*.example.test', false],
      [['*.www.example.test'], '*.example.test', false],
      [['www.example.test'], 'WWW.EXAMPLE.TEST', true],
      [['www.example.test'], 'api.example.test', false],
    ];
    for (const [sans, expected, isCovered] of cases) {
      test(`SANs ${sans.join(',')} ${isCovered ? 'cover' : 'do not cover'} ${expected}`, async () => {
        assert.equal(await covered(sans, expected), isCovered);
      });
    }
  });
});
