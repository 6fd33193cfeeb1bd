import { createPrivateKey, type KeyObject } from 'node:crypto';

import type { PemBlock } from '../common/pem';
import { BundleValidationError } from './bundle-validation-error';

/**
 * Loads the one private key of a candidate bundle from its PEM block, with the decisions that
 * keep certsync in line with Go's crypto/tls (tls.X509KeyPair), which Vault uses: see the
 * README's "Validation decisions". Never puts key bytes into a message.
 */

/** A private key block and the file it came from. */
export interface LocatedKeyBlock {
  block: PemBlock;
  path: string;
}

export interface LoadedPrivateKey {
  key: KeyObject;
  path: string;
}

type KeyEncoding = 'pkcs8' | 'pkcs1' | 'sec1';

const KEY_LABEL_ENCODINGS: Readonly<Record<string, KeyEncoding>> = {
  'PRIVATE KEY': 'pkcs8',
  'RSA PRIVATE KEY': 'pkcs1',
  'EC PRIVATE KEY': 'sec1',
};
/** The label each encoding should carry, for the mislabelled-key warning. */
const ENCODING_LABELS: Readonly<Record<KeyEncoding, string>> = {
  pkcs8: 'PRIVATE KEY',
  pkcs1: 'RSA PRIVATE KEY',
  sec1: 'EC PRIVATE KEY',
};
const SUPPORTED_KEY_TYPES = ['rsa', 'ec', 'ed25519'];

/**
 * At most one key, unencrypted, of a type we serve. Go takes the first "PRIVATE KEY" block and
 * silently ignores the rest; certsync refuses two keys as ambiguous instead.
 */
export function loadPrivateKey(
  keyBlocks: readonly LocatedKeyBlock[],
  warnings: string[],
): LoadedPrivateKey | undefined {
  const [first, ...others] = keyBlocks;
  if (first === undefined) return undefined;
  if (others.length > 0) {
    const where = keyBlocks.map(({ block, path }) => `${path} line ${block.startLine}`).join(', ');
    const message =
      `bundle holds ${keyBlocks.length} private keys (${where}); Go's crypto/tls would silently ` +
      `use the first. Supply exactly one key, the one that matches the certificate`;
    throw new BundleValidationError('multiple-private-keys', message, { path: first.path });
  }

  const { block, path } = first;
  rejectEncrypted(first);
  const declared = KEY_LABEL_ENCODINGS[block.label];
  if (declared === undefined) {
    const message =
      `${path}: private key format '${block.label}' at line ${block.startLine} ` +
      `is not supported; use PKCS#8, PKCS#1 or SEC1`;
    throw new BundleValidationError('key-unsupported', message, { path });
  }

  const key = decodeKey(first, declared, warnings);
  if (!SUPPORTED_KEY_TYPES.includes(key.asymmetricKeyType ?? '')) {
    const type = String(key.asymmetricKeyType);
    const message = `${path}: ${type} keys are not supported; use RSA, EC or Ed25519`;
    throw new BundleValidationError('key-unsupported', message, { path });
  }
  return { key, path };
}

/** Go cannot decrypt either form (and neither can certsync: there is nobody to ask). */
function rejectEncrypted({ block, path }: LocatedKeyBlock): void {
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
}

/**
 * Decodes the key in the encoding its DER shows, like Go's parsePrivateKey, which ignores the
 * label. A key whose label names another encoding is accepted (Go and OpenSSL 3 both load it)
 * with a warning, because older tools go by the label.
 */
function decodeKey(
  { block, path }: LocatedKeyBlock,
  declared: KeyEncoding,
  warnings: string[],
): KeyObject {
  const encoding = sniffKeyEncoding(block.der) ?? declared;
  let key: KeyObject;
  try {
    key = createPrivateKey({ key: block.der, format: 'der', type: encoding });
  } catch (error) {
    const message = `${path}: block '${block.label}' at line ${block.startLine} is not a valid private key`;
    throw new BundleValidationError('key-invalid', message, { path, cause: error });
  }
  if (encoding !== declared) {
    warnings.push(
      `${path}: block '${block.label}' at line ${block.startLine} holds a ` +
        `'${ENCODING_LABELS[encoding]}' key; Go and OpenSSL 3 load it, older tools may not`,
    );
  }
  return key;
}

/**
 * The encoding of a private key DER from its second element: PKCS#8 has the algorithm SEQUENCE
 * there, PKCS#1 the modulus INTEGER, SEC1 the key OCTET STRING (all after a version INTEGER).
 */
function sniffKeyEncoding(der: Buffer): KeyEncoding | undefined {
  if (der[0] !== 0x30) return undefined;
  const outer = headerLength(der, 0);
  if (outer === undefined || der[outer] !== 0x02) return undefined;
  const versionHeader = headerLength(der, outer);
  const versionLength = versionHeader === undefined ? undefined : contentLength(der, outer);
  if (versionHeader === undefined || versionLength === undefined) return undefined;
  const second = der[versionHeader + versionLength];
  if (second === 0x30) return 'pkcs8';
  if (second === 0x02) return 'pkcs1';
  if (second === 0x04) return 'sec1';
  return undefined;
}

/** Offset just past the tag and length octets of the element at `offset`. */
function headerLength(der: Buffer, offset: number): number | undefined {
  const first = der[offset + 1];
  if (first === undefined) return undefined;
  return first < 0x80 ? offset + 2 : offset + 2 + (first & 0x7f);
}

/** The content length of the element at `offset` (definite lengths only, as DER requires). */
function contentLength(der: Buffer, offset: number): number | undefined {
  const first = der[offset + 1];
  if (first === undefined) return undefined;
  if (first < 0x80) return first;
  const octets = first & 0x7f;
  if (octets === 0 || octets > 4 || offset + 2 + octets > der.length) return undefined;
  return der.readUIntBE(offset + 2, octets);
}
