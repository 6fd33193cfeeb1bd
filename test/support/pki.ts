import { KeyObject, X509Certificate, webcrypto } from 'node:crypto';
import type * as X509 from '@peculiar/x509';

import { sha256Hex } from '../../common/digest';

/**
 * Certificate fixtures made at test time, so no private key is ever committed and no openssl
 * binary is needed. Keys default to EC P-256 because tests create many and RSA is slow to make.
 */

export type KeyType = 'rsa' | 'ec' | 'ed25519';

/** A certificate with its key, in the shapes tests need: PEM for files, KeyObject for signing. */
export interface IssuedCertificate {
  certPem: string;
  /** PKCS#8 PEM. */
  keyPem: string;
  privateKey: KeyObject;
  /** Lower-case hex SHA-256 of the certificate DER. */
  fingerprintSha256: string;
}

/** What a test may want to control about one certificate; everything else gets a sane default. */
export interface CertificateOptions {
  commonName?: string;
  dnsNames?: string[];
  keyType?: KeyType;
  notBefore?: Date;
  notAfter?: Date;
  /** Hex; random when absent. */
  serialNumber?: string;
  /** IP address SANs (leaf only), e.g. 127.0.0.1 for a loopback server. */
  ipAddresses?: string[];
}

/** The four files certbot writes for one lineage. */
export interface CertbotPemSet {
  cert: string;
  chain: string;
  fullchain: string;
  privkey: string;
}

/** Every encoding of a private key that operators hand us and the validator must tell apart. */
export type PrivateKeyFormat = 'pkcs8' | 'pkcs1' | 'sec1' | 'pkcs8-encrypted' | 'legacy-encrypted';

/** The passphrase encodePrivateKey uses for the encrypted formats. */
export const TEST_KEY_PASSPHRASE = 'certsync-test-passphrase';

const HOUR_MS = 60 * 60 * 1000;
const DEFAULT_VALIDITY_MS = 90 * 24 * HOUR_MS;
const SERVER_AUTH_OID = '1.3.6.1.5.5.7.3.1';
const CLIENT_AUTH_OID = '1.3.6.1.5.5.7.3.2';

/**
 * Workaround: @peculiar/x509 loads tsyringe, which throws at require time ("tsyringe requires a
 * reflect polyfill") unless `Reflect.getMetadata` exists, and the project does not depend on
 * reflect-metadata. This installs the four metadata functions tsyringe and tslib's decorator
 * helpers call, before the library is first required. If a real polyfill is loaded first, it is
 * left alone; if this stops being needed, nothing breaks: the guard simply never fires.
 */
function installReflectMetadata(): void {
  const reflect = Reflect as unknown as Record<string, unknown>;
  if (typeof reflect['getMetadata'] === 'function') {
    return;
  }
  const store = new WeakMap<object, Map<unknown, unknown>>();
  const ownMap = (target: object): Map<unknown, unknown> => {
    let map = store.get(target);
    if (map === undefined) {
      map = new Map();
      store.set(target, map);
    }
    return map;
  };
  const defineMetadata = (key: unknown, value: unknown, target: object): void => {
    ownMap(target).set(key, value);
  };
  const getOwnMetadata = (key: unknown, target: object): unknown => store.get(target)?.get(key);
  const getMetadata = (key: unknown, target: object): unknown => {
    for (let current: object | null = target; current !== null;) {
      const map = store.get(current);
      if (map?.has(key)) {
        return map.get(key);
      }
      current = Object.getPrototypeOf(current) as object | null;
    }
    return undefined;
  };
  const metadata =
    (key: unknown, value: unknown) =>
    (target: object): void =>
      defineMetadata(key, value, target);
  Object.assign(reflect, { defineMetadata, getOwnMetadata, getMetadata, metadata });
}

/** The WebCrypto type the library declares; Node's webcrypto is that at run time. */
type Crypto = Parameters<typeof X509.cryptoProvider.set>[0];
type WebCryptoKey = webcrypto.CryptoKey;

let x509Library: typeof X509 | undefined;

/** The library, required lazily so the Reflect workaround above runs first. */
function loadX509(): typeof X509 {
  if (x509Library === undefined) {
    installReflectMetadata();
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const library = require('@peculiar/x509') as typeof X509;
    library.cryptoProvider.set(webcrypto as unknown as Crypto);
    x509Library = library;
  }
  return x509Library;
}

/** The WebCrypto algorithm for generating and importing a key of one type. */
function keyAlgorithm(
  keyType: KeyType,
): webcrypto.RsaHashedKeyGenParams | webcrypto.EcKeyGenParams | webcrypto.Algorithm {
  switch (keyType) {
    case 'rsa':
      return {
        name: 'RSASSA-PKCS1-v1_5',
        modulusLength: 2048,
        publicExponent: new Uint8Array([1, 0, 1]),
        hash: 'SHA-256',
      };
    case 'ec':
      return { name: 'ECDSA', namedCurve: 'P-256' };
    case 'ed25519':
      return { name: 'Ed25519' };
  }
}

/** Which of our key types a KeyObject is, so an issuer's key can be turned back into a signer. */
function keyTypeOf(key: KeyObject): KeyType {
  const type = key.asymmetricKeyType;
  if (type === 'rsa' || type === 'ec' || type === 'ed25519') {
    if (type === 'ec' && key.asymmetricKeyDetails?.namedCurve !== 'prime256v1') {
      throw new Error(
        `test PKI signs only with EC P-256, not ${key.asymmetricKeyDetails?.namedCurve}`,
      );
    }
    return type;
  }
  throw new Error(`test PKI cannot sign with a ${String(type)} key`);
}

async function generateKeyPair(keyType: KeyType): Promise<webcrypto.CryptoKeyPair> {
  const pair = await webcrypto.subtle.generateKey(keyAlgorithm(keyType), true, ['sign', 'verify']);
  return pair as webcrypto.CryptoKeyPair;
}

/** The algorithm a key of this type signs certificates with (SHA-256 where there is a choice). */
function signatureAlgorithm(keyType: KeyType): webcrypto.Algorithm | webcrypto.EcdsaParams {
  switch (keyType) {
    case 'rsa':
      return { name: 'RSASSA-PKCS1-v1_5', hash: 'SHA-256' } as webcrypto.Algorithm;
    case 'ec':
      return { name: 'ECDSA', hash: 'SHA-256' };
    case 'ed25519':
      return { name: 'Ed25519' };
  }
}

/** Turns an issuer's KeyObject back into a WebCrypto signing key. */
async function importSigningKey(key: KeyObject): Promise<WebCryptoKey> {
  const der = key.export({ type: 'pkcs8', format: 'der' });
  return webcrypto.subtle.importKey('pkcs8', der, keyAlgorithm(keyTypeOf(key)), false, ['sign']);
}

/**
 * The validity window: both ends default to a 90-day certificate valid now, and a single given
 * end moves the other so that the window stays 90 days long and never inverts (an expired or
 * not-yet-valid certificate needs only one date).
 */
function validityWindow(
  options: CertificateOptions,
  nowMs: number,
): { notBefore: Date; notAfter: Date } {
  const notBeforeMs =
    options.notBefore?.getTime() ??
    Math.min(nowMs - HOUR_MS, (options.notAfter?.getTime() ?? Infinity) - DEFAULT_VALIDITY_MS);
  const notAfterMs =
    options.notAfter?.getTime() ??
    Math.max(nowMs + DEFAULT_VALIDITY_MS, notBeforeMs + DEFAULT_VALIDITY_MS);
  return { notBefore: new Date(notBeforeMs), notAfter: new Date(notAfterMs) };
}

interface SigningRequest {
  subjectName: string;
  options: CertificateOptions;
  issuer: IssuedCertificate | undefined;
  extensions: (x509: typeof X509, publicKey: WebCryptoKey) => Promise<X509.Extension[]>;
}

/** The one place a certificate is made: self-signed when there is no issuer. */
async function signCertificate(request: SigningRequest): Promise<IssuedCertificate> {
  const x509 = loadX509();
  const { options, issuer } = request;
  const keyType = options.keyType ?? 'ec';
  const keys = await generateKeyPair(keyType);
  const { notBefore, notAfter } = validityWindow(options, Date.now());

  const subject = new x509.Name(request.subjectName);
  const signingKey =
    issuer === undefined ? keys.privateKey : await importSigningKey(issuer.privateKey);
  const signingKeyType = issuer === undefined ? keyType : keyTypeOf(issuer.privateKey);
  const issuerCertificate =
    issuer === undefined ? undefined : new x509.X509Certificate(issuer.certPem);
  const extensions = await request.extensions(x509, keys.publicKey);
  if (issuerCertificate !== undefined) {
    extensions.push(await x509.AuthorityKeyIdentifierExtension.create(issuerCertificate.publicKey));
  }

  const certificate = await x509.X509CertificateGenerator.create({
    ...(options.serialNumber === undefined ? {} : { serialNumber: options.serialNumber }),
    subject,
    issuer: issuerCertificate?.subjectName ?? subject,
    notBefore,
    notAfter,
    publicKey: keys.publicKey as unknown as X509.PublicKeyType,
    signingKey: signingKey as unknown as X509.X509CertificateCreateWithKeyParams['signingKey'],
    signingAlgorithm: signatureAlgorithm(signingKeyType),
    extensions,
  });

  const privateKey = KeyObject.from(keys.privateKey);
  const der = Buffer.from(certificate.rawData);
  return {
    certPem: new X509Certificate(der).toString(),
    keyPem: encodePrivateKey(privateKey, 'pkcs8'),
    privateKey,
    fingerprintSha256: sha256Hex(der),
  };
}

async function caExtensions(
  x509: typeof X509,
  publicKey: WebCryptoKey,
  pathLength: number | undefined,
): Promise<X509.Extension[]> {
  return [
    new x509.BasicConstraintsExtension(true, pathLength, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.keyCertSign |
        x509.KeyUsageFlags.cRLSign |
        x509.KeyUsageFlags.digitalSignature,
      true,
    ),
    await x509.SubjectKeyIdentifierExtension.create(publicKey as unknown as X509.PublicKeyType),
  ];
}

/** A self-signed root, the top of every test chain. */
export async function createRootCa(options: CertificateOptions = {}): Promise<IssuedCertificate> {
  return signCertificate({
    subjectName: `CN=${options.commonName ?? 'certsync test root CA'}`,
    options,
    issuer: undefined,
    extensions: (x509, publicKey) => caExtensions(x509, publicKey, undefined),
  });
}

/** An intermediate CA under `issuer`, like Let's Encrypt's R or E series. */
export async function createIntermediateCa(
  issuer: IssuedCertificate,
  options: CertificateOptions = {},
): Promise<IssuedCertificate> {
  return signCertificate({
    subjectName: `CN=${options.commonName ?? 'certsync test intermediate CA'}`,
    options,
    issuer,
    extensions: (x509, publicKey) => caExtensions(x509, publicKey, 0),
  });
}

/** A TLS server certificate: SANs from dnsNames, serverAuth, not a CA. */
export async function issueLeaf(
  issuer: IssuedCertificate,
  options: CertificateOptions,
): Promise<IssuedCertificate> {
  const dnsNames = options.dnsNames ?? [];
  return signCertificate({
    subjectName: `CN=${options.commonName ?? dnsNames[0] ?? 'localhost'}`,
    options,
    issuer,
    extensions: async (x509, publicKey) => {
      const usage =
        options.keyType === 'rsa'
          ? x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment
          : x509.KeyUsageFlags.digitalSignature;
      const extensions: X509.Extension[] = [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(usage, true),
        new x509.ExtendedKeyUsageExtension([SERVER_AUTH_OID], false),
        await x509.SubjectKeyIdentifierExtension.create(publicKey as unknown as X509.PublicKeyType),
      ];
      const names = [
        ...dnsNames.map((value) => ({ type: 'dns' as const, value })),
        ...(options.ipAddresses ?? []).map((value) => ({ type: 'ip' as const, value })),
      ];
      if (names.length > 0) {
        extensions.push(new x509.SubjectAlternativeNameExtension(names, false));
      }
      return extensions;
    },
  });
}

/**
 * A TLS client certificate (clientAuth) whose subject carries an OU, the way certsync-server reads
 * a caller's role (`OU=certsync-agent` or `OU=certsync-admin`).
 */
export async function issueClientCertificate(
  issuer: IssuedCertificate,
  options: CertificateOptions & { organizationalUnit: string },
): Promise<IssuedCertificate> {
  return signCertificate({
    subjectName: `CN=${options.commonName ?? 'certsync client'}, OU=${options.organizationalUnit}`,
    options,
    issuer,
    extensions: async (x509, publicKey) => [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([CLIENT_AUTH_OID], false),
      await x509.SubjectKeyIdentifierExtension.create(publicKey as unknown as X509.PublicKeyType),
    ],
  });
}

/**
 * A private key as PEM in one of the encodings found in the wild. The encrypted formats use
 * TEST_KEY_PASSPHRASE; 'legacy-encrypted' is PKCS#1 (RSA) or SEC1 (EC) with Proc-Type headers.
 */
export function encodePrivateKey(key: KeyObject, format: PrivateKeyFormat): string {
  const traditionalType = key.asymmetricKeyType === 'rsa' ? 'pkcs1' : 'sec1';
  const encryption = { cipher: 'aes-256-cbc', passphrase: TEST_KEY_PASSPHRASE };
  switch (format) {
    case 'pkcs8':
      return String(key.export({ type: 'pkcs8', format: 'pem' }));
    case 'pkcs1':
      return String(key.export({ type: 'pkcs1', format: 'pem' }));
    case 'sec1':
      return String(key.export({ type: 'sec1', format: 'pem' }));
    case 'pkcs8-encrypted':
      return String(key.export({ type: 'pkcs8', format: 'pem', ...encryption }));
    case 'legacy-encrypted':
      return String(key.export({ type: traditionalType, format: 'pem', ...encryption }));
  }
}

/** DER of the named-curve OIDs, for the EC PARAMETERS block `openssl ecparam -genkey` writes. */
const CURVE_OID_DER: Readonly<Record<string, string>> = {
  prime256v1: '06082a8648ce3d030107',
  secp384r1: '06052b81040022',
  secp521r1: '06052b81040023',
};

/** The `EC PARAMETERS` PEM block that openssl puts before a SEC1 key; tests prepend it. */
export function encodeEcParameters(key: KeyObject): string {
  const curve = key.asymmetricKeyDetails?.namedCurve ?? 'none';
  const oid = CURVE_OID_DER[curve];
  if (key.asymmetricKeyType !== 'ec' || oid === undefined) {
    throw new Error(
      `no EC PARAMETERS encoding for a ${String(key.asymmetricKeyType)} ${curve} key`,
    );
  }
  const base64 = Buffer.from(oid, 'hex').toString('base64');
  return `-----BEGIN EC PARAMETERS-----\n${base64}\n-----END EC PARAMETERS-----\n`;
}

/**
 * A root -> intermediate -> leaf chain for `*.domain` and `domain` (default example.test) and the
 * certbot files for it. keyType and notAfter apply to the leaf; the CAs stay EC P-256 for speed.
 */
export async function createWildcardSet(
  options: { domain?: string; keyType?: KeyType; notAfter?: Date } = {},
): Promise<{
  root: IssuedCertificate;
  intermediate: IssuedCertificate;
  leaf: IssuedCertificate;
  pems: CertbotPemSet;
}> {
  const domain = options.domain ?? 'example.test';
  const root = await createRootCa();
  const intermediate = await createIntermediateCa(root);
  const leaf = await issueLeaf(intermediate, {
    commonName: `*.${domain}`,
    dnsNames: [`*.${domain}`, domain],
    ...(options.keyType === undefined ? {} : { keyType: options.keyType }),
    ...(options.notAfter === undefined ? {} : { notAfter: options.notAfter }),
  });
  const pems: CertbotPemSet = {
    cert: leaf.certPem,
    chain: intermediate.certPem,
    fullchain: leaf.certPem + intermediate.certPem,
    privkey: leaf.keyPem,
  };
  return { root, intermediate, leaf, pems };
}
