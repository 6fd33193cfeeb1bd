import { createPrivateKey } from 'node:crypto';

/** Shortest run of a key's encoded bytes that counts as a leak (the brief's 32 characters). */
export const LEAK_WINDOW_CHARS = 32;
/** The same for byte arrays printed as JSON numbers (`"data":[48,130,…]`): 16 bytes. */
const LEAK_WINDOW_BYTES = 16;

/** Every form in which a private key's bytes could show up in text output. */
export interface KeyForms {
  readonly label: string;
  /** The PEM text and each base64 body line (whole strings). */
  readonly wholeStrings: string[];
  /** Encodings searched by every LEAK_WINDOW_CHARS-long window: PEM body, DER hex, file base64. */
  readonly encodings: string[];
  /** The file's bytes as comma-joined decimals, searched by LEAK_WINDOW_BYTES-long windows. */
  readonly bytes: Buffer;
}

export function keyForms(label: string, pem: string): KeyForms {
  const bodyLines = pem
    .split(/\r?\n/)
    .map((line) => line.trim())
    .filter((line) => line !== '' && !line.startsWith('-----') && !line.includes(':'));
  const body = bodyLines.join('');
  const encodings = [body, Buffer.from(pem).toString('base64'), Buffer.from(pem).toString('hex')];
  try {
    const der = createPrivateKey(pem).export({ type: 'pkcs8', format: 'der' });
    encodings.push(der.toString('hex'), der.toString('base64'));
  } catch {
    // A truncated key has no DER form; its PEM body and file encodings are still searched.
  }
  return {
    label,
    wholeStrings: [pem.trim(), ...bodyLines.filter((line) => line.length >= 16)],
    encodings,
    bytes: Buffer.from(pem),
  };
}

/** Descriptions of every form of `key` found in `haystack` ("rsa v1: base64 body window at 64"). */
export function findKeyMaterial(haystack: string, key: KeyForms): string[] {
  const found: string[] = [];
  for (const whole of key.wholeStrings) {
    if (haystack.includes(whole))
      found.push(`${key.label}: the string ${JSON.stringify(whole.slice(0, 12))}…`);
  }
  const lowerHaystack = haystack.toLowerCase();
  for (const [index, encoding] of key.encodings.entries()) {
    const isHex = /^[0-9a-f]+$/.test(encoding);
    const windows = new Set<string>();
    for (let start = 0; start + LEAK_WINDOW_CHARS <= encoding.length; start += 1)
      windows.add(encoding.slice(start, start + LEAK_WINDOW_CHARS));
    const text = isHex ? lowerHaystack : haystack;
    for (let start = 0; start + LEAK_WINDOW_CHARS <= text.length; start += 1) {
      if (windows.has(text.slice(start, start + LEAK_WINDOW_CHARS))) {
        found.push(`${key.label}: encoding ${index} window at output offset ${start}`);
        break;
      }
    }
  }
  const compact = haystack.replace(/\s+/g, '');
  for (
    let start = 0;
    start + LEAK_WINDOW_BYTES <= key.bytes.length;
    start += LEAK_WINDOW_BYTES / 2
  ) {
    const run = [...key.bytes.subarray(start, start + LEAK_WINDOW_BYTES)].join(',');
    if (compact.includes(run)) {
      found.push(
        `${key.label}: bytes ${start}..${start + LEAK_WINDOW_BYTES} as a JSON number array`,
      );
      break;
    }
  }
  return found;
}
