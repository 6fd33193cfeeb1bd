import { encodeEcParameters, encodePrivateKey } from '../support/pki';
import type { ContentCase } from './corpus-case';
import { pemSetFor, type CorpusMaterials } from './corpus-materials';
import {
  cutAfterBlock,
  cutInsideBlock,
  derOf,
  paddedTo,
  relabel,
  withBlankLineInBase64,
  withCrlf,
} from './pem-edits';

/**
 * Candidates given by their bytes: what certbot (or a person, or a broken script) could leave in
 * the four files. The fullchain.pem and privkey.pem are what the corpus bundle distributes.
 */

const ec = (m: CorpusMaterials) => pemSetFor(m, m.leaves.ec);
const MIB = 1024 * 1024;

export const CONTENT_CASES: readonly ContentCase[] = [
  {
    type: 'content',
    name: 'valid-ec-fullchain',
    go: 'loads',
    description: 'the baseline: an EC leaf, its intermediate, its PKCS#8 key',
    contents: ec,
    expected: { kind: 'accepted' },
  },
  {
    type: 'content',
    name: 'key-cert-mismatch',
    go: 'refuses',
    description: "privkey.pem holds another certificate's key",
    contents: (m) => ({ ...ec(m), privkey: m.stranger.keyPem }),
    expected: {
      kind: 'rejected',
      reason: 'key-mismatch',
      message:
        /key SPKI sha256 [0-9a-f]{16}…\) matches no certificate.*replace key and certificate together/,
    },
  },
  {
    type: 'content',
    name: 'chain-leaf-after-intermediate',
    go: 'refuses',
    description: 'fullchain lists the intermediate first; Go would pair the key with it and fail',
    contents: (m) => ({ ...ec(m), fullchain: m.intermediate.certPem + m.leaves.ec.certPem }),
    expected: { kind: 'rejected', reason: 'leaf-not-first', message: /List the leaf first/ },
  },
  {
    type: 'content',
    name: 'chain-issuers-out-of-order',
    go: 'loads',
    description: 'leaf, root, intermediate: the root did not issue the leaf',
    contents: (m) => ({
      ...ec(m),
      fullchain: m.leaves.ec.certPem + m.root.certPem + m.intermediate.certPem,
    }),
    expected: { kind: 'rejected', reason: 'chain-invalid', message: /is not issued by.*root CA/ },
  },
  {
    type: 'content',
    name: 'leaf-from-other-intermediate',
    go: 'loads',
    description:
      'a new leaf issued by another intermediate, served with the old one (a new cert.pem and the old chain.pem)',
    contents: (m) => {
      const leaf = m.otherIntermediateLeaf;
      const fullchain = leaf.certPem + m.intermediate.certPem;
      return { cert: leaf.certPem, chain: m.intermediate.certPem, fullchain, privkey: leaf.keyPem };
    },
    expected: {
      kind: 'rejected',
      reason: 'chain-invalid',
      message: /is not issued by 'CN=certsync test intermediate CA' \(sha256/,
    },
  },
  {
    type: 'content',
    name: 'chain-with-root',
    go: 'loads',
    description: 'leaf, intermediate and the root: complete and in order (the root is redundant)',
    contents: (m) => ({ ...ec(m), fullchain: ec(m).fullchain + m.root.certPem }),
    expected: { kind: 'accepted' },
  },
  {
    type: 'content',
    name: 'missing-intermediate',
    go: 'loads',
    description: 'fullchain holds only the leaf; clients without the intermediate cannot verify',
    contents: (m) => ({ ...ec(m), fullchain: m.leaves.ec.certPem }),
    expected: {
      kind: 'rejected',
      reason: 'chain-incomplete',
      message: /issued by 'CN=certsync test intermediate CA', which is in no file of the bundle/,
    },
  },
  {
    type: 'content',
    name: 'missing-intermediate-allowed',
    go: 'loads',
    description: 'the same with requireChain: false (clients hold the issuer): a warning only',
    bundle: { requireChain: false },
    contents: (m) => ({ ...ec(m), fullchain: m.leaves.ec.certPem }),
    expected: { kind: 'accepted-with-warning', warning: /missing intermediate\?/ },
  },
  {
    type: 'content',
    name: 'expired-leaf',
    go: 'loads',
    description: 'the leaf expired yesterday',
    contents: (m) => pemSetFor(m, m.expired),
    expected: { kind: 'rejected', reason: 'expired', message: /expired at .*; renew it/ },
  },
  {
    type: 'content',
    name: 'not-yet-valid-leaf',
    go: 'loads',
    description: 'the leaf becomes valid tomorrow (a CA or local clock ahead)',
    contents: (m) => pemSetFor(m, m.notYetValid),
    expected: { kind: 'rejected', reason: 'not-yet-valid', message: /check the clock or wait/ },
  },
  {
    type: 'content',
    name: 'leaf-without-expected-names',
    go: 'loads',
    description: 'a valid leaf for *.other.test where *.example.test is expected',
    contents: (m) => pemSetFor(m, m.otherNames),
    expected: {
      kind: 'rejected',
      reason: 'names-missing',
      message: /does not cover \*\.example\.test \(its DNS names: \*\.other\.test\)/,
    },
  },
  {
    type: 'content',
    name: 'empty-key-file',
    go: 'refuses',
    description: 'privkey.pem has zero bytes',
    contents: (m) => ({ ...ec(m), privkey: '' }),
    expected: {
      kind: 'rejected',
      reason: 'empty-file',
      message: /privkey\d+\.pem is empty .*current version stays/,
    },
  },
  {
    type: 'content',
    name: 'whitespace-only-fullchain',
    go: 'refuses',
    description: 'fullchain.pem holds only newlines',
    contents: (m) => ({ ...ec(m), fullchain: '\n\n\n' }),
    expected: { kind: 'rejected', reason: 'empty-file', message: /holds only whitespace/ },
  },
  {
    type: 'content',
    name: 'truncated-inside-block',
    go: 'loads',
    description: 'fullchain cut 100 bytes into its second certificate',
    contents: (m) => ({ ...ec(m), fullchain: cutInsideBlock(ec(m).fullchain, 1, 100) }),
    expected: {
      kind: 'rejected',
      reason: 'pem-invalid',
      message: /block 'CERTIFICATE' starting at line \d+ is not terminated \(file truncated\?\)/,
    },
  },
  {
    type: 'content',
    name: 'truncated-at-block-boundary',
    go: 'loads',
    description: 'fullchain cut exactly after the END line of the leaf: well-formed, chain lost',
    contents: (m) => ({ ...ec(m), fullchain: cutAfterBlock(ec(m).fullchain, 1) }),
    expected: { kind: 'rejected', reason: 'chain-incomplete', message: /a fullchain cut after/ },
  },
  {
    type: 'content',
    name: 'truncated-key',
    go: 'refuses',
    description: 'privkey cut 40 bytes into its block',
    contents: (m) => ({ ...ec(m), privkey: cutInsideBlock(m.leaves.ec.keyPem, 0, 40) }),
    expected: { kind: 'rejected', reason: 'pem-invalid', message: /'PRIVATE KEY'.*not terminated/ },
  },
  {
    type: 'content',
    name: 'encrypted-key-legacy',
    go: 'refuses',
    description: 'SEC1 key with Proc-Type: 4,ENCRYPTED (openssl ec -aes256); Go refuses it too',
    contents: (m) => ({
      ...ec(m),
      privkey: encodePrivateKey(m.leaves.ec.privateKey, 'legacy-encrypted'),
    }),
    expected: { kind: 'rejected', reason: 'encrypted-key', message: /supply an unencrypted key/ },
  },
  {
    type: 'content',
    name: 'encrypted-key-pkcs8',
    go: 'refuses',
    description: 'ENCRYPTED PRIVATE KEY (PKCS#8 with a passphrase)',
    contents: (m) => ({
      ...ec(m),
      privkey: encodePrivateKey(m.leaves.ec.privateKey, 'pkcs8-encrypted'),
    }),
    expected: {
      kind: 'rejected',
      reason: 'encrypted-key',
      message: /'ENCRYPTED PRIVATE KEY'.*is encrypted/,
    },
  },
  ...keyEncodingCases(),
  {
    type: 'content',
    name: 'mislabelled-key',
    go: 'loads',
    description: "a PKCS#8 key under 'EC PRIVATE KEY': Go and OpenSSL 3 load it; warn",
    contents: (m) => ({
      ...ec(m),
      privkey: relabel(m.leaves.ec.keyPem, 'PRIVATE KEY', 'EC PRIVATE KEY'),
    }),
    expected: { kind: 'accepted-with-warning', warning: /holds a 'PRIVATE KEY' key/ },
  },
  {
    type: 'content',
    name: 'crlf-line-endings',
    go: 'loads',
    description: 'both files with CRLF: Go and OpenSSL accept them; warn, distribute unchanged',
    contents: (m) => ({
      ...ec(m),
      fullchain: withCrlf(ec(m).fullchain),
      privkey: withCrlf(ec(m).privkey),
    }),
    expected: { kind: 'accepted-with-warning', warning: /fullchain\d+\.pem: CRLF line endings/ },
  },
  {
    type: 'content',
    name: 'blank-line-inside-base64',
    go: 'loads',
    description: 'an empty line in the middle of the leaf: Go skips it, OpenSSL refuses the file',
    contents: (m) => ({ ...ec(m), fullchain: withBlankLineInBase64(ec(m).fullchain, 3) }),
    expected: {
      kind: 'rejected',
      reason: 'pem-invalid',
      message: /blank line inside its base64 at line 5/,
    },
  },
  {
    type: 'content',
    name: 'blank-line-after-begin',
    go: 'loads',
    description: 'an empty line right after BEGIN, before the base64: Go and OpenSSL accept it',
    contents: (m) => ({ ...ec(m), fullchain: withBlankLineInBase64(ec(m).fullchain, 0) }),
    expected: { kind: 'accepted' },
  },
  {
    type: 'content',
    name: 'text-around-blocks',
    go: 'loads',
    description:
      "openssl's 'Bag Attributes' before and a comment between blocks: Go skips them; warn",
    contents: (m) => ({
      ...ec(m),
      fullchain: `Bag Attributes\n    friendlyName: leaf\n${m.leaves.ec.certPem}# intermediate\n${m.intermediate.certPem}`,
    }),
    expected: {
      kind: 'accepted-with-warning',
      warning: /text outside PEM blocks at line\(s\) 1, 2, \d+/,
    },
  },
  {
    type: 'content',
    name: 'two-keys-one-file',
    go: 'refuses',
    description:
      'privkey.pem holds the right key after a stale one: Go would take the first; ambiguous',
    contents: (m) => ({ ...ec(m), privkey: m.stranger.keyPem + m.leaves.ec.keyPem }),
    expected: {
      kind: 'rejected',
      reason: 'multiple-private-keys',
      message: /holds 2 private keys/,
    },
  },
  {
    type: 'content',
    name: 'end-label-mismatch',
    go: 'refuses',
    description: 'BEGIN CERTIFICATE closed by END PRIVATE KEY: Go silently skips the block',
    contents: (m) => ({
      ...ec(m),
      fullchain: ec(m).fullchain.replace('-----END CERTIFICATE-----', '-----END PRIVATE KEY-----'),
    }),
    expected: { kind: 'rejected', reason: 'pem-invalid', message: /ends with 'PRIVATE KEY'/ },
  },
  {
    type: 'content',
    name: 'intermediate-not-der',
    go: 'loads',
    description:
      'the second CERTIFICATE block is valid base64 but no certificate: Go never parses it',
    contents: (m) => ({
      ...ec(m),
      fullchain: `${m.leaves.ec.certPem}-----BEGIN CERTIFICATE-----\n${Buffer.alloc(48, 7).toString('base64')}\n-----END CERTIFICATE-----\n`,
    }),
    expected: {
      kind: 'rejected',
      reason: 'certificate-invalid',
      message: /block 'CERTIFICATE' at line \d+ is not a valid X\.509 certificate/,
    },
  },
  {
    type: 'content',
    name: 'huge-file',
    go: 'loads',
    description:
      'a valid fullchain padded past 1 MiB (limits.maxFileBytes): refused before it is read',
    contents: (m) => ({ ...ec(m), fullchain: paddedTo(ec(m).fullchain, 2 * MIB) }),
    expected: {
      kind: 'rejected',
      reason: 'file-too-large',
      message: /fullchain\.pem is \d+ bytes, over limits\.maxFileBytes \(1048576\)/,
    },
  },
  {
    type: 'content',
    name: 'binary-file',
    go: 'refuses',
    description: 'fullchain.pem holds the DER bytes of the leaf (openssl x509 -outform der)',
    contents: (m) => ({ ...ec(m), fullchain: derOf(m.leaves.ec.certPem) }),
    expected: {
      kind: 'rejected',
      reason: 'binary-file',
      message: /fullchain\d+\.pem is a binary file, not PEM \(byte 0x[0-9a-f]{2} at offset \d+\)/,
    },
  },
];

/** One accepted case per key encoding Go's crypto/tls loads. */
function keyEncodingCases(): ContentCase[] {
  const encodings = [
    { name: 'rsa-pkcs1', keyType: 'rsa', format: 'pkcs1', label: 'RSA PRIVATE KEY' },
    { name: 'rsa-pkcs8', keyType: 'rsa', format: 'pkcs8', label: 'PRIVATE KEY' },
    { name: 'ec-sec1', keyType: 'ec', format: 'sec1', label: 'EC PRIVATE KEY' },
    {
      name: 'ec-sec1-with-parameters',
      keyType: 'ec',
      format: 'sec1',
      label: 'EC PARAMETERS + EC PRIVATE KEY',
    },
    { name: 'ec-pkcs8', keyType: 'ec', format: 'pkcs8', label: 'PRIVATE KEY' },
    { name: 'ed25519-pkcs8', keyType: 'ed25519', format: 'pkcs8', label: 'PRIVATE KEY' },
  ] as const;
  return encodings.map(({ name, keyType, format, label }) => ({
    type: 'content',
    name,
    go: 'loads',
    description: `a ${keyType} leaf with its key as '${label}'`,
    contents: (m: CorpusMaterials) => {
      const leaf = m.leaves[keyType];
      const parameters =
        name === 'ec-sec1-with-parameters' ? encodeEcParameters(leaf.privateKey) : '';
      return {
        ...pemSetFor(m, leaf),
        privkey: parameters + encodePrivateKey(leaf.privateKey, format),
      };
    },
    expected: { kind: 'accepted' },
  }));
}
