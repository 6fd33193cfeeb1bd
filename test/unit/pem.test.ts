import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { before, describe, test } from 'node:test';

import { parsePem, PemParseError } from '../../common/pem';
import {
  createWildcardSet,
  encodeEcParameters,
  encodePrivateKey,
  type IssuedCertificate,
} from '../support/pki';

const PATH = '/etc/letsencrypt/live/example/fullchain.pem';

/** The base64 lines of a PEM text, to prove errors never echo them. */
function base64Lines(pem: string): string[] {
  return pem.split('\n').filter((line) => /^[A-Za-z0-9+/=]{16,}$/.test(line));
}

function assertParseError(run: () => unknown, problem: string, line: number): PemParseError {
  let caught: unknown;
  try {
    run();
  } catch (error) {
    caught = error;
  }
  assert.ok(caught instanceof PemParseError, `expected PemParseError, got ${String(caught)}`);
  assert.equal(caught.problem, problem);
  assert.equal(caught.line, line);
  assert.equal(caught.path, PATH);
  assert.ok(caught.message.startsWith(`${PATH}: `), caught.message);
  return caught;
}

describe('parsePem', () => {
  let leaf: IssuedCertificate;
  let intermediate: IssuedCertificate;
  let fullchain: string;

  before(async () => {
    const set = await createWildcardSet();
    leaf = set.leaf;
    intermediate = set.intermediate;
    fullchain = set.pems.fullchain;
  });

  test('splits a fullchain into certificate blocks with their DER, lines and offsets', () => {
    const parsed = parsePem(fullchain, PATH);

    assert.equal(parsed.blocks.length, 2);
    const [first, second] = parsed.blocks;
    assert.equal(first?.label, 'CERTIFICATE');
    assert.equal(second?.label, 'CERTIFICATE');
    assert.deepEqual(first?.der, new X509Certificate(leaf.certPem).raw);
    assert.deepEqual(second?.der, new X509Certificate(intermediate.certPem).raw);
    assert.equal(first?.startLine, 1);
    assert.equal(second?.startLine, leaf.certPem.trimEnd().split('\n').length + 1);
    assert.equal(fullchain.slice(first?.startOffset, first?.endOffset), leaf.certPem.trimEnd());
    assert.equal(
      fullchain.slice(second?.startOffset, second?.endOffset),
      intermediate.certPem.trimEnd(),
    );
    assert.deepEqual(parsed.linesOutsideBlocks, []);
    assert.equal(parsed.hasCrlfLineEndings, false);
  });

  test('reads the Proc-Type and DEK-Info headers of a legacy encrypted key', () => {
    const parsed = parsePem(encodePrivateKey(leaf.privateKey, 'legacy-encrypted'), PATH);

    const [block] = parsed.blocks;
    assert.equal(block?.label, 'EC PRIVATE KEY');
    assert.equal(block?.headers.get('Proc-Type'), '4,ENCRYPTED');
    assert.match(block?.headers.get('DEK-Info') ?? '', /^AES-256-CBC,[0-9A-F]{32}$/);
    assert.ok((block?.der.length ?? 0) > 32);
  });

  test('keeps an EC PARAMETERS block apart from the SEC1 key after it', () => {
    const text = encodeEcParameters(leaf.privateKey) + encodePrivateKey(leaf.privateKey, 'sec1');
    const parsed = parsePem(text, PATH);

    assert.deepEqual(
      parsed.blocks.map((block) => block.label),
      ['EC PARAMETERS', 'EC PRIVATE KEY'],
    );
    assert.equal(parsed.blocks[0]?.der.toString('hex'), '06082a8648ce3d030107');
    assert.equal(parsed.blocks[1]?.headers.size, 0);
  });

  test('reports CRLF line endings and still decodes the same DER', () => {
    const parsed = parsePem(fullchain.replaceAll('\n', '\r\n'), PATH);

    assert.equal(parsed.hasCrlfLineEndings, true);
    assert.deepEqual(parsed.blocks[0]?.der, new X509Certificate(leaf.certPem).raw);
  });

  test('lists the lines of text outside blocks, not their content', () => {
    const text = `subject=CN = example\n\n${leaf.certPem}# trailing note\n`;
    const parsed = parsePem(text, PATH);

    assert.equal(parsed.blocks.length, 1);
    const lastLine = 2 + leaf.certPem.trimEnd().split('\n').length + 1;
    assert.deepEqual(parsed.linesOutsideBlocks, [1, lastLine]);
  });

  test('measures offsets in bytes when multi-byte text precedes a block', () => {
    const content = Buffer.from(`# certificat émis — test\n${leaf.certPem}`, 'utf8');
    const [block] = parsePem(content, PATH).blocks;

    assert.ok(block !== undefined);
    const slice = content.subarray(block.startOffset, block.endOffset).toString('utf8');
    assert.equal(slice, leaf.certPem.trimEnd());
  });

  test('does not take a marker-shaped line with a non-label for a marker', () => {
    const parsed = parsePem('-----BEGIN MIIBx+abc/def-----\n', PATH);

    assert.deepEqual(parsed.blocks, []);
    assert.deepEqual(parsed.linesOutsideBlocks, [1]);
  });

  test('returns no blocks for empty text', () => {
    assert.deepEqual(parsePem('', PATH).blocks, []);
  });

  test('rejects a block cut short by truncation, naming its label and line', () => {
    const keyPem = encodePrivateKey(leaf.privateKey, 'pkcs8');
    const truncated = keyPem.slice(0, Math.floor(keyPem.length / 2));

    const error = assertParseError(() => parsePem(truncated, PATH), 'unterminated-block', 1);
    assert.equal(
      error.message,
      `${PATH}: block 'PRIVATE KEY' starting at line 1 is not terminated (file truncated?)`,
    );
  });

  test('rejects a block that runs into the next BEGIN', () => {
    const lines = fullchain.split('\n');
    const endOfLeaf = lines.findIndex((line) => line.startsWith('-----END'));
    const spliced = [...lines.slice(0, endOfLeaf), ...lines.slice(endOfLeaf + 1)].join('\n');

    const error = assertParseError(() => parsePem(spliced, PATH), 'unterminated-block', 1);
    assert.match(error.message, /before block 'CERTIFICATE' begins at line \d+/);
  });

  test('rejects an END label that does not match its BEGIN', () => {
    const text = leaf.certPem.replace('-----END CERTIFICATE-----', '-----END PRIVATE KEY-----');

    const error = assertParseError(() => parsePem(text, PATH), 'label-mismatch', 1);
    assert.match(error.message, /block 'CERTIFICATE' starting at line 1 ends with 'PRIVATE KEY'/);
  });

  test('rejects an END marker with no block open', () => {
    const text = `${leaf.certPem}-----END CERTIFICATE-----\n`;
    const endLine = leaf.certPem.trimEnd().split('\n').length + 1;

    assertParseError(() => parsePem(text, PATH), 'stray-end', endLine);
  });

  test('rejects invalid base64 without echoing any of it', () => {
    const keyPem = encodePrivateKey(leaf.privateKey, 'pkcs8');
    const lines = keyPem.split('\n');
    lines[2] = `${lines[2]?.slice(0, 10)}!${lines[2]?.slice(11)}`;
    const damaged = lines.join('\n');

    const error = assertParseError(() => parsePem(damaged, PATH), 'invalid-base64', 1);
    for (const line of base64Lines(keyPem)) {
      assert.ok(!error.message.includes(line.slice(0, 16)), 'message echoes key base64');
    }
  });

  test('rejects base64 with padding in the middle', () => {
    const lines = leaf.certPem.split('\n');
    lines[1] = `${lines[1]?.slice(0, 60)}====`;

    assertParseError(() => parsePem(lines.join('\n'), PATH), 'invalid-base64', 1);
  });

  test('rejects base64 whose length is not a multiple of four', () => {
    const lines = leaf.certPem.split('\n');
    lines[2] = lines[2]?.slice(1) ?? '';

    assertParseError(() => parsePem(lines.join('\n'), PATH), 'invalid-base64', 1);
  });

  test('rejects a block with no content', () => {
    const text = '-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n';

    assertParseError(() => parsePem(text, PATH), 'empty-block', 1);
  });

  test('remembers the first blank line inside base64, but not one before it begins', () => {
    const lines = fullchain.split('\n');
    const inside = [...lines.slice(0, 3), '', ...lines.slice(3)].join('\n');
    const beforeBase64 = [lines[0], '', ...lines.slice(1)].join('\n');

    const [damaged] = parsePem(inside, PATH).blocks;
    const [fine] = parsePem(beforeBase64, PATH).blocks;
    assert.equal(damaged?.blankLineInBase64, 4);
    assert.deepEqual(damaged?.der, new X509Certificate(leaf.certPem).raw);
    assert.equal(fine?.blankLineInBase64, undefined);
  });
});
