import {
  createIntermediateCa,
  createRootCa,
  issueLeaf,
  type CertbotPemSet,
  type IssuedCertificate,
  type KeyType,
} from '../support/pki';

/**
 * The certificates and keys the corpus cases are cut from, generated once per test run: no key
 * is ever committed. One root and intermediate sign every leaf, like one Let's Encrypt lineage.
 */
export interface CorpusMaterials {
  root: IssuedCertificate;
  intermediate: IssuedCertificate;
  /**
   * A second intermediate under the same root, like Let's Encrypt's E5 next to E6 (each order
   * may be signed by either), and a valid `*.example.test` leaf it issued.
   */
  otherIntermediate: IssuedCertificate;
  otherIntermediateLeaf: IssuedCertificate;
  /** Valid `*.example.test` leaves by key type. */
  leaves: Readonly<Record<KeyType, IssuedCertificate>>;
  /** A valid leaf for other names (`*.other.test`), and one more for example.test. */
  otherNames: IssuedCertificate;
  stranger: IssuedCertificate;
  expired: IssuedCertificate;
  notYetValid: IssuedCertificate;
  /** Every private key PEM generated, for the "never in a message" check. */
  keyPems: string[];
}

export const CORPUS_DOMAIN = 'example.test';
const DAY_MS = 24 * 60 * 60 * 1000;
const WILDCARD = {
  commonName: `*.${CORPUS_DOMAIN}`,
  dnsNames: [`*.${CORPUS_DOMAIN}`, CORPUS_DOMAIN],
};

/** Makes every certificate the cases need (RSA once: it is the slow one). */
export async function createCorpusMaterials(): Promise<CorpusMaterials> {
  const root = await createRootCa();
  const [intermediate, otherIntermediate] = await Promise.all([
    createIntermediateCa(root),
    createIntermediateCa(root, { commonName: 'certsync test intermediate CA 2' }),
  ]);
  const nowMs = Date.now();
  const [ec, rsa, ed25519, otherNames, stranger, expired, notYetValid, otherIntermediateLeaf] =
    await Promise.all([
      issueLeaf(intermediate, { ...WILDCARD, keyType: 'ec' }),
      issueLeaf(intermediate, { ...WILDCARD, keyType: 'rsa' }),
      issueLeaf(intermediate, { ...WILDCARD, keyType: 'ed25519' }),
      issueLeaf(intermediate, { commonName: '*.other.test', dnsNames: ['*.other.test'] }),
      issueLeaf(intermediate, WILDCARD),
      issueLeaf(intermediate, {
        ...WILDCARD,
        notBefore: new Date(nowMs - 90 * DAY_MS),
        notAfter: new Date(nowMs - DAY_MS),
      }),
      issueLeaf(intermediate, { ...WILDCARD, notBefore: new Date(nowMs + DAY_MS) }),
      issueLeaf(otherIntermediate, WILDCARD),
    ]);
  const leaves = { ec, rsa, ed25519 };
  const all = [
    root,
    intermediate,
    otherIntermediate,
    ec,
    rsa,
    ed25519,
    otherNames,
    stranger,
    expired,
    notYetValid,
    otherIntermediateLeaf,
  ];
  return {
    root,
    intermediate,
    otherIntermediate,
    otherIntermediateLeaf,
    leaves,
    otherNames,
    stranger,
    expired,
    notYetValid,
    keyPems: all.map((issued) => issued.keyPem),
  };
}

/** The four certbot files for `leaf` under the corpus intermediate. */
export function pemSetFor(materials: CorpusMaterials, leaf: IssuedCertificate): CertbotPemSet {
  const chain = materials.intermediate.certPem;
  return { cert: leaf.certPem, chain, fullchain: leaf.certPem + chain, privkey: leaf.keyPem };
}
