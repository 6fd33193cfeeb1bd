import { X509Certificate, createPublicKey, type KeyObject } from 'node:crypto';

import { sha256Hex } from '../common/digest';
import type { PemBlock } from '../common/pem';
import { BundleValidationError } from './bundle-validation-error';
import { covers, dnsNamesOf } from './dns-names';
import { readPemBlocks } from './pem-file-reader';
import { loadPrivateKey, type LocatedKeyBlock } from './private-key-loader';

export { BundleValidationError, type BundleRejectionReason } from './bundle-validation-error';

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
  /**
   * Refuse a leaf whose issuer is in no file of the bundle (unless it is self-signed): servers
   * send the chain as given and clients without that intermediate fail. Default true.
   */
  requireChain?: boolean;
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

const EXPIRY_WARNING_MS = 7 * 24 * 60 * 60 * 1000;
const SPKI_PREFIX_LENGTH = 16;
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

  const privateKey = loadPrivateKey(keyBlocks, warnings);
  if (privateKey !== undefined) checkLeafFirst(certificateFiles, privateKey);
  certificateFiles.forEach(checkIssuedInOrder);
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
  if (privateKey !== undefined) checkFilesAgree(leaf, chain, certificateFiles);
  checkValidityPeriod(leaf, options.now, warnings);
  checkNamesCovered(leaf, options.expectNames);

  if (chain.length === 0 && !isSelfSigned(leaf.certificate)) {
    checkMissingIntermediate(leaf, options.requireChain ?? true, warnings);
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
): { certificateFiles: LocatedCertificate[][]; keyBlocks: LocatedKeyBlock[] } {
  const certificateFiles: LocatedCertificate[][] = [];
  const keyBlocks: LocatedKeyBlock[] = [];
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
    if (certificates.length > 0) {
      certificateFiles.push(certificates);
    }
  }
  return { certificateFiles, keyBlocks };
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
  // Go serves the chain as given; a client then fails on the first certificate out of order.
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

/**
 * Go's tls.X509KeyPair takes the first certificate of a file as the leaf and checks the key
 * against it, so a file holding the key's certificate anywhere but first is refused, naming it.
 */
function checkLeafFirst(
  certificateFiles: readonly LocatedCertificate[][],
  privateKey: { key: KeyObject; path: string },
): void {
  const keySpki = createPublicKey(privateKey.key).export({ type: 'spki', format: 'der' });
  for (const certificates of certificateFiles) {
    const index = certificates.findIndex(({ certificate }) => spkiOf(certificate).equals(keySpki));
    const first = certificates[0];
    const leaf = certificates[index];
    if (index <= 0 || first === undefined || leaf === undefined) continue;
    const message =
      `${leaf.path}: the leaf ${describe(leaf)} (the key's certificate) is at line ${leaf.line}, ` +
      `after ${describe(first)} at line ${first.line}; servers such as Go's crypto/tls take the ` +
      `first certificate as the leaf. List the leaf first, each certificate followed by its issuer`;
    throw new BundleValidationError('leaf-not-first', message, { path: leaf.path });
  }
}

/**
 * Every certificate file must belong to the same renewal as the key's leaf. certbot swaps its
 * links one at a time (cert, privkey, chain, fullchain), so with cert.pem and fullchain.pem both
 * configured a check between two swaps sees a new cert.pem and key next to an old fullchain.pem
 * (or, with --reuse-key, two leaves that both match the key). A file that starts with another
 * end-entity certificate, or with a CA certificate outside the leaf's issuer chain, is refused;
 * the intake checks again once certbot has finished.
 */
function checkFilesAgree(
  leaf: LocatedCertificate,
  chain: readonly LocatedCertificate[],
  certificateFiles: readonly LocatedCertificate[][],
): void {
  const issuers = [leaf, ...chain];
  for (const certificates of certificateFiles) {
    const first = certificates[0];
    if (first === undefined || first.fingerprintSha256 === leaf.fingerprintSha256) continue;
    const inIssuerChain = first.certificate.ca
      ? issuers.some(
          (known) =>
            known.fingerprintSha256 === first.fingerprintSha256 ||
            issuanceProblem(known.certificate, first.certificate) === undefined,
        )
      : false;
    if (inIssuerChain) continue;
    const what = first.certificate.ca
      ? `the CA certificate ${describe(first)}, which is not in the leaf's issuer chain`
      : `the leaf ${describe(first)}`;
    const message =
      `${first.path} starts with ${what}, but the key's certificate is ${describe(leaf)} in ` +
      `${leaf.path}: the files come from different renewals (a renewal caught half-way, or a ` +
      `file left over from an earlier one); every configured file must be from the same renewal`;
    throw new BundleValidationError('files-disagree', message, { path: first.path });
  }
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

/** A leaf that is not self-signed and whose issuer is in no file of the bundle. */
function checkMissingIntermediate(
  leaf: LocatedCertificate,
  requireChain: boolean,
  warnings: string[],
): void {
  const issuer = describeName(leaf.certificate.issuer);
  if (!requireChain) {
    warnings.push(
      `${leaf.path}: no intermediate follows the leaf (issuer ${issuer}) and it is not ` +
        `self-signed (missing intermediate?)`,
    );
    return;
  }
  const message =
    `${leaf.path}: leaf ${describe(leaf)} is issued by '${issuer}', which is in no file of the ` +
    `bundle (missing intermediate, or a fullchain cut after the leaf?); clients without it ` +
    `cannot verify. Use fullchain.pem, or set requireChain: false if clients hold the issuer`;
  throw new BundleValidationError('chain-incomplete', message, { path: leaf.path });
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
