import { X509Certificate, createPrivateKey, createPublicKey, type KeyObject } from 'node:crypto';

import { sha256Hex } from '../common/digest';
import { parsePem, PemParseError, type PemBlock } from '../common/pem';

/**
 * Decides whether a candidate bundle (the files of one config entry, e.g. fullchain.pem +
 * privkey.pem, or cert.pem + chain.pem + privkey.pem) may be accepted and fanned out. Pure: bytes
 * and `now` in, a summary or a BundleValidationError out. Messages name paths, labels, lines,
 * fingerprints, dates and DNS names only; never key bytes, base64 or PEM text.
 */

/** One file of a candidate bundle as the source reader found it. */
export interface CandidateFile {
  /** The config name, e.g. fullchain.pem. */
  source: string;
  /** The absolute path that was read, for messages. */
  path: string;
  target: string;
  mode: number;
  /** Numeric owner the agent gives the file; undefined keeps the owner of the file replaced. */
  owner?: { uid: number; gid: number } | undefined;
  content: Buffer;
}

export interface ValidationOptions {
  /** DNS names the leaf must cover; wildcard semantics as in TLS (one label). */
  expectNames: readonly string[];
  now: Date;
}

/** What operators and the admin API are told about one certificate. */
export interface CertificateSummary {
  subject: string;
  issuer: string;
  dnsNames: string[];
  /** Lower-case hex. */
  serial: string;
  notBefore: Date;
  notAfter: Date;
  /** Lower-case hex SHA-256 of the DER. */
  fingerprintSha256: string;
}

/** An accepted bundle: its leaf, the issuers served after it, and what deserves a warning. */
export interface ValidatedBundle {
  leaf: CertificateSummary;
  /** Issuers after the leaf, in file order. */
  chain: CertificateSummary[];
  /** e.g. 'ec P-256', 'rsa 2048', 'ed25519'. */
  keyType: string;
  warnings: string[];
}

export type BundleRejectionReason =
  | 'empty-file'
  | 'pem-invalid'
  | 'no-certificate'
  | 'certificate-invalid'
  | 'chain-invalid'
  | 'multiple-private-keys'
  | 'encrypted-key'
  | 'key-invalid'
  | 'key-unsupported'
  | 'key-mismatch'
  | 'not-yet-valid'
  | 'expired'
  | 'names-missing';

/** Thrown when a candidate bundle must not be accepted; `reason` is stable for status mapping. */
export class BundleValidationError extends Error {
  override readonly name = 'BundleValidationError';
  readonly reason: BundleRejectionReason;
  readonly path?: string;

  constructor(
    reason: BundleRejectionReason,
    message: string,
    context: { path?: string; cause?: unknown } = {},
  ) {
    super(message, context.cause === undefined ? undefined : { cause: context.cause });
    this.reason = reason;
    if (context.path !== undefined) {
      this.path = context.path;
    }
  }
}

const EXPIRY_WARNING_MS = 7 * 24 * 60 * 60 * 1000;
const SPKI_PREFIX_LENGTH = 16;
const KEY_LABEL_TYPES: Readonly<Record<string, 'pkcs8' | 'pkcs1' | 'sec1'>> = {
  'PRIVATE KEY': 'pkcs8',
  'RSA PRIVATE KEY': 'pkcs1',
  'EC PRIVATE KEY': 'sec1',
};
/** OpenSSL curve names to the names operators know from TLS configs. */
const CURVE_NAMES: Readonly<Record<string, string>> = {
  prime256v1: 'P-256',
  secp384r1: 'P-384',
  secp521r1: 'P-521',
};

interface LocatedCertificate {
  certificate: X509Certificate;
  fingerprintSha256: string;
  path: string;
  line: number;
}

interface LocatedBlock {
  block: PemBlock;
  path: string;
}

/** Throws unless `files` form an acceptable bundle for `options.expectNames` at `options.now`. */
export function validateBundle(
  files: readonly CandidateFile[],
  options: ValidationOptions,
): ValidatedBundle {
  const warnings: string[] = [];
  const { certificateFiles, keyBlocks } = collectBlocks(files, warnings);
  const firstFile = certificateFiles[0];
  const firstCertificate = firstFile?.[0];
  if (firstFile === undefined || firstCertificate === undefined) {
    const paths = files.map((file) => file.path).join(', ');
    throw new BundleValidationError('no-certificate', `no certificate in bundle files ${paths}`);
  }

  const privateKey = loadPrivateKey(keyBlocks);
  if (privateKey === undefined) {
    warnings.push(
      `no private key in the bundle; assuming the first certificate of ` +
        `${firstCertificate.path} is the leaf`,
    );
  }
  const leafFile =
    privateKey === undefined ? firstFile : findLeafFile(certificateFiles, privateKey);
  const [leaf, ...tail] = leafFile as [LocatedCertificate, ...LocatedCertificate[]];
  const chain = tail.length > 0 ? tail : findChainFile(leaf, certificateFiles);
  checkValidityPeriod(leaf, options.now, warnings);
  checkNamesCovered(leaf, options.expectNames);

  if (chain.length === 0 && !isSelfSigned(leaf.certificate)) {
    const issuer = describeName(leaf.certificate.issuer);
    warnings.push(
      `${leaf.path}: no intermediate follows the leaf (issuer ${issuer}) and it is not ` +
        `self-signed (missing intermediate?)`,
    );
  }
  return {
    leaf: summarize(leaf),
    chain: chain.map(summarize),
    keyType: describeKeyType(leaf.certificate.publicKey),
    warnings,
  };
}

/** Sorts every block of every file into certificate chains (one per file) and key blocks. */
function collectBlocks(
  files: readonly CandidateFile[],
  warnings: string[],
): { certificateFiles: LocatedCertificate[][]; keyBlocks: LocatedBlock[] } {
  const certificateFiles: LocatedCertificate[][] = [];
  const keyBlocks: LocatedBlock[] = [];
  for (const file of files) {
    const certificates: LocatedCertificate[] = [];
    for (const block of readPemBlocks(file, warnings)) {
      if (block.label === 'CERTIFICATE') {
        certificates.push(parseCertificate(block, file.path));
      } else if (block.label.endsWith('PRIVATE KEY')) {
        keyBlocks.push({ block, path: file.path });
      } else if (block.label !== 'EC PARAMETERS') {
        warnings.push(`${file.path}: ignored block '${block.label}' at line ${block.startLine}`);
      }
    }
    checkIssuedInOrder(certificates);
    if (certificates.length > 0) {
      certificateFiles.push(certificates);
    }
  }
  return { certificateFiles, keyBlocks };
}

/** Parses one file's PEM and records the harmless oddities as warnings. */
function readPemBlocks(file: CandidateFile, warnings: string[]): PemBlock[] {
  if (file.content.toString('latin1').trim() === '') {
    const what = file.content.length === 0 ? 'is empty' : 'holds only whitespace';
    throw new BundleValidationError('empty-file', `${file.path} ${what}`, { path: file.path });
  }
  let parsed;
  try {
    parsed = parsePem(file.content, file.path);
  } catch (error) {
    if (!(error instanceof PemParseError)) throw error;
    throw new BundleValidationError('pem-invalid', error.message, {
      path: file.path,
      cause: error,
    });
  }
  if (parsed.blocks.length === 0) {
    const message = `${file.path}: no PEM blocks found (not a PEM file?)`;
    throw new BundleValidationError('pem-invalid', message, { path: file.path });
  }

  if (parsed.linesOutsideBlocks.length > 0) {
    const lines = parsed.linesOutsideBlocks.slice(0, 5).join(', ');
    const more = parsed.linesOutsideBlocks.length > 5 ? ', …' : '';
    warnings.push(`${file.path}: text outside PEM blocks at line(s) ${lines}${more}`);
  }
  if (parsed.hasCrlfLineEndings) {
    warnings.push(`${file.path}: CRLF line endings`);
  }
  return parsed.blocks;
}

function parseCertificate(block: PemBlock, path: string): LocatedCertificate {
  try {
    const certificate = new X509Certificate(block.der);
    return { certificate, fingerprintSha256: sha256Hex(block.der), path, line: block.startLine };
  } catch (error) {
    const message =
      `${path}: block 'CERTIFICATE' at line ${block.startLine} ` +
      `is not a valid X.509 certificate`;
    throw new BundleValidationError('certificate-invalid', message, { path, cause: error });
  }
}

/** Within one file, each certificate must be issued and signed by the one after it. */
function checkIssuedInOrder(certificates: readonly LocatedCertificate[]): void {
  for (let index = 0; index + 1 < certificates.length; index++) {
    const child = certificates[index] as LocatedCertificate;
    const parent = certificates[index + 1] as LocatedCertificate;
    const problem = issuanceProblem(child.certificate, parent.certificate);
    if (problem !== undefined) {
      const message =
        `${child.path}: certificate ${describe(child)} at line ${child.line} ${problem} ` +
        `${describe(parent)} that follows it at line ${parent.line}; a file must list the leaf ` +
        `first, each certificate followed by its issuer`;
      throw new BundleValidationError('chain-invalid', message, { path: child.path });
    }
  }
}

/** Why `child` is not issued by `parent`, or undefined when it is. */
function issuanceProblem(child: X509Certificate, parent: X509Certificate): string | undefined {
  if (!child.checkIssued(parent)) return 'is not issued by';
  if (!child.verify(parent.publicKey)) return 'has a signature that does not verify against';
  return undefined;
}

function isSelfSigned(certificate: X509Certificate): boolean {
  return issuanceProblem(certificate, certificate) === undefined;
}

/** At most one key, unencrypted, of a type we serve; parsed from its own block only. */
function loadPrivateKey(
  keyBlocks: readonly LocatedBlock[],
): { key: KeyObject; path: string } | undefined {
  const [first, ...others] = keyBlocks;
  if (first === undefined) return undefined;
  if (others.length > 0) {
    const where = keyBlocks.map(({ block, path }) => `${path} line ${block.startLine}`).join(', ');
    const message = `bundle holds ${keyBlocks.length} private keys (${where}); supply exactly one`;
    throw new BundleValidationError('multiple-private-keys', message, { path: first.path });
  }

  const { block, path } = first;
  const procType = [...block.headers].find(([name]) => name.toLowerCase() === 'proc-type');
  if (
    block.label === 'ENCRYPTED PRIVATE KEY' ||
    procType?.[1].toUpperCase().includes('ENCRYPTED')
  ) {
    const message =
      `${path}: private key '${block.label}' at line ${block.startLine} is encrypted; certsync ` +
      `cannot prompt for a passphrase, supply an unencrypted key (e.g. openssl pkey -in … -out …)`;
    throw new BundleValidationError('encrypted-key', message, { path });
  }
  const type = KEY_LABEL_TYPES[block.label];
  if (type === undefined) {
    const message =
      `${path}: private key format '${block.label}' at line ${block.startLine} ` +
      `is not supported; use PKCS#8, PKCS#1 or SEC1`;
    throw new BundleValidationError('key-unsupported', message, { path });
  }

  let key: KeyObject;
  try {
    key = createPrivateKey({ key: block.der, format: 'der', type });
  } catch (error) {
    const message = `${path}: block '${block.label}' at line ${block.startLine} is not a valid private key`;
    throw new BundleValidationError('key-invalid', message, { path, cause: error });
  }
  if (!['rsa', 'ec', 'ed25519'].includes(key.asymmetricKeyType ?? '')) {
    const type = String(key.asymmetricKeyType);
    const message = `${path}: ${type} keys are not supported; use RSA, EC or Ed25519`;
    throw new BundleValidationError('key-unsupported', message, { path });
  }
  return { key, path };
}

/**
 * The certificate file whose leaf matches the key, sliced to start at that leaf. When several
 * files hold it (cert.pem and fullchain.pem), the one with the most issuers after it wins.
 */
function findLeafFile(
  certificateFiles: readonly LocatedCertificate[][],
  privateKey: { key: KeyObject; path: string },
): LocatedCertificate[] {
  const keySpki = createPublicKey(privateKey.key).export({ type: 'spki', format: 'der' });
  let best: LocatedCertificate[] | undefined;
  for (const certificates of certificateFiles) {
    const index = certificates.findIndex(({ certificate }) => spkiOf(certificate).equals(keySpki));
    if (index !== -1 && (best === undefined || certificates.length - index > best.length)) {
      best = certificates.slice(index);
    }
  }
  if (best !== undefined) return best;

  const assumedLeaf = certificateFiles[0]?.[0] as LocatedCertificate;
  const keySpkiPrefix = sha256Hex(keySpki).slice(0, SPKI_PREFIX_LENGTH);
  const certificateSpkiPrefix = sha256Hex(spkiOf(assumedLeaf.certificate)).slice(
    0,
    SPKI_PREFIX_LENGTH,
  );
  const message =
    `private key in ${privateKey.path} (key SPKI sha256 ${keySpkiPrefix}…) matches no ` +
    `certificate; the leaf in ${assumedLeaf.path} is ${describe(assumedLeaf)} ` +
    `(cert SPKI sha256 ${certificateSpkiPrefix}…); replace key and certificate together`;
  throw new BundleValidationError('key-mismatch', message, { path: privateKey.path });
}

/** For cert.pem + chain.pem: the file whose first certificate issued the leaf, if any. */
function findChainFile(
  leaf: LocatedCertificate,
  certificateFiles: readonly LocatedCertificate[][],
): LocatedCertificate[] {
  for (const certificates of certificateFiles) {
    const issuer = certificates[0];
    if (issuer === undefined || !leaf.certificate.checkIssued(issuer.certificate)) continue;
    if (issuer.fingerprintSha256 === leaf.fingerprintSha256) continue;
    const problem = issuanceProblem(leaf.certificate, issuer.certificate);
    if (problem !== undefined) {
      const message =
        `${leaf.path}: leaf ${describe(leaf)} ${problem} ${describe(issuer)} ` +
        `in ${issuer.path}`;
      throw new BundleValidationError('chain-invalid', message, { path: issuer.path });
    }
    return certificates;
  }
  return [];
}

function checkValidityPeriod(leaf: LocatedCertificate, now: Date, warnings: string[]): void {
  const { notBefore, notAfter } = validityOf(leaf.certificate);
  const where = `${leaf.path}: leaf ${describe(leaf)}`;
  if (now.getTime() < notBefore.getTime()) {
    const message =
      `${where} is not valid until ${notBefore.toISOString()} ` +
      `(now ${now.toISOString()}); check the clock or wait`;
    throw new BundleValidationError('not-yet-valid', message, { path: leaf.path });
  }
  if (now.getTime() > notAfter.getTime()) {
    const message = `${where} expired at ${notAfter.toISOString()} (now ${now.toISOString()}); renew it`;
    throw new BundleValidationError('expired', message, { path: leaf.path });
  }
  if (notAfter.getTime() - now.getTime() < EXPIRY_WARNING_MS) {
    warnings.push(`${where} expires soon, at ${notAfter.toISOString()}`);
  }
}

function checkNamesCovered(leaf: LocatedCertificate, expectNames: readonly string[]): void {
  const dnsNames = dnsNamesOf(leaf.certificate);
  const missing = expectNames.filter((name) => !dnsNames.some((san) => covers(san, name)));
  if (missing.length > 0) {
    const present = dnsNames.length > 0 ? dnsNames.join(', ') : 'none';
    const message =
      `${leaf.path}: leaf ${describe(leaf)} does not cover ${missing.join(', ')} ` +
      `(its DNS names: ${present})`;
    throw new BundleValidationError('names-missing', message, { path: leaf.path });
  }
}

/**
 * Whether SAN `san` covers `name`. A wildcard SAN `*.a.b` covers exactly one label left of a.b;
 * an expected wildcard is covered only by the identical wildcard SAN.
 */
function covers(san: string, name: string): boolean {
  const sanLower = san.toLowerCase();
  const nameLower = name.toLowerCase();
  if (sanLower === nameLower) return true;
  // An expected `*.a.b` reaches here only if the SAN differs, and `*` is not a label we expand.
  if (!sanLower.startsWith('*.')) return false;
  const firstDot = nameLower.indexOf('.');
  return firstDot > 0 && nameLower.slice(firstDot) === sanLower.slice(1);
}

/**
 * DNS names from Node's `subjectAltName` text ("DNS:a, DNS:b"). Node quotes an entry as a JSON
 * string when it holds separators, so quoted entries are decoded rather than split.
 */
function dnsNamesOf(certificate: X509Certificate): string[] {
  const text = certificate.subjectAltName ?? '';
  const entries = text.match(/(?:[^,"]|"(?:[^"\\]|\\.)*")+/g) ?? [];
  const names: string[] = [];
  for (const entry of entries.map((raw) => raw.trim())) {
    if (!entry.startsWith('DNS:')) continue;
    const value = entry.slice('DNS:'.length);
    names.push(value.startsWith('"') ? (JSON.parse(value) as string) : value);
  }
  return names;
}

function validityOf(certificate: X509Certificate): { notBefore: Date; notAfter: Date } {
  return { notBefore: new Date(certificate.validFrom), notAfter: new Date(certificate.validTo) };
}

function spkiOf(certificate: X509Certificate): Buffer {
  return certificate.publicKey.export({ type: 'spki', format: 'der' });
}

/** Node prints distinguished names one attribute a line; messages want them on one. */
function describeName(name: string): string {
  return name.split('\n').join(', ');
}

function describe(located: LocatedCertificate): string {
  const subject = describeName(located.certificate.subject);
  return `'${subject}' (sha256 ${located.fingerprintSha256})`;
}

function describeKeyType(key: KeyObject): string {
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === 'rsa') return `rsa ${details?.modulusLength ?? 'unknown'}`;
  if (key.asymmetricKeyType === 'ec') {
    const curve = details?.namedCurve ?? 'unknown';
    return `ec ${CURVE_NAMES[curve] ?? curve}`;
  }
  return String(key.asymmetricKeyType);
}

function summarize(located: LocatedCertificate): CertificateSummary {
  const { certificate } = located;
  return {
    subject: describeName(certificate.subject),
    issuer: describeName(certificate.issuer),
    dnsNames: dnsNamesOf(certificate),
    serial: certificate.serialNumber.toLowerCase(),
    ...validityOf(certificate),
    fingerprintSha256: located.fingerprintSha256,
  };
}
