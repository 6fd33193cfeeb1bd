import { X509Certificate } from 'node:crypto';

/**
 * Small, exact edits that turn good PEM into the damaged shapes found in the wild. Pure text in,
 * text out, so each corpus case says in one line what it did.
 */

/** Every LF becomes CRLF (a file saved on Windows, or pasted through a Windows clipboard). */
export function withCrlf(text: string): string {
  return text.replaceAll('\r\n', '\n').replaceAll('\n', '\r\n');
}

/** The text up to and including the END line of block `blockCount` (its newline kept). */
export function cutAfterBlock(text: string, blockCount: number): string {
  let offset = 0;
  for (let block = 0; block < blockCount; block++) {
    const end = text.indexOf('-----END ', offset);
    if (end === -1) throw new Error(`text has fewer than ${blockCount} blocks`);
    offset = text.indexOf('\n', end) + 1;
  }
  return text.slice(0, offset);
}

/** The text cut `bytesIntoBlock` bytes after the BEGIN line of block `blockIndex` (0-based). */
export function cutInsideBlock(text: string, blockIndex: number, bytesIntoBlock: number): string {
  let begin = -1;
  for (let block = 0; block <= blockIndex; block++) {
    begin = text.indexOf('-----BEGIN ', begin + 1);
    if (begin === -1) throw new Error(`text has no block ${blockIndex}`);
  }
  return text.slice(0, text.indexOf('\n', begin) + 1 + bytesIntoBlock);
}

/** An empty line after the `afterBase64Lines`-th base64 line of the first block. */
export function withBlankLineInBase64(text: string, afterBase64Lines: number): string {
  const lines = text.split('\n');
  const begin = lines.findIndex((line) => line.startsWith('-----BEGIN '));
  lines.splice(begin + 1 + afterBase64Lines, 0, '');
  return lines.join('\n');
}

/** Renames a block's label in both its BEGIN and END lines (content untouched). */
export function relabel(text: string, from: string, to: string): string {
  return text
    .replaceAll(`-----BEGIN ${from}-----`, `-----BEGIN ${to}-----`)
    .replaceAll(`-----END ${from}-----`, `-----END ${to}-----`);
}

/** The DER bytes of a PEM certificate: what `openssl x509 -outform der` writes. */
export function derOf(certPem: string): Buffer {
  return Buffer.from(new X509Certificate(certPem).raw);
}

/** `sizeBytes` of harmless text (comment lines) around a valid PEM, to exceed a size limit. */
export function paddedTo(text: string, sizeBytes: number): string {
  const line = `# padding line, not PEM ${'.'.repeat(40)}\n`;
  return text + line.repeat(Math.ceil(Math.max(0, sizeBytes - text.length) / line.length));
}
