import { parsePem, PemParseError, type PemBlock } from '../common/pem';
import { BundleValidationError } from './bundle-validation-error';

/**
 * Turns one candidate file into PEM blocks, refusing what must not be parsed at all (empty,
 * binary) and what consumers disagree on (a blank line inside base64), and recording as warnings
 * what Go's pem.Decode and OpenSSL both accept (text outside blocks, CRLF line endings).
 */

/** The part of a candidate file this step needs. */
export interface PemFile {
  path: string;
  content: Buffer;
}

/** Parses one file's PEM and records the harmless oddities as warnings. */
export function readPemBlocks(file: PemFile, warnings: string[]): PemBlock[] {
  if (file.content.toString('latin1').trim() === '') {
    const what = file.content.length === 0 ? 'is empty' : 'holds only whitespace';
    const message =
      `${file.path} ${what} (a renewal cut short, or a copy that failed?); ` +
      `the current version stays until the file holds PEM again`;
    throw new BundleValidationError('empty-file', message, { path: file.path });
  }
  rejectBinary(file);
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

  const blankLine = parsed.blocks.find((block) => block.blankLineInBase64 !== undefined);
  if (blankLine !== undefined) {
    const message =
      `${file.path}: block '${blankLine.label}' starting at line ${blankLine.startLine} has a ` +
      `blank line inside its base64 at line ${blankLine.blankLineInBase64}; Go skips it but ` +
      `OpenSSL-based servers refuse the file. Remove the blank line`;
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

/**
 * PEM is text. Control bytes other than tab, line feed, vertical tab, form feed and carriage
 * return mean DER, an archive or a damaged file; refuse it before any parsing. Bytes above 0x7f
 * stay allowed: text outside blocks (openssl's "Bag Attributes") may be UTF-8.
 */
function rejectBinary(file: PemFile): void {
  const offset = file.content.findIndex(
    (byte) => (byte < 0x20 && (byte < 0x09 || byte > 0x0d)) || byte === 0x7f,
  );
  if (offset === -1) return;
  const byte = (file.content[offset] ?? 0).toString(16).padStart(2, '0');
  const message =
    `${file.path} is a binary file, not PEM (byte 0x${byte} at offset ${offset}); if it is ` +
    `a DER certificate, convert it: openssl x509 -inform der -in FILE -out FILE.pem`;
  throw new BundleValidationError('binary-file', message, { path: file.path });
}
