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
 * Decodes as the label says; failing that, like Go's parsePrivateKey, tries the other two
 * encodings. A key found that way is accepted (Go and OpenSSL 3 both load it) with a warning.
 */
function decodeKey(
  { block, path }: LocatedKeyBlock,
  declared: KeyEncoding,
  warnings: string[],
): KeyObject {
  const attempts: KeyEncoding[] = [declared, ...(['pkcs1', 'pkcs8', 'sec1'] as const)];
  let firstError: unknown;
  for (const encoding of attempts.filter((item, index) => attempts.indexOf(item) === index)) {
    try {
      const key = createPrivateKey({ key: block.der, format: 'der', type: encoding });
      if (encoding !== declared) {
        warnings.push(
          `${path}: block '${block.label}' at line ${block.startLine} holds a ` +
            `'${ENCODING_LABELS[encoding]}' key; Go and OpenSSL 3 load it, older tools may not`,
        );
      }
      return key;
    } catch (error) {
      firstError ??= error;
    }
  }
  const message = `${path}: block '${block.label}' at line ${block.startLine} is not a valid private key`;
  throw new BundleValidationError('key-invalid', message, { path, cause: firstError });
}
