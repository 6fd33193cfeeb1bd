/**
 * PEM parsing shared by the server (validating a candidate bundle) and the agent (checking what it
 * wrote). Pure: text in, blocks out. Nothing here ever puts block content into an error message,
 * because the blocks we parse are usually private keys.
 */

/** One `-----BEGIN X----- … -----END X-----` block. */
export interface PemBlock {
  /** The label between BEGIN and the dashes, e.g. CERTIFICATE or EC PRIVATE KEY. */
  label: string;
  /** RFC 1421 headers in file order, e.g. Proc-Type: 4,ENCRYPTED on a legacy encrypted key. */
  headers: ReadonlyMap<string, string>;
  der: Buffer;
  /** 1-based line of the BEGIN marker, for messages. */
  startLine: number;
  /** Byte offset of the first dash of the BEGIN marker. */
  startOffset: number;
  /** Byte offset just past the last dash of the END marker (exclusive). */
  endOffset: number;
  /**
   * 1-based line of the first blank line after the base64 began, if any. Go's pem.Decode skips
   * it; OpenSSL's PEM reader refuses the block, so callers decide.
   */
  blankLineInBase64?: number;
}

/** A whole file's blocks plus what a careful operator would want warned about. */
export interface ParsedPem {
  blocks: PemBlock[];
  /** 1-based lines that hold non-blank text outside any block (never the text itself). */
  linesOutsideBlocks: number[];
  hasCrlfLineEndings: boolean;
}

export type PemProblem =
  'unterminated-block' | 'label-mismatch' | 'stray-end' | 'invalid-base64' | 'empty-block';

/** Thrown when a file is not well-formed PEM; the message names the path, line and problem. */
export class PemParseError extends Error {
  override readonly name = 'PemParseError';

  constructor(
    message: string,
    readonly path: string,
    readonly problem: PemProblem,
    readonly line: number,
  ) {
    super(message);
  }
}

// Labels are restricted to what real ones look like (CERTIFICATE, EC PRIVATE KEY, X509 CRL) so
// a damaged line never becomes a "label" that error messages would then quote.
const BEGIN_MARKER = /^-----BEGIN ([A-Z0-9][A-Z0-9 ]{0,63})-----$/;
const END_MARKER = /^-----END ([A-Z0-9][A-Z0-9 ]{0,63})-----$/;
const HEADER_LINE = /^([A-Za-z0-9-]+):\s*(.*)$/;
const BASE64_TEXT = /^[A-Za-z0-9+/]*={0,2}$/;

interface OpenBlock {
  label: string;
  startLine: number;
  startOffset: number;
  headers: Map<string, string>;
  lastHeaderName: string | undefined;
  base64Lines: string[];
  blankLineInBase64: number | undefined;
}

/**
 * Splits PEM text into blocks. `path` is used only in error messages. Offsets are byte offsets
 * into `content` (a string is measured as its UTF-8 encoding).
 */
export function parsePem(content: Uint8Array | string, path: string): ParsedPem {
  // latin1 maps each byte to one character, so character offsets below are byte offsets.
  const text = Buffer.from(content).toString('latin1');
  const blocks: PemBlock[] = [];
  const linesOutsideBlocks: number[] = [];
  let hasCrlfLineEndings = false;
  let open: OpenBlock | undefined;

  let lineStart = 0;
  for (let lineNumber = 1; lineStart < text.length; lineNumber++) {
    const newline = text.indexOf('\n', lineStart);
    const lineEnd = newline === -1 ? text.length : newline;
    let line = text.slice(lineStart, lineEnd);
    if (line.endsWith('\r')) {
      hasCrlfLineEndings = true;
      line = line.slice(0, -1);
    }
    const trimmed = line.trimEnd();
    const begin = BEGIN_MARKER.exec(trimmed);
    const end = END_MARKER.exec(trimmed);

    if (open === undefined) {
      if (begin) {
        open = {
          label: begin[1] ?? '',
          startLine: lineNumber,
          startOffset: lineStart,
          headers: new Map(),
          lastHeaderName: undefined,
          base64Lines: [],
          blankLineInBase64: undefined,
        };
      } else if (end) {
        const message = `${path}: line ${lineNumber} ends block '${end[1]}' that never began`;
        throw new PemParseError(message, path, 'stray-end', lineNumber);
      } else if (trimmed.trim() !== '') {
        linesOutsideBlocks.push(lineNumber);
      }
    } else if (begin) {
      const message =
        `${path}: block '${open.label}' starting at line ${open.startLine} is not terminated ` +
        `before block '${begin[1]}' begins at line ${lineNumber} (file truncated or spliced?)`;
      throw new PemParseError(message, path, 'unterminated-block', open.startLine);
    } else if (end) {
      blocks.push(closeBlock(open, end[1] ?? '', lineNumber, lineStart + trimmed.length, path));
      open = undefined;
    } else {
      addBodyLine(open, trimmed, lineNumber);
    }

    lineStart = lineEnd + 1;
  }

  if (open !== undefined) {
    const message =
      `${path}: block '${open.label}' starting at line ${open.startLine} ` +
      `is not terminated (file truncated?)`;
    throw new PemParseError(message, path, 'unterminated-block', open.startLine);
  }
  return { blocks, linesOutsideBlocks, hasCrlfLineEndings };
}

/**
 * Headers come first (with folded continuation lines), then base64. Blank lines are skipped;
 * the first one after the base64 began is remembered.
 */
function addBodyLine(open: OpenBlock, line: string, lineNumber: number): void {
  if (line.trim() === '') {
    if (open.base64Lines.length > 0) open.blankLineInBase64 ??= lineNumber;
    return;
  }
  if (open.base64Lines.length === 0) {
    const header = HEADER_LINE.exec(line);
    if (header) {
      const name = header[1] ?? '';
      open.headers.set(name, header[2] ?? '');
      open.lastHeaderName = name;
      return;
    }
    if (open.lastHeaderName !== undefined && /^\s/.test(line)) {
      const name = open.lastHeaderName;
      open.headers.set(name, `${open.headers.get(name) ?? ''} ${line.trim()}`);
      return;
    }
  }
  open.base64Lines.push(line.trim());
}

function closeBlock(
  open: OpenBlock,
  endLabel: string,
  endLine: number,
  endOffset: number,
  path: string,
): PemBlock {
  if (endLabel !== open.label) {
    const message =
      `${path}: block '${open.label}' starting at line ${open.startLine} ends with ` +
      `'${endLabel}' at line ${endLine}`;
    throw new PemParseError(message, path, 'label-mismatch', open.startLine);
  }

  const base64 = open.base64Lines.join('');
  if (base64 === '') {
    const message = `${path}: block '${open.label}' starting at line ${open.startLine} is empty`;
    throw new PemParseError(message, path, 'empty-block', open.startLine);
  }
  // Buffer.from(…, 'base64') silently skips bad characters; a damaged key must not decode to
  // something that merely looks plausible, so the alphabet and length are checked first.
  if (!BASE64_TEXT.test(base64) || base64.length % 4 !== 0) {
    const message = `${path}: block '${open.label}' starting at line ${open.startLine} is not valid base64`;
    throw new PemParseError(message, path, 'invalid-base64', open.startLine);
  }

  return {
    label: open.label,
    headers: open.headers,
    der: Buffer.from(base64, 'base64'),
    startLine: open.startLine,
    startOffset: open.startOffset,
    endOffset,
    ...(open.blankLineInBase64 === undefined ? {} : { blankLineInBase64: open.blankLineInBase64 }),
  };
}
